-- Loaded once by the mysql service of deploy/compose.yaml after the Moodle and IOMAD tables (mounted
-- from cdc_offload/demo/moodle_schema.sql and iomad_tables.sql, the project's one copy of that DDL),
-- into MYSQL_DATABASE (moodle): the rows a fresh Moodle/IOMAD install has (the admin the cron runs as,
-- the support user's settings, one company). Compose only: the demo and the tests seed their own.
INSERT INTO mdl_config (name, value) VALUES ('supportemail', 'support@academy.example'), ('supportname', 'Demo Academy'),
  ('lang', 'en'), ('siteadmins', '2');
INSERT INTO mdl_user (id, auth, confirmed, mnethostid, username, firstname, lastname, email, timecreated, timemodified)
  VALUES (1, 'manual', 1, 1, 'guest', 'Guest user', ' ', 'root@localhost', 0, 0),
         (2, 'manual', 1, 1, 'admin', 'Admin', 'User', 'admin@academy.example', 0, 0);
INSERT INTO mdl_company (id, name, shortname, city, country) VALUES (1, 'Demo Academy', 'demo', 'Lisbon', 'PT');
INSERT INTO mdl_department (id, name, shortname, company, parent) VALUES (1, 'Demo Academy', 'demo', 1, 0);
