"""The in-memory store the loop's tests run on (tests/support/memory_store.py) against the real
`Store` on a throwaway MariaDB: one short scenario (claim, IOMAD marking a row behind our back,
settle, replay, note duplicates, orphaned claims, a lost lock), the same answers and the same
ledger, checkpoint and outbox afterwards. A rule changed in one and not the other fails here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from cdc_offload.demo.moodle import create_user_iomad, make_users
from cdc_offload.demo.stack import MoodleDatabase
from cdc_offload.model import Checkpoint, Position, Reason, Resolution, Status
from cdc_offload.settings import Settings, SinkSettings
from cdc_offload.store import LeadershipLost, Store
from cdc_offload.store.protocols import LeaderStore
from tests.support import init_state, ledger, outbox_rows
from tests.support.loop_fakes import FakeClock
from tests.support.memory_store import MemoryStore

# No AWS here: the store never talks to the sink.
SINK = SinkSettings(queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/mail")
IOMAD_MARK = 1_600_000_000


class World(Protocol):
    """What happens to the primary that is not the store's doing."""

    def iomad_marks(self, outbox_id: int) -> None: ...

    def lock_taken_away(self) -> None: ...

    def outbox(self, ids: list[int]) -> dict[int, int | None]: ...

    def ledger(self, ids: list[int]) -> dict[int, tuple[str, str, int | None]]: ...


@dataclass
class RealWorld:
    moodle: MoodleDatabase
    settings: Settings
    store: Store

    def iomad_marks(self, outbox_id: int) -> None:
        admin = self.moodle.admin()
        with admin.cursor() as cursor:
            cursor.execute(f"UPDATE {self.moodle.prefix}email SET sent = %s WHERE id = %s", (IOMAD_MARK, outbox_id))
        admin.close()

    def lock_taken_away(self) -> None:
        with self.store._link.cursor() as cursor:
            cursor.execute("SELECT RELEASE_LOCK(%s)", (self.settings.lock_name,))

    def outbox(self, ids: list[int]) -> dict[int, int | None]:
        rows = outbox_rows(self.moodle)
        return {i: rows[i] for i in ids if i in rows}

    def ledger(self, ids: list[int]) -> dict[int, tuple[str, str, int | None]]:
        rows = ledger(self.moodle, self.settings.state_schema)
        return {i: (r["status"], r["reason"], r["claim_mark"]) for i, r in rows.items() if i in ids}


@dataclass
class FakeWorld:
    store: MemoryStore

    def iomad_marks(self, outbox_id: int) -> None:
        self.store.outbox_mark(outbox_id, IOMAD_MARK)

    def lock_taken_away(self) -> None:
        self.store.lose_lock()

    def outbox(self, ids: list[int]) -> dict[int, int | None]:
        return {i: self.store.outbox[i][1] for i in ids if i in self.store.outbox}

    def ledger(self, ids: list[int]) -> dict[int, tuple[str, str, int | None]]:
        found = {i: self.store.ledger[i] for i in ids if i in self.store.ledger}
        return {i: (r.status.value, r.reason.value, r.claim_mark) for i, r in found.items()}


def at(offset: int) -> Position:
    return Position("binlog.000001", offset)


def scenario(store: LeaderStore, world: World, rows: list[tuple[int, int]]) -> dict[str, Any]:
    """Seven outbox rows, each meeting one rule. Returns every answer and the state after each step."""
    ids = [outbox_id for _, outbox_id in rows]
    new = [Resolution(o, u, Status.CLAIMED, Reason.NONE, at(100 + n), 1_700_000_000) for n, (u, o) in enumerate(rows)]
    accepted, refused, remarked, wrong_user, sent_before, orphan, noted = new
    seen: dict[str, Any] = {}
    store.connect()
    seen["lock"] = store.try_acquire_lock()
    seen["no checkpoint"] = store.load_checkpoint()
    world.iomad_marks(sent_before.outbox_id)
    wrong_user = dataclasses.replace(wrong_user, userid=wrong_user.userid + 1)
    claim = store.claim([accepted, refused, remarked, wrong_user, sent_before, orphan, noted], None, 1.0)
    assert claim is not None
    seen["claimed"] = sorted(claim.outbox_ids)
    mark = claim.mark
    seen["after claim"] = (world.outbox(ids), world.ledger(ids), store.recorded(ids), store.handled(ids))
    world.iomad_marks(remarked.outbox_id)

    def answered(r: Resolution, status: Status, reason: Reason = Reason.NONE) -> Resolution:
        sink = ("sqs", f"m-{r.outbox_id}") if status is Status.OFFLOADED else (None, None)
        return dataclasses.replace(r, status=status, reason=reason, sink=sink[0], message_id=sink[1], claim_mark=mark)

    final = store.commit(
        [
            answered(accepted, Status.OFFLOADED),
            answered(refused, Status.FALLBACK, Reason.AWS_REJECTED),
            answered(remarked, Status.OFFLOADED),
            answered(noted, Status.OFFLOADED),
            dataclasses.replace(wrong_user, status=Status.SKIPPED, reason=Reason.ALREADY_SENT),
        ],
        Checkpoint(at(900)),
    )
    seen["settled"] = [(r.outbox_id, r.status, r.reason) for r in final]
    seen["after commit"] = (world.outbox(ids), world.ledger(ids), store.load_checkpoint())
    # A replay of the refused row: the first final word stands.
    store.commit([dataclasses.replace(refused, status=Status.OFFLOADED, sink="sqs")], None)
    seen["duplicates"] = store.note_duplicates([noted.outbox_id, orphan.outbox_id, refused.outbox_id])
    seen["orphans"] = [(r.outbox_id, r.status, r.claim_mark) for r in store.orphaned_claims(Checkpoint(at(1000)))]
    store.commit([], Checkpoint(at(1000), gtid="0-1-7"))
    world.lock_taken_away()
    with pytest.raises(LeadershipLost):
        store.commit([answered(orphan, Status.OFFLOADED)], Checkpoint(at(2000)))
    with pytest.raises(LeadershipLost):
        store.ensure_leader()
    seen["end"] = (world.outbox(ids), world.ledger(ids), store.load_checkpoint())
    store.close()
    return seen


@pytest.mark.parametrize("suppress", ["delete", "mark-sent"])
def test_the_memory_store_answers_as_the_real_store_does(moodle: MoodleDatabase, suppress: str) -> None:
    settings = moodle.settings(SINK, suppress=suppress)
    init_state(settings)
    admin = moodle.admin()
    users = make_users(7, start=540_000 if suppress == "delete" else 541_000)
    rows = [create_user_iomad(admin, user) for user in users]
    admin.close()
    clock = FakeClock()
    real = Store(settings, clock)
    fake = MemoryStore(clock, settings.lease_seconds, suppress, leading=False)
    for userid, outbox_id in rows:
        fake.outbox_insert(outbox_id, userid, None)
    try:
        from_real = scenario(real, RealWorld(moodle, settings, real), rows)
    finally:
        real.close()
    from_fake = scenario(fake, FakeWorld(fake), rows)
    # The ledger's ages are the server's clock against ours: compared as "recorded", not by value.
    for seen in (from_real, from_fake):
        outbox, ledger_rows, recorded, handled = seen["after claim"]
        seen["after claim"] = (outbox, ledger_rows, {i: (r.status, r.claim_mark) for i, r in recorded.items()}, handled)
    assert from_fake == from_real
    # And the rules themselves, so agreeing on a wrong answer does not pass.
    accepted, refused, remarked, wrong_user, sent_before, orphan, noted = (o for _, o in rows)
    outbox, ledger_end, checkpoint = from_real["end"]
    assert from_real["claimed"] == sorted([accepted, refused, remarked, orphan, noted])
    assert outbox[refused] is None, "refused by AWS: restored for Moodle"
    assert outbox[remarked] == IOMAD_MARK and ledger_end[remarked][0] == "duplicate_observed"
    assert (accepted in outbox) == (suppress == "mark-sent")
    assert ledger_end[refused][:2] == ("fallback", "aws_rejected"), "a replay does not rewrite the ledger"
    assert ledger_end[noted][0] == "duplicate_observed" and ledger_end[orphan][0] == "claimed"
    assert outbox[wrong_user] is None and ledger_end[wrong_user] == ("skipped", "already_sent", None)
    assert outbox[sent_before] == IOMAD_MARK and sent_before not in ledger_end, "Moodle's to the end"
    assert from_real["duplicates"] == ([noted], [orphan])
    assert from_real["orphans"] == [(orphan, Status.UNCERTAIN, from_real["orphans"][0][2])]
    assert checkpoint == Checkpoint(at(1000), gtid="0-1-7"), "the commit without the lock moved nothing"
