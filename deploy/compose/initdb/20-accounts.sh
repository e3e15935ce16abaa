# Sourced (not executed) by the mysql image's entrypoint after the schema and seed files, so
# docker_process_sql is at hand. The least-privilege accounts `cdc-offload init` prints GRANTs for
# (tests/test_deploy_artifacts.py checks these GRANTs against the program's own list), plus a
# read-only account for Grafana's ledger table panel. Passwords come from the compose secrets.
#
# mysql_native_password: PyMySQL needs the `cryptography` package for MySQL 8's default
# caching_sha2_password over a plain connection; with it installed, drop the WITH clause.

read_secret() { tr -d '\r\n' < "/run/secrets/$1"; }
reader_password="$(read_secret cdc_reader_password)"
writer_password="$(read_secret cdc_writer_password)"
grafana_password="$(read_secret grafana_ledger_password)"

docker_process_sql --database=mysql <<EOSQL
CREATE USER IF NOT EXISTS 'cdc_reader'@'%' IDENTIFIED WITH mysql_native_password BY '${reader_password}';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_user\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_email\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_company\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_company_users\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_department\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_user_info_data\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_email_template\` TO 'cdc_reader'@'%';
GRANT SELECT ON \`moodle\`.\`mdl_config\` TO 'cdc_reader'@'%';
CREATE USER IF NOT EXISTS 'cdc_writer'@'%' IDENTIFIED WITH mysql_native_password BY '${writer_password}';
GRANT SELECT, DELETE, UPDATE (\`sent\`) ON \`moodle\`.\`mdl_email\` TO 'cdc_writer'@'%';
GRANT ALL PRIVILEGES ON \`cdc_offload\`.* TO 'cdc_writer'@'%';
CREATE USER IF NOT EXISTS 'grafana_ledger'@'%' IDENTIFIED WITH mysql_native_password BY '${grafana_password}';
GRANT SELECT ON \`cdc_offload\`.* TO 'grafana_ledger'@'%';
EOSQL
