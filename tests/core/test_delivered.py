"""core/delivered.py: the cuks K2HR3 lost whole lately, so reconciliation skips them.

Only an instance deletion K2HR3 accepted counts (a port's removes some addresses, not
the VM); the memory forgets after its window and beyond its capacity, and stretches
while a pass looks further back.
"""

from __future__ import annotations

import uuid

import pytest
from support.samples import neutron_port_delete, nova_legacy_delete, nova_versioned_delete

from k2hr3_osnl.core.delivered import DeletedCuks, deleted_whole
from k2hr3_osnl.core.events import Delete, decide
from k2hr3_osnl.core.types import Result


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CUK = "178b0921-8f85-4257-88b6-2e743b5a975c"


def decided(event_type: str, publisher_id: str, payload: object) -> Delete:
    decision = decide(event_type, payload)
    assert isinstance(decision, Delete)
    return decision


@pytest.mark.parametrize("deletion", [nova_versioned_delete, nova_legacy_delete])
def test_an_accepted_instance_deletion_is_a_cuk_deleted_whole(deletion) -> None:
    assert deleted_whole(decided(*deletion(CUK)), Result.DELETED) == CUK


def test_a_port_deletion_removes_addresses_not_the_vm() -> None:
    assert deleted_whole(decided(*neutron_port_delete(CUK, ["10.0.0.5"])), Result.DELETED) is None


@pytest.mark.parametrize("result", [r for r in Result if r is not Result.DELETED] + [None])
def test_only_what_k2hr3_accepted_counts(result: Result | None) -> None:
    assert deleted_whole(decided(*nova_versioned_delete(CUK)), result) is None


def test_a_notification_that_was_no_deletion_counts_for_nothing() -> None:
    assert deleted_whole(None, Result.DELETED) is None


def test_the_handlers_hook_remembers_each_cuk_deleted_whole() -> None:
    memory = DeletedCuks(window=60, clock=Clock())
    memory.forgot(CUK)
    assert CUK in memory
    assert len(memory) == 1


def test_a_cuk_is_forgotten_once_its_window_has_passed() -> None:
    clock = Clock()
    memory = DeletedCuks(window=60, clock=clock)
    memory.add(CUK)
    clock.now += 59.9
    assert CUK in memory
    clock.now += 0.1
    assert CUK not in memory


def test_beyond_its_capacity_the_oldest_cuk_goes_first() -> None:
    clock = Clock()
    memory = DeletedCuks(window=60, capacity=2, clock=clock)
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    for cuk in (first, second, third):
        memory.add(cuk)
        clock.now += 1
    assert first not in memory
    assert second in memory and third in memory
    assert len(memory) == 2


def test_deleted_again_a_cuk_counts_from_its_latest_deletion() -> None:
    clock = Clock()
    memory = DeletedCuks(window=60, clock=clock)
    memory.add(CUK)
    clock.now += 50
    memory.add(CUK)
    clock.now += 50
    assert CUK in memory


def test_the_window_stretches_for_a_pass_that_looks_further_back_and_shrinks_after() -> None:
    clock = Clock()
    memory = DeletedCuks(window=60, clock=clock)
    memory.add(CUK)
    clock.now += 100
    memory.cover(3600)
    assert CUK in memory
    memory.cover(10)
    assert memory.window == 60
    assert CUK not in memory


@pytest.mark.parametrize("thing", [None, 42, b"178b0921-8f85-4257-88b6-2e743b5a975c"])
def test_anything_but_a_string_is_never_in_it(thing: object) -> None:
    memory = DeletedCuks(window=60, clock=Clock())
    memory.add(CUK)
    assert thing not in memory
