"""Fixtures the fault scenarios share; a test module imports the ones it uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.invariant import fast_moto_queue_counts


@pytest.fixture(autouse=True, scope="module")
def fast_moto() -> Iterator[None]:
    """moto's per-send queue scan made O(1) for the module (see `fast_moto_queue_counts`)."""
    undo = fast_moto_queue_counts()
    try:
        yield
    finally:
        undo()
