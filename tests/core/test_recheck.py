"""The re-check schedule of refused deletions: about 1, 5 and 15 minutes, then dropped."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from k2hr3_osnl.core.parking import Parked
from k2hr3_osnl.core.recheck import SCHEDULE, Rechecks, next_check


def test_a_refusal_is_checked_after_one_five_and_fifteen_minutes_then_dropped() -> None:
    assert [next_check(1000.0, done) for done in range(4)] == [1060.0, 1300.0, 1900.0, None]


@given(st.floats(0, 4e9), st.integers(0, 10))
def test_checks_come_later_each_time_and_end(first: float, done: int) -> None:
    when = next_check(first, done)
    if done >= len(SCHEDULE):
        assert when is None
    else:
        assert when is not None and when > first
        later = next_check(first, done + 1)
        assert later is None or later > when


def held(first_seen: float, attempts: int = 0) -> Parked:
    return Parked(
        "m1",
        "instance.delete.end",
        "nova",
        {"x": 1},
        "Nova still has it",
        attempts,
        first_seen,
        cuk="c",
    )


def test_held_refusals_survive_a_new_store_and_come_due_on_schedule(tmp_path: Path) -> None:
    Rechecks(tmp_path).park(held(1000.0))
    store = Rechecks(tmp_path)  # as after a restart
    assert store.due(1059.0) == []
    (item,) = store.due(1060.0)
    again = store.checked(item)
    assert again.attempts == 1 and again.first_seen == 1000.0
    assert store.due(1299.0) == [] and len(store.due(1300.0)) == 1
    assert store.count() == 1
    # Kept apart from the parked deletions that replay --parked sends.
    assert not (tmp_path / "parked").exists() or not list((tmp_path / "parked").iterdir())
