"""One circuit breaker shared by every worker thread.

While K2HR3 is failing, workers do not each retry on their own schedule (that would send
one request per held message per retry). They wait here together, and only one probe
goes out at a time, spaced by an exponential backoff with jitter that is capped at
``max_interval``. The first probe that succeeds closes the breaker and wakes everyone,
so a backlog drains at full speed as soon as K2HR3 is back.

It judges K2HR3 as a whole, not one deletion: a round of calls in which K2HR3 accepted
anything is a success, and a round made only of deletions that K2HR3 keeps failing while
it accepts others (a 403 for one cuk) says nothing either way (``ok=None``). So one bad
cuk can neither open the breaker for everyone nor hold it open.

A K2HR3 that limits its rate (429, ``Retry-After``) is working, only not at the pace
we call it: :meth:`CircuitBreaker.record` is then given how long to wait, and nobody
calls before that time, whether the breaker is open or closed. It also learns how many
calls K2HR3 took before it said so: from then on, :meth:`CircuitBreaker.admit` lets
that many calls go per window of that length, one more after each window without a
429, and lifts the limit once several windows passed without one. Without that, every
held deletion would go out again at the end of each hold, and a K2HR3 taking 2 calls
a second would get 15 calls for each deletion it accepts.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from enum import Enum

#: Windows without a 429 after which a learnt rate limit is lifted.
CLEAN_WINDOWS = 10


class Turn(Enum):
    CALL = "call"  # the breaker is closed: call K2HR3
    PROBE = "probe"  # the breaker is open and this caller is the one probe
    GIVE_UP = "give_up"  # the deadline passed or the daemon is stopping


class CircuitBreaker:
    def __init__(
        self,
        max_interval: float = 1.0,
        min_interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_interval = max_interval
        self.min_interval = min(min_interval, max_interval)
        self._clock = clock
        self._cond = threading.Condition()
        self._open = False
        self._probing = False
        self._interval = self.min_interval
        self._next_probe = 0.0
        self._stopping = False
        #: Clock time before which nobody calls: K2HR3 asked us to slow down.
        self._not_before = 0.0
        #: The rate limit learnt from 429s: calls per window (None: no limit), the
        #: window's length and end, the calls left in it, and how it went.
        self._quota: int | None = None
        self._window = 1.0
        self._window_end = 0.0
        self._left = 0
        self._limited = False
        self._clean = 0
        #: Calls K2HR3 accepted since it last asked us to slow down.
        self._accepted = 0
        #: Rounds in which K2HR3 accepted something, ever: a deletion that failed
        #: while this grew failed on its own, not because K2HR3 was down.
        self.successes = 0

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def stopping(self) -> bool:
        return self._stopping

    def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the daemon stops first; False if it did."""
        with self._cond:
            if seconds > 0 and not self._stopping:
                self._cond.wait_for(lambda: self._stopping, timeout=seconds)
            return not self._stopping

    def wait_turn(self, deadline: float) -> Turn:
        """Block until this caller may call K2HR3, or until ``deadline`` (clock time)."""
        with self._cond:
            while True:
                if self._stopping:
                    return Turn.GIVE_UP
                now = self._clock()
                if now < self._not_before:
                    if now >= deadline:
                        return Turn.GIVE_UP
                    self._cond.wait(timeout=min(deadline, self._not_before) - now)
                    continue
                if not self._open:
                    return Turn.CALL
                if not self._probing and now >= self._next_probe:
                    self._probing = True
                    return Turn.PROBE
                if now >= deadline:
                    return Turn.GIVE_UP
                wake = deadline if self._probing else min(deadline, self._next_probe)
                self._cond.wait(timeout=max(0.0, wake - now))

    @property
    def limited(self) -> bool:
        """Whether calls are limited to a rate K2HR3 asked for."""
        return self._quota is not None

    def admit(self, wanted: int) -> int:
        """How many of ``wanted`` calls may go now (0: wait for :meth:`next_window`)."""
        with self._cond:
            if self._quota is None:
                return wanted
            now = self._clock()
            if now >= self._window_end:
                self._roll(now)
                if self._quota is None:
                    return wanted
            granted = min(wanted, self._left)
            self._left -= granted
            return granted

    def next_window(self) -> float:
        """Seconds until the rate limit's next window opens (0 when not limited)."""
        with self._cond:
            if self._quota is None:
                return 0.0
            return max(0.0, self._window_end - self._clock())

    def _roll(self, now: float) -> None:
        """Open a new window; widen the limit after one without a 429, or lift it."""
        assert self._quota is not None
        if self._limited:
            self._clean = 0
        else:
            idle = int((now - self._window_end) // self._window) if self._window > 0 else 0
            self._clean += 1 + max(0, idle)
            self._quota += 1
        if self._clean >= CLEAN_WINDOWS:
            self._quota = None
            return
        self._limited = False
        self._window_end = now + self._window
        self._left = self._quota

    def record(
        self, turn: Turn, ok: bool | None, hold: float | None = None, accepted: int = 0
    ) -> None:
        """Report how a round of calls made on ``turn`` went (None: no verdict on K2HR3).

        ``hold``: K2HR3 asked everyone to wait this many seconds (429, Retry-After);
        ``accepted``: how many calls of the round it took.
        """
        with self._cond:
            self._accepted += accepted
            if hold is not None:
                now = self._clock()
                self._not_before = max(self._not_before, now + max(0.0, hold))
                # What it took before saying so is what it takes per such a window.
                self._quota = max(1, self._accepted)
                self._accepted = 0
                self._window = max(hold, self.min_interval)
                self._window_end = self._not_before
                self._limited = True
                self._left = 0
            if turn is Turn.PROBE:
                self._probing = False
                # The next waiter may probe now: someone else's deletion, perhaps.
                self._cond.notify_all()
            if ok is None:
                return
            if ok:
                self.successes += 1
                if self._open:
                    self._open = False
                    self._interval = self.min_interval
                    self._cond.notify_all()
                return
            if not self._open or turn is Turn.PROBE:
                # Open now, or stay open with a longer pause before the next probe.
                if self._open:
                    self._interval = min(self.max_interval, self._interval * 2)
                self._open = True
                jitter = random.uniform(0.8, 1.0)
                self._next_probe = self._clock() + self._interval * jitter
            self._cond.notify_all()

    def stop(self) -> None:
        """Release every waiter: the daemon is shutting down."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
