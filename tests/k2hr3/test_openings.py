"""The gate on new connections to K2HR3 (issue 21): few at first, more once K2HR3 has
shown that it takes them, fewer again when a connect is slow or fails."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from k2hr3_osnl.k2hr3.openings import FLOOR, SLOW_CONNECT_SECONDS, Openings

PROMPT = 0.001
SLOW = SLOW_CONNECT_SECONDS + 0.5


def test_it_starts_below_a_listen_backlog_of_five() -> None:
    assert Openings(ceiling=128).window == FLOOR < 5


def test_each_connection_answered_after_a_prompt_connect_lets_one_more_open() -> None:
    gate = Openings(ceiling=128)

    async def a_round() -> None:
        for _ in range(gate.window):
            await gate.acquire()
        for _ in range(gate.opening):
            gate.release(answered=True, connect_seconds=PROMPT)

    windows = []
    for _ in range(6):
        asyncio.run(a_round())
        windows.append(gate.window)
    assert windows == [8, 16, 32, 64, 128, 128]  # doubling each round, up to the pool


def test_a_slow_connect_halves_the_window_and_never_below_the_floor() -> None:
    gate = Openings(ceiling=128)
    gate.window = 64
    gate.opening = 3
    gate.release(answered=True, connect_seconds=SLOW)  # answered, yet a SYN was resent
    assert gate.window == 32
    gate.release(answered=False, connect_seconds=None)  # never connected
    assert gate.window == 16
    for _ in range(5):
        gate.opening += 1
        gate.release(answered=False, connect_seconds=None)
    assert gate.window == FLOOR


def test_a_call_that_connected_but_got_no_answer_leaves_the_window_as_it_is() -> None:
    gate = Openings(ceiling=128)
    gate.opening = 1
    gate.release(answered=False, connect_seconds=PROMPT)  # a read timeout, say
    assert (gate.window, gate.opening) == (FLOOR, 0)


def test_waiters_go_in_order_as_slots_free_and_a_cancelled_one_takes_none() -> None:
    async def scenario() -> list[str]:
        gate = Openings(ceiling=FLOOR)
        for _ in range(FLOOR):
            await gate.acquire()
        order: list[str] = []

        async def wait(name: str) -> None:
            await gate.acquire()
            order.append(name)

        first = asyncio.create_task(wait("first"))
        cancelled = asyncio.create_task(wait("cancelled"))
        last = asyncio.create_task(wait("last"))
        await asyncio.sleep(0)
        assert order == []  # all slots are taken
        cancelled.cancel()
        await asyncio.sleep(0)
        gate.release(answered=False, connect_seconds=PROMPT)
        gate.release(answered=False, connect_seconds=PROMPT)
        await asyncio.gather(first, last)
        assert gate.opening == FLOOR  # two released, two taken; none lost to the cancel
        return order

    assert asyncio.run(scenario()) == ["first", "last"]


def test_a_waiter_cancelled_after_it_was_given_a_slot_hands_it_on() -> None:
    async def scenario() -> int:
        gate = Openings(ceiling=1, floor=1)
        await gate.acquire()
        given_then_cancelled = asyncio.create_task(gate.acquire())
        next_one = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.release(answered=False, connect_seconds=PROMPT)  # the slot goes to the first
        given_then_cancelled.cancel()  # before it ran
        await next_one
        return gate.opening

    assert asyncio.run(scenario()) == 1


@given(
    st.lists(
        st.tuples(st.booleans(), st.none() | st.floats(0, 3, allow_nan=False)),
        max_size=200,
    ),
    st.integers(1, 512),
)
def test_the_window_stays_between_the_floor_and_the_pool(
    releases: list[tuple[bool, float | None]], ceiling: int
) -> None:
    gate = Openings(ceiling=ceiling)
    for answered, connect_seconds in releases:
        gate.opening += 1
        gate.release(answered=answered, connect_seconds=connect_seconds)
        assert FLOOR <= gate.window <= max(FLOOR, ceiling)
        assert gate.opening == 0
