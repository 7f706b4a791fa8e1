"""The shared circuit breaker: while K2HR3 fails, one probe at a time, never a stampede.

These use real threads and the real clock with short intervals. Timing asserts are one-
sided where possible (a slow machine only makes gaps longer), and generous otherwise.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest

from k2hr3_osnl.core import breaker as breaker_module
from k2hr3_osnl.core.breaker import CircuitBreaker, Turn

FAR = 30.0  # a deadline no test reaches


class Waiters:
    """Threads blocked in ``wait_turn``; each records the turn it got."""

    def __init__(self, breaker: CircuitBreaker, count: int, budget: float = FAR) -> None:
        self.turns: list[Turn] = []
        self._lock = threading.Lock()
        deadline = time.monotonic() + budget
        self.threads = [
            threading.Thread(target=self._wait, args=(breaker, deadline), daemon=True)
            for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _wait(self, breaker: CircuitBreaker, deadline: float) -> None:
        turn = breaker.wait_turn(deadline)
        with self._lock:
            self.turns.append(turn)

    def settle(self, expected: int, timeout: float = 10.0) -> list[Turn]:
        """Wait until ``expected`` turns are handed out, then a little longer."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.turns) < expected:
            time.sleep(0.01)
        time.sleep(0.2)  # anything else that was going to return, would have by now
        with self._lock:
            return list(self.turns)

    def join(self, timeout: float = 5.0) -> None:
        """All return within ``timeout`` in total: far less than their 30 s deadlines."""
        end = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a waiter is still blocked"


@pytest.fixture
def breaker() -> Iterator[CircuitBreaker]:
    b = CircuitBreaker(max_interval=0.2, min_interval=0.05)
    yield b
    b.stop()  # never leave a test's threads blocked


def open_breaker(breaker: CircuitBreaker) -> None:
    """A call made while closed failed: the breaker opens."""
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.CALL
    breaker.record(Turn.CALL, ok=False)
    assert breaker.is_open


def test_closed_breaker_lets_every_caller_through(breaker: CircuitBreaker) -> None:
    waiters = Waiters(breaker, 5)
    waiters.join()
    assert waiters.turns == [Turn.CALL] * 5


def test_closed_breaker_makes_the_first_attempt_even_past_the_deadline(
    breaker: CircuitBreaker,
) -> None:
    """With retry_budget_seconds = 0 a deletion still gets its one attempt."""
    assert breaker.wait_turn(time.monotonic() - 1) is Turn.CALL


def test_one_failure_opens_it(breaker: CircuitBreaker) -> None:
    open_breaker(breaker)


def test_success_while_closed_keeps_it_closed(breaker: CircuitBreaker) -> None:
    breaker.record(Turn.CALL, ok=True)
    assert not breaker.is_open


def test_only_one_probe_at_a_time(breaker: CircuitBreaker) -> None:
    """A backlog of waiting deletions sends one request, not one each."""
    open_breaker(breaker)
    waiters = Waiters(breaker, 8)
    assert waiters.settle(1) == [Turn.PROBE]
    # The probe is still out (no record yet): nobody else may go, however long it takes.
    time.sleep(0.5)
    assert waiters.turns == [Turn.PROBE]

    breaker.record(Turn.PROBE, ok=False)
    assert waiters.settle(2) == [Turn.PROBE, Turn.PROBE]
    assert breaker.is_open


def test_success_wakes_every_waiter(breaker: CircuitBreaker) -> None:
    """When K2HR3 is back the backlog drains at once, not one probe interval each."""
    open_breaker(breaker)
    waiters = Waiters(breaker, 8)
    assert waiters.settle(1) == [Turn.PROBE]
    breaker.record(Turn.PROBE, ok=True)
    waiters.join()  # deadlines are 30 s away: only the wake-up can release them
    assert sorted(t.value for t in waiters.turns) == ["call"] * 7 + ["probe"]
    assert not breaker.is_open


def test_probe_spacing_is_bounded_by_max_interval() -> None:
    """Backoff grows from min_interval and stops at max_interval (with jitter below it).

    The lower bound is what protects K2HR3 (a slow machine only widens gaps); the
    upper bound is what makes recovery quick, checked with a wide margin.
    """
    breaker = CircuitBreaker(max_interval=0.2, min_interval=0.02)
    open_breaker(breaker)
    probes: list[float] = []
    deadline = time.monotonic() + FAR
    while len(probes) < 10:
        assert breaker.wait_turn(deadline) is Turn.PROBE
        probes.append(time.monotonic())
        breaker.record(Turn.PROBE, ok=False)
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    # Jitter takes off at most 20 %; by the 5th gap the interval is at its cap.
    for gap in gaps[4:]:
        assert gap >= 0.8 * 0.2 - 0.01, gaps
    for gap in gaps:
        assert gap <= 0.2 + 1.0, gaps


def test_failures_of_ordinary_calls_do_not_delay_the_probe(breaker: CircuitBreaker) -> None:
    """Calls already on the wire when K2HR3 broke fail one by one; the probe still goes."""
    open_breaker(breaker)
    for _ in range(20):
        breaker.record(Turn.CALL, ok=False)
    started = time.monotonic()
    assert breaker.wait_turn(started + FAR) is Turn.PROBE
    assert time.monotonic() - started < 0.2 + 2.0


def test_deadline_gives_up(breaker: CircuitBreaker) -> None:
    """A deletion whose budget is spent stops waiting, to be parked."""
    open_breaker(breaker)
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.PROBE  # the probe is out
    started = time.monotonic()
    assert breaker.wait_turn(started + 0.3) is Turn.GIVE_UP
    waited = time.monotonic() - started
    assert 0.29 <= waited < 5.0


def test_stop_releases_every_waiter(breaker: CircuitBreaker) -> None:
    """SIGTERM must not wait for 30 s deadlines: waiters leave at once, to be requeued."""
    open_breaker(breaker)
    waiters = Waiters(breaker, 6)
    assert waiters.settle(1) == [Turn.PROBE]
    breaker.stop()
    waiters.join()
    assert sorted(t.value for t in waiters.turns) == ["give_up"] * 5 + ["probe"]


def test_stopped_breaker_gives_no_more_turns(breaker: CircuitBreaker) -> None:
    breaker.stop()
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.GIVE_UP
    assert not breaker.is_open


def test_it_reopens_after_recovering(breaker: CircuitBreaker) -> None:
    open_breaker(breaker)
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.PROBE
    breaker.record(Turn.PROBE, ok=True)
    assert not breaker.is_open
    open_breaker(breaker)
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.PROBE


def test_a_hold_keeps_everyone_waiting_open_or_closed(breaker: CircuitBreaker) -> None:
    """K2HR3 asked to slow down (429, Retry-After): nobody calls before the hold ends,
    although the breaker is closed (K2HR3 accepted some of that round)."""
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.CALL
    breaker.record(Turn.CALL, ok=True, hold=0.5)
    assert not breaker.is_open
    started = time.monotonic()
    assert breaker.wait_turn(time.monotonic() + FAR) is Turn.CALL
    assert time.monotonic() - started >= 0.45


def test_a_hold_past_the_deadline_gives_up(breaker: CircuitBreaker) -> None:
    breaker.record(Turn.CALL, ok=False, hold=5)
    assert breaker.wait_turn(time.monotonic() + 0.1) is Turn.GIVE_UP


def test_stop_ends_a_hold(breaker: CircuitBreaker) -> None:
    breaker.record(Turn.CALL, ok=True, hold=FAR)
    waiters = Waiters(breaker, 3)
    breaker.stop()
    assert waiters.settle(3) == [Turn.GIVE_UP] * 3
    waiters.join()


def test_a_rate_limit_is_learnt_widened_and_lifted() -> None:
    """K2HR3 took 2 calls, then said 429 with Retry-After 1: from then on 2 calls per
    second go out, one more after each second without a 429, and once several seconds
    passed without one, the limit is gone."""
    now = [100.0]
    b = CircuitBreaker(max_interval=1.0, clock=lambda: now[0])
    assert b.admit(50) == 50  # no limit yet
    b.record(Turn.CALL, ok=True, hold=1.0, accepted=2)
    assert b.limited and b.next_window() == 1.0
    now[0] = 101.0
    assert [b.admit(50), b.admit(50)] == [2, 0]  # this window's two, then wait
    assert b.next_window() == 1.0
    now[0] = 102.0
    assert b.admit(50) == 3  # a window without a 429: one more
    b.record(Turn.CALL, ok=True, hold=1.0, accepted=2)  # 2 of 3 taken, then 429
    now[0] = 103.0
    assert b.admit(50) == 2
    now[0] = 104.0 + 1.0 * (breaker_module.CLEAN_WINDOWS + 1)  # long quiet
    assert b.admit(50) == 50 and not b.limited
