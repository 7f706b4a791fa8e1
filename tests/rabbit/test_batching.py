"""How batches are formed: of the messages already arriving, never waiting for company."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from k2hr3_osnl.rabbit import batching


class DriverPoll:
    """A driver listener's ``poll``: what it was asked; the first message arrives after
    ``first_after`` seconds, then each later call hands over ``arriving`` in turn (how
    many messages reached the socket within that window)."""

    def __init__(self, first_after: float, arriving: list[int]) -> None:
        self.first_after = first_after
        self.arriving = list(arriving)
        self.asked: list[tuple[int, float | None]] = []

    def __call__(
        self, timeout: float | None = None, batch_size: int = 1, batch_timeout: float | None = None
    ) -> list[Any]:
        self.asked.append((batch_size, batch_timeout))
        if len(self.asked) == 1:
            time.sleep(self.first_after)
            return [SimpleNamespace(name="first")]
        count = min(batch_size, self.arriving.pop(0) if self.arriving else 0)
        return [SimpleNamespace(name="more") for _ in range(count)]


GAP = getattr(batching, "GAP_SECONDS", 0.0003)


def test_a_backlog_fills_the_batch_from_messages_that_follow_back_to_back() -> None:
    poll = DriverPoll(first_after=0, arriving=[1] * 40)
    before = time.monotonic()
    batch = batching.greedy(poll)(batch_size=32, batch_timeout=0.05)
    assert [m.name for m in batch] == ["first"] + ["more"] * 31
    # One message at a time, each given the gap to arrive.
    assert poll.asked == [(1, None)] + [(1, GAP)] * 31
    # Each is stamped with when it was taken: its retry budget counts from then.
    assert all(before <= m.k2hr3_osnl_received <= time.monotonic() for m in batch)


def test_a_queueing_batch_closes_at_the_first_gap_not_at_batch_timeout() -> None:
    # A burst: two messages back to back, then none on the wire. The deletion among
    # them goes now, not when the batch would have been full.
    poll = DriverPoll(first_after=0, arriving=[1, 0, 1, 1])
    batch = batching.greedy(poll)(batch_size=32, batch_timeout=1.0)
    assert len(batch) == 2
    assert poll.asked == [(1, None), (1, GAP), (1, GAP)]
    assert all(wait is None or wait <= GAP for _, wait in poll.asked)


def test_messages_that_keep_coming_close_the_batch_after_batch_timeout() -> None:
    class Streaming(DriverPoll):
        def __call__(self, **kwargs: Any) -> list[Any]:
            if len(self.asked) >= 1:
                time.sleep(0.01)
            return super().__call__(**kwargs)

    poll = Streaming(first_after=0, arriving=[1] * 100)
    batch = batching.greedy(poll)(batch_size=32, batch_timeout=0.03)
    assert 2 <= len(batch) < 32


def test_a_message_that_had_to_be_awaited_takes_only_what_is_there() -> None:
    poll = DriverPoll(first_after=0.1, arriving=[3])
    batch = batching.greedy(poll)(batch_size=32, batch_timeout=0.05)
    assert poll.asked == [(1, None), (31, batching._NO_WAIT)]
    assert len(batch) == 4


def test_nothing_arrived_means_an_empty_batch() -> None:
    def idle(**kwargs: Any) -> list[Any]:
        return []

    assert batching.greedy(idle)(batch_size=32, batch_timeout=0.05) == []


def test_a_message_awaited_for_a_moment_is_not_a_queue() -> None:
    # 300 messages/s: each comes ~3 ms into the wait, well within batch_timeout, yet it
    # was awaited: the batch is what is already here, with no window for more.
    poll = DriverPoll(first_after=0.003, arriving=[0])
    assert batching.QUEUED_SECONDS < 0.003
    batch = batching.greedy(poll)(batch_size=32, batch_timeout=0.05)
    assert poll.asked == [(1, None), (31, batching._NO_WAIT)]
    assert len(batch) == 1


def test_a_queueing_batch_closes_as_soon_as_nothing_more_is_already_there() -> None:
    # A burst arriving a message at a time: the socket is looked at before each next
    # message, and the batch closes when nothing is there, without a window.
    there = [True, True, False]
    poll = DriverPoll(first_after=0, arriving=[1] * 40)
    batch = batching.greedy(poll, ready=lambda: there.pop(0))(batch_size=32, batch_timeout=1.0)
    assert len(batch) == 3
    assert poll.asked == [(1, None), (1, GAP), (1, GAP)]
    assert there == []


def test_a_backlog_already_there_still_fills_the_batch() -> None:
    poll = DriverPoll(first_after=0, arriving=[1] * 40)
    batch = batching.greedy(poll, ready=lambda: True)(batch_size=32, batch_timeout=0.05)
    assert len(batch) == 32
