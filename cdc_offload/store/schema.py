"""Our tables on the primary (created idempotently by `init` and at start-up) and the
least-privilege GRANTs `init` prints for an administrator to run."""

from __future__ import annotations

from cdc_offload.settings import Settings
from cdc_offload.store.sql import Cursor


def schema_statements(schema: str) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS `{schema}` CHARACTER SET utf8mb4",
        f"""CREATE TABLE IF NOT EXISTS `{schema}`.`checkpoint` (
            consumer VARCHAR(64) NOT NULL PRIMARY KEY,
            binlog_file VARCHAR(255) NOT NULL,
            binlog_offset BIGINT UNSIGNED NOT NULL,
            gtid TEXT NULL,
            source_server_id BIGINT UNSIGNED NULL,
            updated_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB""",
        # The ledger never holds a subject, a body, a name or an address: ids, outcomes and times.
        f"""CREATE TABLE IF NOT EXISTS `{schema}`.`ledger` (
            outbox_id BIGINT NOT NULL PRIMARY KEY,
            userid BIGINT NOT NULL,
            status VARCHAR(16) NOT NULL,
            reason VARCHAR(32) NOT NULL,
            sink VARCHAR(8) NULL,
            message_id VARCHAR(128) NULL,
            attempts INT NOT NULL DEFAULT 0,
            binlog_file VARCHAR(255) NOT NULL,
            binlog_offset BIGINT UNSIGNED NOT NULL,
            event_time DATETIME NULL,
            handled_at DATETIME(6) NOT NULL,
            claim_mark BIGINT NULL,
            KEY ledger_user (userid),
            KEY ledger_handled (handled_at),
            KEY ledger_status (status, handled_at)
        ) ENGINE=InnoDB""",
        # Installs from before `duplicate_observed` (18 characters) had VARCHAR(16).
        f"ALTER TABLE `{schema}`.`ledger` MODIFY status VARCHAR(20) NOT NULL",
        # ...and no claim mark (claim-first dispatch): added where missing, on MySQL and MariaDB alike.
        *_add_column_if_missing(schema, "ledger", "claim_mark", "BIGINT NULL"),
        # One row per copy of an outbox row (IOMAD sends the user, the template's lists, managers
        # and supervisors a separate email each). The address is kept only as a SHA-256 of its
        # lower-cased form (support can match a known address) and a masked form for reading;
        # never the address itself. `status` is the sidecar's word (accepted / failed / not_sent);
        # the `delivery_*` columns are SES's later word (delivered, bounced, ...), from `events`.
        f"""CREATE TABLE IF NOT EXISTS `{schema}`.`ledger_recipient` (
            outbox_id BIGINT NOT NULL,
            recipient_index SMALLINT UNSIGNED NOT NULL,
            kind VARCHAR(16) NOT NULL,
            recipient_user_id BIGINT NULL,
            address_hash CHAR(64) NOT NULL,
            address_masked VARCHAR(128) NOT NULL,
            status VARCHAR(16) NOT NULL,
            message_id VARCHAR(128) NULL,
            error_code VARCHAR(64) NULL,
            ses_message_id VARCHAR(128) NULL,
            delivery VARCHAR(16) NULL,
            delivery_detail VARCHAR(64) NULL,
            delivery_at DATETIME(6) NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (outbox_id, recipient_index),
            KEY ledger_recipient_message (message_id),
            KEY ledger_recipient_ses_message (ses_message_id)
        ) ENGINE=InnoDB""",
    ]


def _add_column_if_missing(schema: str, table: str, column: str, definition: str) -> list[str]:
    # MySQL 8 has no ADD COLUMN IF NOT EXISTS: a prepared statement chosen by information_schema.
    return [
        f"SET @cdc_offload_ddl = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = '{schema}' "
        f"AND table_name = '{table}' AND column_name = '{column}') = 0, "
        f"'ALTER TABLE `{schema}`.`{table}` ADD COLUMN {column} {definition}', 'DO 0')",
        "PREPARE cdc_offload_ddl FROM @cdc_offload_ddl",
        "EXECUTE cdc_offload_ddl",
        "DEALLOCATE PREPARE cdc_offload_ddl",
    ]


def grant_statements(settings: Settings, reader_user: str, writer_user: str, host: str = "%") -> list[str]:
    moodle = settings.source.database
    writer_db = settings.writer.database
    outbox = settings.tables.outbox_table
    user = settings.tables.user_table
    sent = settings.tables.column("sent")
    schema = settings.state_schema
    return [
        f"CREATE USER IF NOT EXISTS '{reader_user}'@'{host}' IDENTIFIED BY '<reader password>';",
        # REPLICATION CLIENT is MariaDB's BINLOG MONITOR: SHOW MASTER STATUS for the first start.
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{reader_user}'@'{host}';",
        f"GRANT SELECT ON `{moodle}`.`{user}` TO '{reader_user}'@'{host}';",
        f"GRANT SELECT ON `{moodle}`.`{outbox}` TO '{reader_user}'@'{host}';",
        # Who else receives a row, read the way IOMAD's email task reads it when it sends.
        *(
            f"GRANT SELECT ON `{moodle}`.`{table}` TO '{reader_user}'@'{host}';"
            for table in settings.tables.recipient_tables()
        ),
        f"CREATE USER IF NOT EXISTS '{writer_user}'@'{host}' IDENTIFIED BY '<writer password>';",
        f"GRANT SELECT, DELETE, UPDATE (`{sent}`) ON `{writer_db}`.`{outbox}` TO '{writer_user}'@'{host}';",
        f"GRANT ALL PRIVILEGES ON `{schema}`.* TO '{writer_user}'@'{host}';",
    ]


def schema_present(cursor: Cursor, schema: str) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name IN ('checkpoint', 'ledger')",
        (schema,),
    )
    row = cursor.fetchone()
    return bool(row and row[0] == 2)
