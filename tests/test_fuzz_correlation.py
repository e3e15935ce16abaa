"""Property test of pairing and deciding: for any interleaving of user and outbox INSERTs,
duplicates (a row re-inserted with the same id, a user row seen twice), commits, idle ticks and
expiries, every outbox row ends in exactly one terminal status, nothing is sent twice, nothing
waits forever, and the checkpoint never passes a row still waiting for its partner.

The correlator and `decide` are the real ones; around them only a minimal stand-in (jobs by
outbox id, a ledger that keeps its first word), enough to state the correlator's own promises.
The loop itself (staging, rounds in flight, the safe-checkpoint rule, commits) is not modelled
here: tests/test_loop_property.py drives the real `Session` for that."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_offload.correlate import Correlator
from cdc_offload.model import ChangeEvent, Checkpoint, Job, OutboxRow, Position, Status, UserRow
from cdc_offload.policy import decide, is_single_address

TEMPLATES = frozenset({"user_create"})
WINDOW = 30.0
MAX_AGE = 45.0
SKEW = 5.0
BASE_TIME = 1_700_000_000

ADDRESSES = ("learner@example.org", "", "two@example.org, three@example.org", "no-at-sign", "x@y")


@dataclass(frozen=True)
class UserOp:
    uid: int
    dt: int
    address: int  # index into ADDRESSES
    deleted: bool
    suspended: bool


@dataclass(frozen=True)
class OutboxOp:
    oid: int
    uid: int
    dt: int
    template: str
    sent: int | None
    due_in: int


@dataclass(frozen=True)
class Replay:
    """The same row image again, later in the binlog (a restore, a re-INSERT with the same id)."""

    nth: int


@dataclass(frozen=True)
class Tick:
    dt: int
    idle: bool  # `dt` seconds of silence (heartbeats) rather than a commit `dt` seconds later


@dataclass(frozen=True)
class Flush:
    lag: int  # how far the wall clock is ahead of the binlog at decision time


Op = UserOp | OutboxOp | Replay | Tick | Flush

# Event time moves mostly forward, sometimes a little back (a statement's start time, not its
# commit time), sometimes far forward (a quiet spell): all three happen in a real binlog.
steps = st.one_of(st.integers(0, 3), st.integers(-5, 0), st.integers(20, 90))
ops = st.one_of(
    st.builds(
        UserOp,
        uid=st.integers(1, 6),
        dt=steps,
        address=st.integers(0, len(ADDRESSES) - 1).map(lambda i: 0 if i > 2 else i),  # mostly good
        deleted=st.sampled_from([False, False, False, True]),
        suspended=st.sampled_from([False, False, False, True]),
    ),
    st.builds(
        OutboxOp,
        oid=st.integers(100, 110),
        uid=st.integers(1, 6),
        dt=steps,
        template=st.sampled_from(["user_create", "user_create", "user_create", "user_reset", ""]),
        sent=st.sampled_from([None, None, None, None, BASE_TIME]),
        due_in=st.sampled_from([0, 0, 0, -10, 3600]),
    ),
    st.builds(Replay, nth=st.integers(0, 50)),
    st.builds(Tick, dt=steps, idle=st.booleans()),
    st.builds(Flush, lag=st.sampled_from([0, 1, 5, 60])),
)


@dataclass
class Model:
    correlator: Correlator = field(default_factory=lambda: Correlator(WINDOW, TEMPLATES))
    offset: int = 4
    time: int = BASE_TIME
    inserted: list[ChangeEvent] = field(default_factory=list)
    users: dict[int, ChangeEvent] = field(default_factory=dict)  # latest instance per user id
    ready: dict[int, Job] = field(default_factory=dict)
    ledger: dict[int, Status] = field(default_factory=dict)
    sends: dict[int, int] = field(default_factory=dict)
    # Per outbox id: the start of its latest INSERT not yet answered by a job (candidates only).
    waiting_rows: dict[int, Checkpoint] = field(default_factory=dict)
    # Per user id: the latest INSERT not yet paired with a row.
    waiting_users: dict[int, ChangeEvent] = field(default_factory=dict)
    silent_for: float = 0.0

    def next_start(self, dt: int) -> Checkpoint:
        self.offset += 100
        self.time += dt
        return Checkpoint(Position("binlog.000001", self.offset))

    def feed(self, event: ChangeEvent) -> None:
        self.inserted.append(event)
        row = event.row
        if isinstance(row, UserRow):
            self.users[row.id] = event
            self.waiting_users[row.id] = event
        elif self.correlator.is_candidate(row):
            self.waiting_rows[row.id] = event.start
        self.take(self.correlator.add(event))

    def take(self, jobs: list[Job]) -> None:
        for job in jobs:
            row = job.outbox
            if job.user is not None:
                assert job.user.id == row.userid, "a row is only ever paired with its own user"
                seen = self.users.get(job.user.id)
                assert seen is not None, "a row is only paired with a user INSERT that was read"
                self.waiting_users.pop(job.user.id, None)
            self.waiting_rows.pop(row.id, None)
            self.ready[row.id] = job

    def commit(self, dt: int) -> None:
        self.silent_for = 0.0
        start = self.next_start(dt)
        self.take(self.correlator.advance(self.time, start.position))

    def idle(self, seconds: int) -> None:
        self.silent_for += max(0, seconds)
        self.take(self.correlator.advance_idle(self.silent_for))

    def flush(self, lag: int) -> None:
        now = self.time + lag
        for job in self.ready.values():
            if job.outbox.id in self.ledger:
                continue  # the ledger already has it: a replay never acts twice
            decision = decide(job, now, MAX_AGE, TEMPLATES, SKEW)
            if decision is None:
                self.check_sendable(job, now)
                self.sends[job.outbox.id] = self.sends.get(job.outbox.id, 0) + 1
                self.ledger[job.outbox.id] = Status.OFFLOADED
            else:
                assert decision.outbox_id == job.outbox.id and decision.userid == job.outbox.userid
                assert decision.status in (Status.SKIPPED, Status.STALE)
                self.ledger[job.outbox.id] = decision.status
        self.ready.clear()

    @staticmethod
    def check_sendable(job: Job, now: float) -> None:
        row, user = job.outbox, job.user
        assert user is not None and user.id == row.userid
        assert row.templatename in TEMPLATES and row.sent is None
        assert not user.deleted and not user.suspended
        assert is_single_address(user.email.strip())
        assert row.due <= max(now, job.event_time) + SKEW and job.event_time <= now + SKEW
        assert now - job.event_time <= MAX_AGE

    def check_checkpoint(self) -> None:
        """Restarting from `oldest_start()` must re-read every row still waiting for its partner."""
        oldest = self.correlator.oldest_start()
        waiting = list(self.waiting_rows.values())
        waiting += [e.start for uid, e in self.waiting_users.items() if self.correlator.is_waiting_user(uid)]
        for start in waiting:
            assert oldest is not None, f"a row waits at {start.position} but nothing holds the checkpoint"
            assert oldest.position <= start.position, (
                f"the checkpoint may pass {start.position}: oldest_start is {oldest.position}"
            )


def run(sequence: list[Op]) -> Model:
    model = Model()
    for op in sequence:
        if isinstance(op, UserOp):
            start = model.next_start(op.dt)
            row = UserRow(
                op.uid, f"u{op.uid}", "Ada", "Lovelace", ADDRESSES[op.address], "manual", op.deleted, op.suspended
            )
            model.feed(ChangeEvent(row, start, model.time))
        elif isinstance(op, OutboxOp):
            start = model.next_start(op.dt)
            outbox = OutboxRow(op.oid, op.uid, op.template, op.sent, model.time + op.due_in, 1, "s", "b")
            model.feed(ChangeEvent(outbox, start, model.time))
        elif isinstance(op, Replay):
            if model.inserted:
                earlier = model.inserted[op.nth % len(model.inserted)]
                model.feed(ChangeEvent(earlier.row, model.next_start(0), model.time))
        elif isinstance(op, Tick):
            if op.idle:
                model.idle(op.dt)
            else:
                model.commit(op.dt)
        else:
            model.flush(op.lag)
        model.check_checkpoint()
    # The end of the stretch: everything still waiting expires and is decided.
    model.take(model.correlator.expire_all())
    model.flush(0)
    return model


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=60))
def test_every_outbox_row_ends_in_exactly_one_terminal_status(sequence: list[Op]) -> None:
    model = run(sequence)
    outbox_ids = {e.row.id for e in model.inserted if isinstance(e.row, OutboxRow)}
    assert set(model.ledger) == outbox_ids, "every outbox row has exactly one ledger entry"
    assert all(count == 1 for count in model.sends.values()), "nothing is sent twice"
    assert set(model.sends) == {i for i, s in model.ledger.items() if s is Status.OFFLOADED}
    assert model.correlator.pending_count() == 0, "nothing waits after the end"
    assert model.correlator.oldest_start() is None and model.correlator.oldest_wait() is None


def test_a_row_re_inserted_with_its_id_before_its_user_arrives_pairs_once() -> None:
    """Found by the property above: the second INSERT of a waiting row's id listed it twice for
    its user, and the user's arrival then raised KeyError out of the pipeline's loop."""
    model = run(
        [
            OutboxOp(100, 1, 0, "user_create", None, 0),
            Replay(0),
            UserOp(1, 1, 0, False, False),
        ]
    )
    assert model.ledger == {100: Status.OFFLOADED}
    assert model.sends == {100: 1}


def test_a_user_seen_twice_does_not_let_the_checkpoint_pass_a_later_user() -> None:
    """Found by the property above: a user id inserted again kept its first place in the waiting
    map with its new position, so `oldest_start()` could point past a user inserted in between."""
    model = Model()
    for op in (UserOp(1, 0, 0, False, False), UserOp(2, 1, 0, False, False), Replay(0)):
        if isinstance(op, UserOp):
            row = UserRow(op.uid, "u", "A", "L", "a@example.org", "manual", False, False)
            model.feed(ChangeEvent(row, model.next_start(op.dt), model.time))
        else:
            model.feed(ChangeEvent(model.inserted[0].row, model.next_start(0), model.time))
        model.check_checkpoint()
