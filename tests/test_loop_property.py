"""Property test of the real loop: `Session` itself (intake, correlator, staging, rounds in flight,
the claim, the safe-checkpoint rule, commits) driven turn by turn on in-memory fakes of the
primary, AWS and the clock. For any interleaving of user and outbox INSERTs (re-inserts
included), commits, silences, AWS answers (accepted or refused, in any order the loop allows) and
time passing:

- the committed checkpoint never passes a row the ledger has no final word on (a crash there would
  lose it: Moodle would not send a row we claimed, we would not re-read it); a row INSERTed again
  is re-read from its newest image;
- at the end every outbox row has exactly one final ledger entry, nothing was sent twice, and
  every row is either accepted by AWS or still unsent in the outbox for Moodle.

Runs in milliseconds per example: no server, no thread."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc_offload.claiming import UserAlone
from cdc_offload.health import Health
from cdc_offload.metrics import Metrics
from cdc_offload.model import (
    ChangeEvent,
    Checkpoint,
    Commit,
    Delivery,
    Idle,
    Job,
    OutboxRow,
    Position,
    SourceItem,
    Status,
    UserRow,
)
from cdc_offload.outcomes import Tally
from cdc_offload.session import LoopParts, RunMode, Session
from cdc_offload.settings import Settings, SinkSettings, parse_dsn
from cdc_offload.sinks import NOT_ATTEMPTED
from cdc_offload.source import Source
from tests.support.loop_fakes import FakeClock, MemoryStore

BASE_TIME = 1_700_000_000
ADDRESSES = ("learner@example.org", "no-at-sign")


def loop_settings() -> Settings:
    return Settings(
        source=parse_dsn("--source-dsn", "mysql://reader@replica:3306/moodle"),
        writer=parse_dsn("--writer-dsn", "mysql://writer@primary:3306/moodle"),
        sink=SinkSettings(queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/mail.fifo"),
        pair_window=30.0,
        max_event_age=120.0,
        max_batch=3,
        checkpoint_interval=1.0,
        moodle_lock="none",
    )


class NoSource:
    """The test hands items to `Session.step` itself."""

    def __iter__(self) -> NoSource:
        return self

    def __next__(self) -> SourceItem:
        raise StopIteration

    def close(self) -> None:
        return None


class EventualAnswer(Future[list[Delivery]]):
    """A round with AWS. When the loop must wait for it (it needs that round's ledger rows before
    it can go on), AWS answers as it would in the end: accepted. A plain Future would wait forever
    here, for the test holds the answers."""

    def __init__(self, aws: HeldAnswers) -> None:
        super().__init__()
        self._aws = aws

    def result(self, timeout: float | None = None) -> list[Delivery]:
        if not self.done():
            self._aws.answer_round(self, accepted=True)
        return super().result(timeout)


class HeldAnswers:
    """AWS whose answers the test releases, oldest or newest round first."""

    sink_name = "sqs"
    round_limit = 3

    def __init__(self) -> None:
        self.pending: list[tuple[Future[list[Delivery]], list[Job]]] = []
        self.sends: dict[int, int] = {}
        self.answer_at_once = False

    def submit(self, jobs: list[Job]) -> Future[list[Delivery]]:
        for job in jobs:
            self.sends[job.outbox.id] = self.sends.get(job.outbox.id, 0) + 1
        future = EventualAnswer(self)
        self.pending.append((future, list(jobs)))
        if self.answer_at_once:
            self.answer(newest=False, accepted=True)
        return future

    def answer(self, *, newest: bool, accepted: bool) -> None:
        if self.pending:
            self.answer_round(self.pending[-1 if newest else 0][0], accepted=accepted)

    def answer_round(self, future: Future[list[Delivery]], *, accepted: bool) -> None:
        index = next(i for i, (pending, _) in enumerate(self.pending) if pending is future)
        _, jobs = self.pending.pop(index)
        code = None if accepted else NOT_ATTEMPTED
        future.set_result([Delivery(job.outbox.id, accepted, error_code=code) for job in jobs])


@dataclass(frozen=True)
class Insert:
    user: bool
    uid: int
    oid: int
    dt: int
    address: int
    template: str


@dataclass(frozen=True)
class Reinsert:
    nth: int


@dataclass(frozen=True)
class Answer:
    newest: bool
    accepted: bool


@dataclass(frozen=True)
class Pass:
    """Time passes: `seconds` of silence (heartbeats) or of nothing watched being committed."""

    seconds: int
    idle: bool


Op = Insert | Reinsert | Answer | Pass

ops = st.one_of(
    st.builds(
        Insert,
        user=st.booleans(),
        uid=st.integers(1, 5),
        oid=st.integers(100, 108),
        dt=st.sampled_from([0, 0, 1, 2, 40]),
        address=st.sampled_from([0, 0, 0, 1]),
        template=st.sampled_from(["user_create", "user_create", "user_create", "user_reset"]),
    ),
    st.builds(Reinsert, nth=st.integers(0, 40)),
    st.builds(Answer, newest=st.booleans(), accepted=st.sampled_from([True, True, False])),
    st.builds(Pass, seconds=st.sampled_from([1, 2, 40]), idle=st.booleans()),
)


@dataclass
class World:
    clock: FakeClock = field(default_factory=lambda: FakeClock(wall=float(BASE_TIME)))
    aws: HeldAnswers = field(default_factory=HeldAnswers)
    offset: int = 4
    time: int = BASE_TIME
    inserted: list[ChangeEvent] = field(default_factory=list)
    store: MemoryStore = field(init=False)
    session: Session = field(init=False)

    def __post_init__(self) -> None:
        # A `Pass` moves the clock with no turn of the loop in between, which a real lease would not
        # survive; the lease has tests of its own (test_store_parts_unit.py), so here it never lapses.
        self.store = MemoryStore(self.clock, lease_seconds=float("inf"))
        parts = LoopParts(self.store, self.aws, UserAlone(), Metrics(), Health(3600), self.clock, Tally())
        source: Source = NoSource()
        start = Checkpoint(Position("binlog.000001", self.offset))
        self.session = Session(loop_settings(), parts, source, start, RunMode(stop_at_end=True))

    def boundary(self) -> Checkpoint:
        return Checkpoint(Position("binlog.000001", self.offset))

    def transaction(self, event: ChangeEvent | None, dt: int) -> list[SourceItem]:
        """One transaction: the row (if any) at the current boundary, then its commit."""
        self.time += dt
        self.clock.advance(dt)
        items: list[SourceItem] = []
        if event is not None:
            items.append(event)
            self.inserted.append(event)
            if isinstance(event.row, OutboxRow):
                self.store.outbox_insert(event.row.id, event.row.userid, event.row.sent)
        self.offset += 100
        items.append(Commit(self.boundary(), self.time))
        return items

    def apply(self, op: Op) -> None:
        items: list[SourceItem] = []
        if isinstance(op, Insert):
            row: UserRow | OutboxRow
            if op.user:
                row = UserRow(op.uid, f"u{op.uid}", "Ada", "L", ADDRESSES[op.address], "manual", False, False)
            else:
                row = OutboxRow(op.oid, op.uid, op.template, None, self.time + op.dt, 1, "s", "b")
            items = self.transaction(ChangeEvent(row, self.boundary(), self.time + op.dt), op.dt)
        elif isinstance(op, Reinsert) and self.inserted:
            earlier = self.inserted[op.nth % len(self.inserted)]
            items = self.transaction(ChangeEvent(earlier.row, self.boundary(), self.time), 0)
        elif isinstance(op, Answer):
            self.aws.answer(newest=op.newest, accepted=op.accepted)
        elif isinstance(op, Pass) and op.idle:
            self.clock.advance(op.seconds)
            items = [Idle(self.clock.wall())]
        elif isinstance(op, Pass):
            items = self.transaction(None, op.seconds)
        self.session.step(items)
        self.check_checkpoint()

    def check_checkpoint(self) -> None:
        committed = self.store.checkpoint
        if committed is None:
            return
        # A row read twice (its id INSERTed again) is re-read from its newest image.
        newest = {e.row.id: e.start for e in self.inserted if isinstance(e.row, OutboxRow)}
        for outbox_id, start in newest.items():
            if not self.store.has_final_word(outbox_id):
                assert committed.position <= start.position, (
                    f"the checkpoint {committed.position} passed outbox row {outbox_id} at "
                    f"{start.position}, which the ledger has no final word on"
                )

    def finish(self) -> None:
        self.aws.answer_at_once = True
        while self.aws.pending:
            self.aws.answer(newest=False, accepted=True)
        self.session.drain()
        self.check_checkpoint()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=50))
def test_the_checkpoint_never_passes_an_unresolved_row_and_every_row_ends_once(sequence: list[Op]) -> None:
    world = World()
    for op in sequence:
        world.apply(op)
    world.finish()
    outbox_ids = {e.row.id for e in world.inserted if isinstance(e.row, OutboxRow)}
    assert {i for i in outbox_ids if world.store.has_final_word(i)} == outbox_ids, "every row has a final word"
    assert all(count == 1 for count in world.aws.sends.values()), "nothing is sent twice"
    for outbox_id in outbox_ids:
        offloaded = world.store.ledger[outbox_id].status is Status.OFFLOADED
        assert offloaded != world.store.unsent(outbox_id), "either AWS has it or Moodle still can send it"


def test_a_row_with_aws_holds_the_checkpoint_while_later_transactions_commit() -> None:
    """The shortest case the property finds when rounds in flight stop holding the checkpoint
    (their holds deleted from the safe-checkpoint rule): a row is with AWS, unanswered, while the
    stream moves on and the checkpoint interval passes."""
    world = World()
    world.apply(Insert(False, 1, 100, 0, 0, "user_create"))
    world.apply(Insert(True, 1, 0, 0, 0, "user_create"))
    assert world.aws.pending, "the row is with AWS"
    world.apply(Pass(2, idle=False))
    world.finish()
    assert world.store.ledger[100].status is Status.OFFLOADED
