"""The README's "run it" command keeps working: the demo, in-process, on its own MariaDB and moto."""

from __future__ import annotations

import pytest

from cdc_offload.demo import run_demo


@pytest.mark.slow
def test_demo_offloads_every_user_and_leaves_the_special_cases_to_moodle() -> None:
    lines: list[str] = []
    assert run_demo(echo=lines.append, users=40) == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert "offloaded  none                 40" in text
    assert "messages in SQS: 40 (offloaded: 40)" in text
    assert "handled rows still in the outbox: 0 of 40" in text
    for reason in ("already_sent", "bad_address", "other_template", "scheduled", "user_suspended"):
        assert reason in text
