"""Pair each outbox INSERT with the INSERT of its user, in either order, within a window of
binlog event time.

IOMAD writes the two rows ~6 transactions apart, so both sides wait here. Time is the binlog's
(the commit timestamps), so a replay of the same stretch pairs the same way; only when the
stream is idle does wall time move the window (`Idle`), so a lone row does not wait forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_offload.model import ChangeEvent, Checkpoint, Job, OutboxRow, UserRow


@dataclass(frozen=True, slots=True)
class _Seen:
    user: UserRow
    start: Checkpoint
    event_time: int


class Correlator:
    """Holds rows waiting for their partner; emits `Job`s in binlog order of completion."""

    def __init__(self, pair_window: float, templates: frozenset[str]) -> None:
        self._window = pair_window
        self._templates = templates
        # Users whose outbox row has not come yet: they hold the checkpoint back.
        self._waiting_users: dict[int, _Seen] = {}
        # Users already paired once, kept for the window in case a second candidate row follows.
        self._paired_users: dict[int, _Seen] = {}
        # Candidate outbox rows whose user INSERT has not come yet, by outbox id (binlog order).
        self._waiting_rows: dict[int, Job] = {}
        self._waiting_rows_by_user: dict[int, list[int]] = {}
        self._watermark = 0.0

    @property
    def watermark(self) -> float:
        return self._watermark

    def pending_count(self) -> int:
        return len(self._waiting_users) + len(self._waiting_rows)

    def is_candidate(self, row: OutboxRow) -> bool:
        return row.sent is None and row.templatename in self._templates

    def add(self, event: ChangeEvent) -> list[Job]:
        self._watermark = max(self._watermark, float(event.event_time))
        row = event.row
        if isinstance(row, UserRow):
            return self._add_user(row, event)
        if not self.is_candidate(row):
            # Not ours to send; the decision step records why, without waiting for a partner.
            return [Job(row, None, event.start, event.event_time)]
        # The same id again (a restore, a re-INSERT): the newer image replaces the one waiting. It
        # goes to the end, so each map stays in binlog order (`oldest_start` and `advance` rely on it).
        self._forget_waiting_row(row.id)
        seen = self._waiting_users.pop(row.userid, None) or self._paired_users.get(row.userid)
        if seen is None:
            self._waiting_rows[row.id] = Job(row, None, event.start, event.event_time)
            self._waiting_rows_by_user.setdefault(row.userid, []).append(row.id)
            return []
        self._paired_users.pop(row.userid, None)
        self._paired_users[row.userid] = seen
        return [self._pair(row, seen, event.start, event.event_time)]

    def _forget_waiting_row(self, outbox_id: int) -> None:
        job = self._waiting_rows.pop(outbox_id, None)
        if job is None:
            return
        siblings = self._waiting_rows_by_user.get(job.outbox.userid, [])
        if outbox_id in siblings:
            siblings.remove(outbox_id)
        if not siblings:
            self._waiting_rows_by_user.pop(job.outbox.userid, None)

    def _add_user(self, user: UserRow, event: ChangeEvent) -> list[Job]:
        seen = _Seen(user, event.start, event.event_time)
        outbox_ids = self._waiting_rows_by_user.pop(user.id, None)
        # A user id seen again moves to the end of its map (binlog order), with its newer image.
        self._waiting_users.pop(user.id, None)
        self._paired_users.pop(user.id, None)
        if not outbox_ids:
            self._waiting_users[user.id] = seen
            return []
        self._paired_users[user.id] = seen
        rows = [self._waiting_rows.pop(outbox_id) for outbox_id in outbox_ids]
        return [self._pair(job.outbox, seen, job.start, job.event_time) for job in rows]

    @staticmethod
    def _pair(row: OutboxRow, seen: _Seen, row_start: Checkpoint, row_time: int) -> Job:
        start = min(row_start, seen.start, key=lambda c: c.position)
        return Job(row, seen.user, start, max(row_time, seen.event_time))

    def advance(self, now: float) -> list[Job]:
        """Move the clock (binlog time, or wall time when idle) and expire what waited too long.
        Expired outbox rows come back with no user: they are Moodle's to send."""
        self._watermark = max(self._watermark, now)
        horizon = self._watermark - self._window
        expired: list[Job] = []
        # Each map is in binlog order, so only its head can have expired: this runs on every
        # commit, and copying the maps (every user paired within the window) made it O(n) each.
        while self._waiting_rows:
            outbox_id, job = next(iter(self._waiting_rows.items()))
            if job.event_time >= horizon:
                break
            expired.append(job)
            self._forget_waiting_row(outbox_id)
        for users in (self._waiting_users, self._paired_users):
            while users:
                user_id, seen = next(iter(users.items()))
                if seen.event_time >= horizon:
                    break
                del users[user_id]
        return expired

    def oldest_start(self) -> Checkpoint | None:
        """The boundary before the oldest row still waiting: the checkpoint may not pass it."""
        # Both maps are in binlog order, so each one's first entry is its oldest.
        user = next(iter(self._waiting_users.values()), None)
        row = next(iter(self._waiting_rows.values()), None)
        starts = [entry.start for entry in (user, row) if entry is not None]
        return min(starts, key=lambda c: c.position) if starts else None

    def waiting_since(self) -> int | None:
        """Event time of the oldest row still waiting for its partner."""
        user = next(iter(self._waiting_users.values()), None)
        row = next(iter(self._waiting_rows.values()), None)
        times = [entry.event_time for entry in (user, row) if entry is not None]
        return min(times) if times else None
