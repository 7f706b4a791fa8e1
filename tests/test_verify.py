"""verify_deletions: a notification for a server or port that still exists sends nothing.

Real handler, real K2HR3 stand-in, real OpenStack stand-in; the notifications are the
real samples with their ids replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from support.daemon import with_broker
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn
from support.samples import neutron_port_delete, nova_legacy_delete, nova_versioned_delete

from k2hr3_osnl import config
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observers
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentIds
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.observability.metrics import Metrics
from k2hr3_osnl.openstack import session
from k2hr3_osnl.reconcile.verify import VerifyingHandler, cloud_lookup


@pytest.fixture
def standin() -> Iterator[OpenStackStandIn]:
    server = OpenStackStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def verifying(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> Iterator[tuple[VerifyingHandler, Metrics]]:
    lines = ["[service_credentials]", *(f"{k} = {v}" for k, v in standin.credentials().items())]
    lines += ["[reconcile]", "verify_deletions = true", "[k2hr3]", f"api_url = {k2hr3.url}"]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("\n".join(lines) + "\n"), encoding="utf-8")
    conf = config.load([str(path)])
    handler = Handler(
        RoleClient(k2hr3.url), CircuitBreaker(), ParkingLot(tmp_path), RecentIds(600), 2
    )
    metrics = Metrics(Health())
    handler.observer = Observers((metrics,))
    yield VerifyingHandler(handler, cloud_lookup(session.connect(conf))), metrics
    handler.client.close()


def note(event: tuple[str, str, object], n: int = 0) -> Notification:
    event_type, publisher_id, payload = event
    return Notification(f"m{n}-{event_type}", event_type, publisher_id, payload)


def port_event(standin: OpenStackStandIn, deleted: bool) -> tuple[str, str, object]:
    server = standin.create(ports=1)
    port_id = server.ports[0]
    if deleted:
        standin.delete_port(port_id)
    event_type, publisher_id, payload = neutron_port_delete(server.id, ["10.0.0.5"])
    payload["port"]["id"] = port_id
    return event_type, publisher_id, payload


def metric(metrics: Metrics, target: str, outcome: str) -> float:
    wanted = f'k2hr3_osnl_verifications_total{{outcome="{outcome}",target="{target}"}}'
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(wanted):
            return float(line.split()[1])
    raise AssertionError(wanted)


def test_forged_deletions_of_live_servers_and_ports_send_nothing(
    verifying: tuple[VerifyingHandler, Metrics],
    standin: OpenStackStandIn,
    k2hr3: FakeK2HR3,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, metrics = verifying
    alive = standin.create()
    forged = [
        note(nova_versioned_delete(alive.id)),
        note(nova_legacy_delete(alive.id)),
        note(port_event(standin, deleted=False)),
    ]
    with caplog.at_level(logging.WARNING):
        assert handler.handle_batch(forged) == [Result.INVALID] * 3
    assert k2hr3.calls == []
    assert sum("still has" in r.getMessage() for r in caplog.records) == 3
    assert metric(metrics, "server", "exists") == 2 and metric(metrics, "port", "exists") == 1


def test_real_deletions_go_through_in_order_beside_forged_ones(
    verifying: tuple[VerifyingHandler, Metrics], standin: OpenStackStandIn, k2hr3: FakeK2HR3
) -> None:
    handler, metrics = verifying
    gone, alive = standin.create(), standin.create()
    standin.delete(gone)
    soft = standin.create()
    standin.delete(soft, soft=True)  # restorable: Nova still has it
    notes = [
        note(nova_versioned_delete(gone.id)),
        note(nova_versioned_delete(alive.id), 1),
        note(port_event(standin, deleted=True)),
        note(nova_versioned_delete(soft.id), 2),
    ]
    results = handler.handle_batch(notes)
    assert results == [Result.DELETED, Result.INVALID, Result.DELETED, Result.INVALID]
    assert [cuk for cuk, _ in k2hr3.deleted()] == [gone.id, notes[2].payload["port"]["device_id"]]
    assert metric(metrics, "server", "gone") == 1 and metric(metrics, "port", "gone") == 1


def test_when_nova_cannot_answer_the_deletion_goes_ahead_and_is_counted(
    verifying: tuple[VerifyingHandler, Metrics],
    standin: OpenStackStandIn,
    k2hr3: FakeK2HR3,
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, metrics = verifying
    alive = standin.create()
    standin.fail_with = 500
    with caplog.at_level(logging.WARNING, logger="k2hr3_osnl.reconcile.verify"):
        for n in range(3):
            assert handler.handle(note(nova_versioned_delete(alive.id), n)) is Result.DELETED
    assert len(k2hr3.calls) == 3
    assert metric(metrics, "server", "unknown") == 3
    assert sum("cannot verify" in r.getMessage() for r in caplog.records) == 1  # once a streak
