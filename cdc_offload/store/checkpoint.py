"""The checkpoint: where in the binlog this consumer resumes. One row per consumer."""

from __future__ import annotations

from cdc_offload.model import Checkpoint, Position
from cdc_offload.store.sql import Cursor, optional_str


class CheckpointTable:
    def __init__(self, schema: str, consumer: str) -> None:
        self._table = f"`{schema}`.`checkpoint`"
        self._consumer = consumer

    def load(self, cursor: Cursor) -> Checkpoint | None:
        cursor.execute(
            f"SELECT binlog_file, binlog_offset, gtid, source_server_id FROM {self._table} WHERE consumer = %s",
            (self._consumer,),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        return Checkpoint(
            Position(str(row[0]), int(row[1])), gtid=row[2] or None, source_server_id=optional_str(row[3])
        )

    def write(self, cursor: Cursor, checkpoint: Checkpoint) -> None:
        cursor.execute(
            f"INSERT INTO {self._table} "
            "(consumer, binlog_file, binlog_offset, gtid, source_server_id, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE "
            "binlog_file = VALUES(binlog_file), binlog_offset = VALUES(binlog_offset), gtid = VALUES(gtid), "
            "source_server_id = VALUES(source_server_id), updated_at = VALUES(updated_at)",
            (
                self._consumer,
                checkpoint.position.file,
                checkpoint.position.offset,
                checkpoint.gtid,
                checkpoint.source_server_id,
            ),
        )
