"""How many new connections to K2HR3 may wait for its first answer at once.

K2HR3 often runs behind a short listen backlog (5 is common). A batch's calls go out
together, and a connection opened beyond what that queue holds loses its SYN: it waits a
second for the kernel to send it again. Until K2HR3 has answered on a new connection,
nothing tells the client that K2HR3 accepted it, so such connections are counted.

At most :data:`FLOOR` at first. Each one K2HR3 answered after a prompt connect lets one
more open (a slow start: the window doubles each round trip, so against a K2HR3 that
answers in 50 ms the pool fills in about 0.3 s, where a fixed four took 1.6 s). A connect
that took a retransmit, or failed, halves the window, never below :data:`FLOOR`.
Kept-alive connections are reused without the gate: after the start, it is rarely asked.
"""

from __future__ import annotations

import asyncio
from collections import deque

#: New connections that may wait for K2HR3's first answer at the start: below a listen
#: backlog of 5, so a K2HR3 slow to accept loses none of them.
FLOOR = 4
#: A connect that took longer lost a SYN on the way (Linux resends one after 1 s), or
#: K2HR3 is slow to take connections: either way, open fewer at once.
SLOW_CONNECT_SECONDS = 0.5


class Openings:
    """The gate, on one event loop: :meth:`acquire` before opening a connection,
    :meth:`release` once K2HR3 answered on it or the call ended without an answer."""

    def __init__(self, ceiling: int, floor: int = FLOOR) -> None:
        self.floor = floor
        self.ceiling = max(floor, ceiling)
        self.window = floor
        self.opening = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self.opening < self.window and not self._waiting:
            self.opening += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            await future  # the slot was counted for us by the release that woke us
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.opening -= 1  # given a slot, then cancelled: hand it on
                self._wake()
            raise

    def release(self, *, answered: bool, connect_seconds: float | None) -> None:
        """``connect_seconds`` is None when the connection was never made."""
        self.opening -= 1
        if connect_seconds is None or connect_seconds >= SLOW_CONNECT_SECONDS:
            self.window = max(self.floor, self.window // 2)
        elif answered:
            self.window = min(self.ceiling, self.window + 1)
        self._wake()

    def _wake(self) -> None:
        while self._waiting and self.opening < self.window:
            future = self._waiting.popleft()
            if not future.done():  # a waiter cancelled meanwhile is skipped
                self.opening += 1
                future.set_result(None)
