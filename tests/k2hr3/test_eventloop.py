"""k2hr3/eventloop.py: worker threads wait, one loop thread talks.

A coroutine handed over from any thread runs on the loop's own thread and its result
(or exception) comes back; one that takes too long is cancelled and the caller gets a
TimeoutError rather than waiting forever; close() runs the clean-up on the loop first.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from k2hr3_osnl.k2hr3.eventloop import EventLoopThread


@pytest.fixture
def loop() -> Iterator[EventLoopThread]:
    runner = EventLoopThread("k2hr3-test-loop")
    yield runner
    runner.close()


async def where() -> str:
    return threading.current_thread().name


def test_a_coroutine_runs_on_the_loops_own_thread_and_its_result_comes_back(
    loop: EventLoopThread,
) -> None:
    assert loop.run(where()) == "k2hr3-test-loop"


def test_callers_from_many_threads_share_one_loop_thread(loop: EventLoopThread) -> None:
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(loop.run(where()))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert names == ["k2hr3-test-loop"] * 8
    assert [t.name for t in threading.enumerate()].count("k2hr3-test-loop") == 1


def test_an_exception_in_the_coroutine_is_raised_in_the_caller(loop: EventLoopThread) -> None:
    async def fail() -> None:
        raise ConnectionRefusedError("K2HR3 refused")

    with pytest.raises(ConnectionRefusedError, match="K2HR3 refused"):
        loop.run(fail())


def test_a_coroutine_past_its_timeout_is_cancelled_and_the_caller_told(
    loop: EventLoopThread,
) -> None:
    cancelled = threading.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match=r"no result within 0\.05s"):
        loop.run(hang(), timeout=0.05)
    assert cancelled.wait(10)


def test_close_runs_the_cleanup_on_the_loop_then_stops_its_thread(loop: EventLoopThread) -> None:
    loop.run(where())
    ran_on: list[str] = []

    async def cleanup() -> None:
        ran_on.append(threading.current_thread().name)

    loop.close(cleanup)
    assert ran_on == ["k2hr3-test-loop"]
    assert "k2hr3-test-loop" not in [t.name for t in threading.enumerate()]


def test_closing_a_loop_never_started_does_nothing_and_it_can_start_after(
    loop: EventLoopThread,
) -> None:
    loop.close()
    assert loop.run(where()) == "k2hr3-test-loop"
