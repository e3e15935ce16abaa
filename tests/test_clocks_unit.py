"""Pairing and deciding under bad clocks, as pure logic: a stray timestamp in the stream, a run of
them, silence, `due` a moment ahead, a row whose partner came late. The same cases on real servers
are in tests/test_clocks.py."""

from __future__ import annotations

from cdc_offload.correlate import Correlator
from cdc_offload.model import ChangeEvent, Checkpoint, Job, OutboxRow, Position, Reason, Status, UserRow
from cdc_offload.policy import decide

TEMPLATES = frozenset({"user_create"})
DAY = 86_400
T0 = 1_700_000_000


class Stream:
    """A binlog as IOMAD writes it: each row its own transaction, 500 bytes apart, one second per
    user unless told otherwise."""

    def __init__(self, correlator: Correlator) -> None:
        self.c = correlator
        self.offset = 4
        self.time = T0
        self.jobs: list[Job] = []

    def _next(self, size: int = 500) -> Checkpoint:
        start = Checkpoint(Position("binlog.000001", self.offset))
        self.offset += size
        return start

    def commit(self, stamp: int | None = None) -> None:
        self.jobs += self.c.advance(self.time if stamp is None else stamp, Position("binlog.000001", self.offset))

    def user(self, uid: int, stamp: int | None = None) -> Checkpoint:
        start = self._next()
        row = UserRow(uid, f"u{uid}", "Ada", "L", f"u{uid}@example.org", "manual", False, False)
        self.jobs += self.c.add(ChangeEvent(row, start, self.time if stamp is None else stamp))
        self.commit(stamp)
        return start

    def outbox(self, oid: int, uid: int, stamp: int | None = None) -> None:
        row = OutboxRow(oid, uid, "user_create", None, due=self.time, companyid=1, subject="s", body="b")
        self.jobs += self.c.add(ChangeEvent(row, self._next(), self.time if stamp is None else stamp))
        self.commit(stamp)

    def other_transactions(self, count: int, size: int = 500) -> None:
        for _ in range(count):
            self._next(size)
            self.commit()

    def iomad_user(self, uid: int) -> None:
        self.time += 1
        self.user(uid)
        self.other_transactions(5)
        self.outbox(10_000 + uid, uid)

    def paired(self) -> dict[int, bool]:
        return {job.outbox.id: job.user is not None for job in self.jobs}


def test_one_transaction_a_day_ahead_and_one_a_day_behind_do_not_stop_pairing() -> None:
    stream = Stream(Correlator(30, TEMPLATES))
    for uid in range(1, 21):
        stream.iomad_user(uid)
    # A session with SET TIMESTAMP (or a clock step on the primary) writes one transaction each way.
    stream.user(900, stamp=T0 + DAY)
    stream.user(901, stamp=T0 - DAY)
    for uid in range(21, 41):
        stream.iomad_user(uid)
    paired = stream.paired()
    assert len(paired) == 40 and all(paired.values()), [oid for oid, ok in paired.items() if not ok]


def test_the_outliers_themselves_pair_when_their_row_comes() -> None:
    stream = Stream(Correlator(30, TEMPLATES))
    stream.iomad_user(1)
    stream.user(2, stamp=T0 + DAY)
    stream.other_transactions(5)
    stream.outbox(20, 2)
    stream.user(3, stamp=T0 - DAY)
    stream.other_transactions(5)
    stream.outbox(30, 3)
    assert stream.paired() == {10_001: True, 20: True, 30: True}


def test_a_lone_user_stamped_a_day_ahead_lets_the_checkpoint_go_after_the_window() -> None:
    stream = Stream(Correlator(30, TEMPLATES))
    stream.iomad_user(1)
    lone = stream.user(2, stamp=T0 + DAY)  # its template disabled: no outbox row will come
    assert stream.c.oldest_start() == lone
    for uid in range(3, 66):
        stream.iomad_user(uid)  # a second of binlog time each
    # Its stamp is held one window ahead of the stream's clock: it waits two windows at most.
    assert stream.c.oldest_start() is None, "the day-ahead user no longer holds the checkpoint"
    assert all(stream.paired().values())


def test_a_run_of_bad_timestamps_holds_a_row_no_longer_than_the_byte_bound() -> None:
    bound = 64 * 1024
    stream = Stream(Correlator(30, TEMPLATES, max_bytes=bound))
    stream.iomad_user(1)
    # Three transactions in a row a day ahead move the clock a day; the real ones after them
    # then leave it there until real time catches up (a day).
    for _ in range(3):
        stream.time += 1
        stream.other_transactions(1)
        stream.commit(stamp=T0 + DAY)
    lone = stream.user(2)
    assert stream.c.oldest_start() == lone
    for uid in range(3, 1000):
        stream.iomad_user(uid)  # pairing still works: every row waits on the stream's bytes now
        if stream.c.oldest_start() != lone:
            break
    assert stream.c.oldest_start() is None or stream.c.oldest_start() != lone
    held = stream.offset - lone.position.offset
    assert bound <= held <= bound + 7 * 500, f"the lone user held the checkpoint over {held} bytes"
    assert all(stream.paired().values())


def test_silence_counts_as_time_but_never_this_hosts_clock() -> None:
    c = Correlator(30, TEMPLATES)
    stream = Stream(c)
    stream.user(1)
    assert c.advance_idle(10.0) == []
    assert c.oldest_wait() == 10.0
    stream.outbox(10, 1)  # its row came after ten seconds of silence: still paired
    assert stream.paired() == {10: True}
    stream.outbox(11, 99)  # a row whose user this stream never saw
    assert c.advance_idle(29.0) == []
    (expired,) = c.advance_idle(31.0)
    assert expired.outbox.id == 11 and expired.user is None


def test_the_oldest_wait_does_not_read_zero_for_a_row_stamped_in_the_future() -> None:
    stream = Stream(Correlator(30, TEMPLATES))
    stream.iomad_user(1)
    stream.outbox(99, 99, stamp=T0 + DAY)
    for _ in range(10):
        stream.time += 1
        stream.other_transactions(1)
    wait = stream.c.oldest_wait()
    assert wait is not None and wait >= 5, wait


def test_freshness_is_measured_from_the_outbox_rows_own_time() -> None:
    stream = Stream(Correlator(30, TEMPLATES))
    stream.outbox(10, 1)  # the row first, at T0
    stream.time += 25
    stream.user(1)  # its user 25 s later (in the window)
    (job,) = stream.jobs
    assert job.event_time == T0
    # 46 s after the row was written: Moodle's cron may be sending it (max age 45).
    late = decide(job, T0 + 46, 45, TEMPLATES, 5.0)
    assert late is not None and (late.status, late.reason) == (Status.STALE, Reason.TOO_OLD)


def _job(due: int, event_time: int) -> Job:
    user = UserRow(1, "u1", "Ada", "L", "u1@example.org", "manual", False, False)
    row = OutboxRow(10, 1, "user_create", None, due=due, companyid=1)
    return Job(row, user, Checkpoint(Position("binlog.000001", 4)), event_time)


def test_due_a_moment_ahead_of_this_host_is_not_a_schedule() -> None:
    # The web server's clock is 0.5 s ahead of this host's: `due` (its time()) looks in the future.
    assert decide(_job(due=T0 + 1, event_time=T0), T0 + 0.5, 45, TEMPLATES, 2.0) is None
    # This host's clock 3 s behind the database's: due is not after the row's commit, so not a schedule.
    assert decide(_job(due=T0, event_time=T0), T0 - 3, 45, TEMPLATES, 5.0) is None
    later = decide(_job(due=T0 + 3600, event_time=T0), T0 + 1, 45, TEMPLATES, 2.0)
    assert later is not None and later.reason is Reason.SCHEDULED
    skew_zero = decide(_job(due=T0 + 1, event_time=T0), T0 + 0.5, 45, TEMPLATES, 0.0)
    assert skew_zero is not None and skew_zero.reason is Reason.SCHEDULED, "the tolerance is the setting"


def test_a_row_stamped_in_this_hosts_future_is_not_taken_for_fresh() -> None:
    future = decide(_job(due=T0, event_time=T0 + DAY), T0, 45, TEMPLATES, 5.0)
    assert future is not None and (future.status, future.reason) == (Status.STALE, Reason.CLOCK_SKEW)
    assert decide(_job(due=T0, event_time=T0 + 4), T0, 45, TEMPLATES, 5.0) is None, "within the skew: fresh"
    past = decide(_job(due=T0 - DAY, event_time=T0 - DAY), T0, 45, TEMPLATES, 5.0)
    assert past is not None and (past.status, past.reason) == (Status.STALE, Reason.TOO_OLD)


def test_the_first_user_after_a_quiet_spell_still_pairs() -> None:
    # Read live (heartbeats while nothing happens) and replayed (no heartbeats): the first user
    # after ten quiet minutes looks a day-ahead outlier to the clock until the next commits come.
    for heartbeats in (True, False):
        c = Correlator(30, TEMPLATES)
        stream = Stream(c)
        stream.iomad_user(1)
        if heartbeats:
            for second in range(1, 600):
                c.advance_idle(float(second))
        stream.time += 600
        stream.iomad_user(2)
        stream.iomad_user(3)
        assert stream.paired() == {10_001: True, 10_002: True, 10_003: True}, heartbeats
