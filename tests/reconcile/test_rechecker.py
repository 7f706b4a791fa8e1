"""reconcile/recheck.py: a refused deletion is asked about again when due, then settled.

Against the OpenStack and K2HR3 stand-ins over real HTTP: a server Nova no longer has
at a later check is deleted from K2HR3 after all; one still there is checked again on
the schedule and dropped after the last check without a call; no answer from Nova
leaves it held as it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn, Server
from support.samples import nova_versioned_delete

from k2hr3_osnl import config
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.events import Delete, decide
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.recheck import Rechecks
from k2hr3_osnl.core.types import Notification
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.openstack import session
from k2hr3_osnl.reconcile.recheck import Rechecker
from k2hr3_osnl.reconcile.verify import CloudVerifier

#: Long after the first refusal: every check is due.
LATER = 10_000.0


@pytest.fixture
def cloud_standin() -> Iterator[OpenStackStandIn]:
    standin = OpenStackStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def world(
    tmp_path: Path, cloud_standin: OpenStackStandIn, k2hr3: FakeK2HR3
) -> Iterator[tuple[Rechecker, Server]]:
    """A held refusal of a server that still existed, and a re-checker looking LATER."""
    path = tmp_path / "k2hr3-osnl.conf"
    lines = ["[service_credentials]"]
    lines += [f"{k} = {v}" for k, v in cloud_standin.credentials().items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    verifier = CloudVerifier(session.connect(config.load([str(path)])))
    handler = Handler(
        client=RoleClient(k2hr3.url, connect_timeout=2, read_timeout=5),
        breaker=CircuitBreaker(),
        parking=ParkingLot(tmp_path / "state"),
        recent=RecentDeliveries(600),
        retry_budget=30,
    )
    server = cloud_standin.create()
    event_type, publisher_id, payload = nova_versioned_delete(server.id)
    note = Notification(str(uuid.uuid4()), event_type, publisher_id, payload)
    decision = decide(event_type, payload)
    assert isinstance(decision, Delete)
    rechecks = Rechecks(tmp_path / "state")
    rechecks.hold(note, decision, "the server still exists")
    yield Rechecker(rechecks, verifier, handler, clock=lambda: time.time() + LATER), server
    handler.breaker.stop()
    handler.client.close()


def test_a_server_gone_by_the_next_check_is_deleted_after_all(
    world: tuple[Rechecker, Server], cloud_standin: OpenStackStandIn, k2hr3: FakeK2HR3
) -> None:
    rechecker, server = world
    cloud_standin.delete(server)
    rechecker.run_once()
    assert [(call.cuk, call.status) for call in k2hr3.calls] == [(server.id, 204)]
    assert list(rechecker.rechecks) == []


def test_a_server_still_there_is_checked_again_then_dropped_after_the_last_check(
    world: tuple[Rechecker, Server], k2hr3: FakeK2HR3
) -> None:
    rechecker, _ = world
    rechecker.run_once()
    assert [item.attempts for item in rechecker.rechecks] == [1]
    rechecker.run_once()
    assert [item.attempts for item in rechecker.rechecks] == [2]
    rechecker.run_once()
    assert list(rechecker.rechecks) == []
    assert k2hr3.calls == []


def test_nothing_is_due_before_its_time(
    world: tuple[Rechecker, Server], cloud_standin: OpenStackStandIn, k2hr3: FakeK2HR3
) -> None:
    rechecker, server = world
    cloud_standin.delete(server)
    Rechecker(rechecker.rechecks, rechecker.verifier, rechecker.handler).run_once()
    assert [item.attempts for item in rechecker.rechecks] == [0]
    assert k2hr3.calls == []


def test_no_answer_from_nova_leaves_it_held_as_it_was(
    world: tuple[Rechecker, Server], cloud_standin: OpenStackStandIn, k2hr3: FakeK2HR3
) -> None:
    rechecker, server = world
    cloud_standin.delete(server)
    cloud_standin.fail_with = 503
    rechecker.run_once()
    assert [item.attempts for item in rechecker.rechecks] == [0]
    assert k2hr3.calls == []
