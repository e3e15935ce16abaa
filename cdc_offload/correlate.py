"""Pair each outbox INSERT with the INSERT of its user, in either order, within a window of
binlog time.

IOMAD writes the two rows ~6 transactions apart, so both sides wait here. Expiry is decided by
the stream alone, never by this host's clock, so a sidecar clock that is off, a replica that
lags, or a replay of the same stretch all pair the same way:

- The stream's clock is the median of the last few commit times and never goes back: one
  transaction stamped a day ahead (`SET TIMESTAMP`, a clock step on the primary) or a day behind
  does not move it, so its neighbours still pair.
- A waiting row expires when that clock is `pair_window` past its own time, counted from when it
  arrived if its time is behind the clock (a day behind waits a window, not nothing) and from one
  window after it arrived while its time is still over a window ahead of the clock (a day ahead
  waits two windows, not a day); or when the stream has read `max_bytes` past it, whatever the
  timestamps say (a run of bad ones can stop the clock), so no row pins the checkpoint for long.
- When the server has nothing to send (heartbeats), the clock runs on by the silence, measured
  as a duration on this host: a lone row expires, and the first row after a quiet spell is
  stamped near its own time.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_offload.model import ChangeEvent, Checkpoint, Job, OutboxRow, Position, UserRow

# Commit times the stream clock takes its median of: a run of up to two bad timestamps is ignored.
CLOCK_SPAN = 5


@dataclass(frozen=True, slots=True)
class _Seen:
    user: UserRow
    start: Checkpoint
    event_time: int
    # The stream's clock and the binlog bytes read when it arrived (what its expiry is measured from).
    arrived: float
    read: int


@dataclass(frozen=True, slots=True)
class _WaitingRow:
    job: Job
    arrived: float
    read: int


class StreamClock:
    """Binlog time that one stray timestamp cannot move: the lower median of the last
    `CLOCK_SPAN` commit times, never going back."""

    def __init__(self) -> None:
        self.now = 0.0
        self._recent: list[int] = []
        self._next = 0

    def observe(self, event_time: int) -> None:
        recent = self._recent
        if len(recent) < CLOCK_SPAN:
            recent.append(event_time)
        else:
            recent[self._next] = event_time
            self._next = (self._next + 1) % CLOCK_SPAN
        if event_time <= self.now:
            # One more time at or below the clock cannot lift the median above it: no sort (the
            # common case, many commits within one second).
            return
        median = sorted(recent)[(len(recent) - 1) // 2]
        if median > self.now:
            self.now = float(median)


class StreamBytes:
    """How many binlog bytes the stream has moved through, across file rotations."""

    def __init__(self) -> None:
        self.read = 0
        self._file = ""
        self._offset = 0
        self._before_file = 0

    def reach(self, position: Position) -> None:
        if not self._file:
            # Counted from the first position this session sees, wherever in its file that is.
            self._file, self._offset, self._before_file = position.file, position.offset, -position.offset
            return
        if position.file != self._file:
            # A rotation: the old file's tail after the last position seen is not counted, so the
            # count only ever errs towards letting a row wait a little longer.
            self._before_file += self._offset
            self._file = position.file
            self._offset = 0
        if position.offset > self._offset:
            self._offset = position.offset
            self.read = self._before_file + position.offset


class Correlator:
    """Holds rows waiting for their partner; emits `Job`s in binlog order of completion."""

    def __init__(self, pair_window: float, templates: frozenset[str], max_bytes: int = 256 * 1024 * 1024) -> None:
        self._window = pair_window
        self._max_bytes = max_bytes
        self._templates = templates
        self._clock = StreamClock()
        self._bytes = StreamBytes()
        # The clock when the current silence began (None while the stream moves).
        self._silence_from: float | None = None
        # Users whose outbox row has not come yet: they hold the checkpoint back.
        self._waiting_users: dict[int, _Seen] = {}
        # Users already paired once, kept for the window in case a second candidate row follows.
        self._paired_users: dict[int, _Seen] = {}
        # Candidate outbox rows whose user INSERT has not come yet, by outbox id (binlog order).
        self._waiting_rows: dict[int, _WaitingRow] = {}
        self._waiting_rows_by_user: dict[int, list[int]] = {}

    @property
    def stream_time(self) -> float:
        """The stream's clock (binlog time, robust to a stray timestamp); 0 before any commit."""
        return self._clock.now

    def pending_count(self) -> int:
        return len(self._waiting_users) + len(self._waiting_rows)

    def is_candidate(self, row: OutboxRow) -> bool:
        return row.sent is None and row.templatename in self._templates

    def is_waiting_user(self, user_id: int) -> bool:
        return user_id in self._waiting_users

    def add(self, event: ChangeEvent) -> list[Job]:
        if not self._clock.now:
            # The first row after a start: its own time is all the stream has said so far.
            self._clock.observe(event.event_time)
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
            job = Job(row, None, event.start, event.event_time)
            self._waiting_rows[row.id] = _WaitingRow(job, self._clock.now, self._bytes.read)
            self._waiting_rows_by_user.setdefault(row.userid, []).append(row.id)
            return []
        self._paired_users.pop(row.userid, None)
        self._paired_users[row.userid] = seen
        return [self._pair(row, seen, event.start, event.event_time)]

    def _forget_waiting_row(self, outbox_id: int) -> None:
        waiting = self._waiting_rows.pop(outbox_id, None)
        if waiting is None:
            return
        userid = waiting.job.outbox.userid
        siblings = self._waiting_rows_by_user.get(userid, [])
        if outbox_id in siblings:
            siblings.remove(outbox_id)
        if not siblings:
            self._waiting_rows_by_user.pop(userid, None)

    def _add_user(self, user: UserRow, event: ChangeEvent) -> list[Job]:
        seen = _Seen(user, event.start, event.event_time, self._clock.now, self._bytes.read)
        outbox_ids = self._waiting_rows_by_user.pop(user.id, None)
        # A user id seen again moves to the end of its map (binlog order), with its newer image.
        self._waiting_users.pop(user.id, None)
        self._paired_users.pop(user.id, None)
        if not outbox_ids:
            self._waiting_users[user.id] = seen
            return []
        self._paired_users[user.id] = seen
        rows = [self._waiting_rows.pop(outbox_id).job for outbox_id in outbox_ids]
        return [self._pair(job.outbox, seen, job.start, job.event_time) for job in rows]

    @staticmethod
    def _pair(row: OutboxRow, seen: _Seen, row_start: Checkpoint, row_time: int) -> Job:
        start = min(row_start, seen.start, key=lambda c: c.position)
        # The outbox row's own time: its freshness is how long it has been visible to Moodle's
        # cron, not how long ago its partner came.
        return Job(row, seen.user, start, row_time)

    def advance(self, event_time: int, position: Position) -> list[Job]:
        """A transaction ended at `position`, stamped `event_time`: move the stream on and expire
        what waited too long. Expired outbox rows come back with no user: they are Moodle's."""
        self._clock.observe(event_time)
        self._bytes.reach(position)
        self._silence_from = None
        return self._expire()

    def advance_idle(self, silent_for: float) -> list[Job]:
        """The server has sent nothing for `silent_for` seconds (a duration on this host, so its
        clock's offset does not matter): the stream's clock runs on by that much."""
        if self._silence_from is None:
            self._silence_from = self._clock.now
        self._clock.now = max(self._clock.now, self._silence_from + silent_for)
        return self._expire()

    def expire_all(self) -> list[Job]:
        """The end of a replayed stretch: nothing more can come, every waiting row is Moodle's."""
        return self._expire(everything=True)

    def _waited_out(self, event_time: int, arrived: float, read: int) -> bool:
        if read < self._bytes.read - self._max_bytes:
            return True
        now, window = self._clock.now, self._window
        # Decided against the clock as it is now: a row that looked a day ahead when it came may
        # have been the first after a quiet spell the clock has since caught up with.
        since = arrived + window if event_time > now + window else max(event_time, arrived)
        return now - since > window

    def _expire(self, everything: bool = False) -> list[Job]:
        expired: list[Job] = []
        # Only each map's head is looked at (binlog order): this runs on every commit, and copying
        # the maps made it O(n) each. A row behind a head that has not waited out waits for it,
        # which errs only towards waiting longer (rows a second out of order, an outlier).
        while self._waiting_rows:
            outbox_id, waiting = next(iter(self._waiting_rows.items()))
            if not everything and not self._waited_out(waiting.job.event_time, waiting.arrived, waiting.read):
                break
            expired.append(waiting.job)
            self._forget_waiting_row(outbox_id)
        for users in (self._waiting_users, self._paired_users):
            while users:
                user_id, seen = next(iter(users.items()))
                if not everything and not self._waited_out(seen.event_time, seen.arrived, seen.read):
                    break
                del users[user_id]
        return expired

    def oldest_start(self) -> Checkpoint | None:
        """The boundary before the oldest row still waiting: the checkpoint may not pass it."""
        # Both maps are in binlog order, so each one's first entry is its oldest.
        user = next(iter(self._waiting_users.values()), None)
        row = next(iter(self._waiting_rows.values()), None)
        starts = [user.start] if user is not None else []
        if row is not None:
            starts.append(row.job.start)
        return min(starts, key=lambda c: c.position) if starts else None

    def oldest_wait(self) -> float | None:
        """How long the oldest row has waited for its partner, in stream time (never this host's
        clock against a timestamp, which reads 0 for a day when either is off); None: none waits."""
        user = next(iter(self._waiting_users.values()), None)
        row = next(iter(self._waiting_rows.values()), None)
        arrivals = [entry.arrived for entry in (user, row) if entry is not None]
        return self._clock.now - min(arrivals) if arrivals else None
