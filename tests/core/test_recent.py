"""The duplicate-delivery memory: a bounded window of delivered message_ids."""

from __future__ import annotations

import threading

from k2hr3_osnl.core.recent import RecentDeliveries


class Clock:
    """A clock the test moves by hand: windows are checked without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_delivered_id_is_remembered() -> None:
    recent = RecentDeliveries(60, clock=Clock())
    recent.add("m1")
    assert "m1" in recent
    assert "m2" not in recent


def test_it_is_forgotten_after_the_window() -> None:
    """A redelivery much later is rare and harmless (deletes are idempotent): call again."""
    clock = Clock()
    recent = RecentDeliveries(60, clock=clock)
    recent.add("m1")
    clock.now += 59.9
    assert "m1" in recent
    clock.now += 0.2
    assert "m1" not in recent


def test_adding_again_restarts_the_window() -> None:
    clock = Clock()
    recent = RecentDeliveries(60, clock=clock)
    recent.add("m1")
    clock.now += 50
    recent.add("m1")
    clock.now += 50
    assert "m1" in recent


def test_capacity_bounds_memory_dropping_the_oldest() -> None:
    recent = RecentDeliveries(3600, capacity=3, clock=Clock())
    for message_id in ("m1", "m2", "m3", "m4", "m5"):
        recent.add(message_id)
    assert len(recent) == 3
    assert "m1" not in recent and "m2" not in recent
    assert all(m in recent for m in ("m3", "m4", "m5"))


def test_expired_ids_are_dropped_not_just_hidden() -> None:
    """A daemon that runs for months keeps only one window's worth of ids."""
    clock = Clock()
    recent = RecentDeliveries(60, capacity=1_000_000, clock=clock)
    for i in range(1000):
        recent.add(f"old-{i}")
    clock.now += 61
    recent.add("new")
    assert len(recent) == 1


def test_zero_window_turns_it_off() -> None:
    recent = RecentDeliveries(0, clock=Clock())
    recent.add("m1")
    assert "m1" not in recent
    assert len(recent) == 0


def test_missing_message_ids_are_never_duplicates() -> None:
    """Without an id, two different notifications must not be mistaken for one."""
    recent = RecentDeliveries(60, clock=Clock())
    recent.add(None)
    recent.add(12)
    assert None not in recent
    assert 12 not in recent
    assert len(recent) == 0


def test_concurrent_adds_stay_within_capacity() -> None:
    recent = RecentDeliveries(3600, capacity=100)

    def work(n: int) -> None:
        for i in range(500):
            recent.add(f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recent) == 100


def test_long_message_ids_cost_no_more_than_short_ones() -> None:
    """Publishers choose message_ids: 2,000 of 100 kB each must not keep 200 MB alive,
    and a copy of one is still recognised."""
    import sys

    recent = RecentDeliveries(window_seconds=600)
    long_ids = [f"{i:06d}" + "x" * 100_000 for i in range(2_000)]
    for message_id in long_ids:
        recent.add(message_id)
    kept = sum(sys.getsizeof(key) for key in recent._seen)
    assert kept < 2_000 * 200, f"{kept} bytes kept for 2,000 ids"
    assert long_ids[5] in recent
    assert ("000005" + "x" * 99_999 + "y") not in recent
    assert recent.begin(long_ids[7]) is False
    assert recent.begin("short-id") is True
