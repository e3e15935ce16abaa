-- Creates one user the way IOMAD does: the mdl_user INSERT, other transactions, then the queued
-- "user_create" email in mdl_email (autocommit: each statement is its own transaction).
--   docker compose -f deploy/compose.yaml exec -T mysql \
--     sh -c 'mysql -uroot -p"$(cat /run/secrets/mysql_root_password)" moodle' \
--     < deploy/compose/examples/create-user.sql
-- Then: the message in moto's queue, the row gone from mdl_email, a row in the Grafana
-- "Email Offload" table, and `curl localhost:9108/ledger/users/<id>` (or :9109, the standby).
SET @n = (SELECT COALESCE(MAX(id), 0) + 1 FROM mdl_user);
SET @now = UNIX_TIMESTAMP();
INSERT INTO mdl_user (auth, confirmed, mnethostid, username, password, firstname, lastname, email,
                      timecreated, timemodified)
VALUES ('manual', 1, 1, CONCAT('learner', @n), '$2y$10$examplehashexamplehashexamplehashexamplehashex',
        'Ada', CONCAT('Learner ', @n), CONCAT('learner', @n, '@school.example'), @now, @now);
SET @uid = LAST_INSERT_ID();
UPDATE mdl_user SET timemodified = @now WHERE id = @uid;
UPDATE mdl_user SET lang = 'en' WHERE id = @uid;
INSERT INTO mdl_email (templatename, modifiedtime, sent, subject, body, companyid, userid, due)
VALUES ('user_create', @now, NULL, 'A new on-line learning account has been created for you',
        CONCAT('<p>Hi Ada,</p><p>username: learner', @n, '</br>password: Example#', @n, '</br></p>'),
        1, @uid, @now);
SELECT @uid AS userid, LAST_INSERT_ID() AS outbox_id;
