"""One asyncio event loop in a background thread, for callers that are threads.

oslo.messaging hands each notification to a worker thread, and the handler blocks there
until K2HR3 answered. If each of those threads did its own socket I/O, every send and
receive would hand the GIL to another worker thread: the same K2HR3 call cost 0.43
CPU-ms from 128 threads through urllib3 (0.70 through requests) and 0.13 from 128 tasks
in one event loop (docs/benchmarks-history.md). So the threads only wait; the loop does the
talking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class EventLoopThread:
    """Runs coroutines on its own loop; started on first use, again after a fork."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for its result in this thread.

        After ``timeout`` seconds it is cancelled and TimeoutError raised: a caller
        never waits forever on a loop that has stopped answering.
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout}s") from None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child inherits the loop object but not its thread: start afresh.
            if self._loop is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name=self.name, daemon=True
                )
                self._thread.start()
            return self._loop

    def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``cleanup`` on the loop (closing sessions, say), then stop the thread.

        Safe from any thread, the loop's own included (a finaliser may run there), and
        after a fork (the child has no loop thread to stop).
        """
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or self._pid != os.getpid() or loop.is_closed():
            return

        async def shutdown() -> None:
            try:
                if cleanup is not None:
                    await cleanup()
            finally:
                loop.stop()

        loop.call_soon_threadsafe(loop.create_task, shutdown())
        if threading.current_thread() is not thread:
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()
