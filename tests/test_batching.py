"""How batches are formed: filled while messages queue up, never waited for at a trickle."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from k2hr3_osnl.rabbit import batching


class DriverPoll:
    """A driver listener's ``poll``: what it was asked, and how long the first one takes."""

    def __init__(self, first_after: float) -> None:
        self.first_after = first_after
        self.asked: list[tuple[int, float | None]] = []

    def __call__(
        self, timeout: float | None = None, batch_size: int = 1, batch_timeout: float | None = None
    ) -> list[Any]:
        self.asked.append((batch_size, batch_timeout))
        if len(self.asked) == 1:
            time.sleep(self.first_after)
            return [SimpleNamespace(name="first")]
        return [SimpleNamespace(name="more") for _ in range(batch_size)]


def test_a_message_that_was_already_waiting_opens_a_full_batch() -> None:
    poll = DriverPoll(first_after=0)
    before = time.monotonic()
    batch = batching.greedy(poll)(batch_size=32, batch_timeout=0.05)
    assert [m.name for m in batch] == ["first"] + ["more"] * 31
    assert poll.asked == [(1, None), (31, 0.05)]
    # Each is stamped with when it was taken: its retry budget counts from then.
    assert all(before <= m.k2hr3_osnl_received <= time.monotonic() for m in batch)


def test_a_message_that_had_to_be_awaited_takes_only_what_is_there() -> None:
    poll = DriverPoll(first_after=0.1)
    batching.greedy(poll)(batch_size=32, batch_timeout=0.05)
    assert poll.asked[1] == (31, batching._NO_WAIT)


def test_nothing_arrived_means_an_empty_batch() -> None:
    def idle(**kwargs: Any) -> list[Any]:
        return []

    assert batching.greedy(idle)(batch_size=32, batch_timeout=0.05) == []
