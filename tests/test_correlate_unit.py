"""Pairing and deciding, as pure logic (no server needed)."""

from __future__ import annotations

import random
from email.errors import HeaderParseError
from email.headerregistry import Address

import pytest

from cdc_offload import policy
from cdc_offload.correlate import Correlator
from cdc_offload.model import ChangeEvent, Checkpoint, Job, OutboxRow, Position, Reason, Status, UserRow
from cdc_offload.policy import decide, is_single_address

TEMPLATES = frozenset({"user_create"})


def at(offset: int) -> Checkpoint:
    return Checkpoint(Position("binlog.000001", offset))


def user(uid: int, offset: int, time: int, **fields: object) -> ChangeEvent:
    row = UserRow(uid, f"u{uid}", "Ada", "L", f"u{uid}@example.org", "manual", False, False)
    return ChangeEvent(row.__class__(**{**{f: getattr(row, f) for f in row.__slots__}, **fields}), at(offset), time)  # type: ignore[arg-type]


def outbox(
    oid: int, uid: int, offset: int, time: int, template: str = "user_create", sent: int | None = None
) -> ChangeEvent:
    return ChangeEvent(
        OutboxRow(oid, uid, template, sent, due=time, companyid=1, subject="s", body="b"), at(offset), time
    )


def test_pairs_in_either_order_and_the_job_starts_at_the_older_transaction() -> None:
    c = Correlator(30, TEMPLATES)
    assert c.add(user(1, 100, 1000)) == []
    (job,) = c.add(outbox(10, 1, 700, 1001))
    assert job.user is not None and job.user.id == 1 and job.start == at(100)

    assert c.add(outbox(11, 2, 800, 1002)) == []
    (job,) = c.add(user(2, 900, 1003))
    assert job.outbox.id == 11 and job.start == at(800)


def test_checkpoint_is_held_before_the_oldest_row_still_waiting() -> None:
    c = Correlator(30, TEMPLATES)
    c.add(user(1, 100, 1000))
    c.add(user(2, 200, 1000))
    assert c.oldest_start() == at(100)
    c.add(outbox(10, 1, 300, 1001))
    assert c.oldest_start() == at(200), "a paired user no longer holds the checkpoint"
    c.add(outbox(11, 2, 400, 1001))
    assert c.oldest_start() is None


def commits(c: Correlator, times: list[int], offset: int = 1000) -> list[Job]:
    """Transactions ending at the given times, 100 bytes apart: what the stream says."""
    expired: list[Job] = []
    for n, time in enumerate(times):
        expired += c.advance(time, Position("binlog.000001", offset + 100 * n))
    return expired


def test_unpaired_rows_expire_by_event_time_and_come_back_without_a_user() -> None:
    c = Correlator(30, TEMPLATES)
    c.add(outbox(10, 7, 100, 1000))
    # The stream's clock is a median of recent commits: it follows steady time a few commits late.
    assert commits(c, [1000, 1010, 1020, 1029, 1029, 1029]) == []
    (expired,) = commits(c, [1031, 1031, 1031], offset=2000)
    assert expired.outbox.id == 10 and expired.user is None
    assert c.oldest_start() is None and c.pending_count() == 0


def test_a_user_whose_window_passed_no_longer_pairs() -> None:
    c = Correlator(30, TEMPLATES)
    c.add(user(1, 100, 1000))
    commits(c, [1100] * 5)
    assert c.add(outbox(10, 1, 200, 1100)) == []
    assert c.pending_count() == 1


def test_rows_that_are_not_candidates_come_out_at_once() -> None:
    c = Correlator(30, TEMPLATES)
    (other,) = c.add(outbox(10, 1, 100, 1000, template="user_reset"))
    (sent,) = c.add(outbox(11, 1, 100, 1000, sent=999))
    assert other.user is None and sent.user is None and c.pending_count() == 0


def job(**user_fields: object) -> Job:
    event = user(1, 100, 1000, **user_fields)
    row = OutboxRow(10, 1, "user_create", None, due=1000, companyid=1)
    assert isinstance(event.row, UserRow)
    return Job(row, event.row, at(100), 1000)


def test_decisions_name_their_reason() -> None:
    assert decide(job(), 1001, 45, TEMPLATES) is None
    cases = {
        Reason.USER_SUSPENDED: job(suspended=True),
        Reason.USER_DELETED: job(deleted=True),
        Reason.BAD_ADDRESS: job(email="a@b.org, c@d.org"),
    }
    for reason, case in cases.items():
        resolution = decide(case, 1001, 45, TEMPLATES)
        assert resolution is not None and resolution.reason is reason and resolution.status is Status.SKIPPED
    stale = decide(job(), 1046, 45, TEMPLATES)
    assert stale is not None and stale.status is Status.STALE and stale.reason is Reason.TOO_OLD


def test_only_one_plain_address_is_accepted() -> None:
    assert is_single_address("ada.lovelace+moodle@uni.example.ac.uk")
    for bad in ("", "ada", "a@b", "a@@b.org", "a b@c.org", "a@b.org,c@d.org", "a@b.org\r\nBcc: x@y.org", "<a@b.org>"):
        assert not is_single_address(bad), bad


def test_the_fast_address_check_accepts_nothing_the_full_parser_refuses() -> None:
    # The fast path is a subset of email.headerregistry's addr-spec: a random walk over the
    # characters where the two could disagree (dots, hyphens, specials, empty labels).
    rng = random.Random(5093)
    atom = "aZ09_+!#$%&*/=?^`{|}~-."

    def dotted(chars: str, parts: int) -> str:
        return ".".join("".join(rng.choice(chars) for _ in range(rng.randint(0, 4))) for _ in range(parts))

    fast_accepted = 0
    for _ in range(20_000):
        text = dotted(atom, rng.randint(1, 3)) + "@" + dotted("aZ09-_", rng.randint(1, 4))
        if policy._PLAIN_ADDRESS.fullmatch(text):
            fast_accepted += 1
            try:
                Address(addr_spec=text)
            except (HeaderParseError, ValueError, IndexError):
                pytest.fail(f"the fast path accepts {text!r}, which the parser refuses")
    assert fast_accepted > 500, "the walk reached the fast path"
