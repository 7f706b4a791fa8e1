"""verify_deletions: a notification for a server or port that still exists sends nothing.

Real handler, real K2HR3 stand-in, real OpenStack stand-in; the notifications are the
real samples with their ids replaced.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from support.daemon import with_broker
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn
from support.samples import neutron_port_delete, nova_legacy_delete, nova_versioned_delete

from k2hr3_osnl import config
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.events import Delete, Proof
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observers
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.core.verification import Verdict
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.observability.metrics import Metrics
from k2hr3_osnl.openstack import session
from k2hr3_osnl.reconcile.verify import CloudVerifier


@pytest.fixture
def verifying(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> Iterator[tuple[Handler, Metrics]]:
    lines = ["[service_credentials]", *(f"{k} = {v}" for k, v in standin.credentials().items())]
    lines += ["[reconcile]", "verify_deletions = true", "[k2hr3]", f"api_url = {k2hr3.url}"]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("\n".join(lines) + "\n"), encoding="utf-8")
    conf = config.load([str(path)])
    verifier = CloudVerifier(session.connect(conf))
    metrics = Metrics(Health())
    handler = Handler(
        RoleClient(k2hr3.url),
        CircuitBreaker(),
        ParkingLot(tmp_path),
        RecentDeliveries(600),
        2,
        observer=Observers((metrics,)),
        verifier=verifier,
    )
    yield handler, metrics
    handler.client.close()


def note(event: tuple[str, str, object], n: int = 0) -> Notification:
    event_type, publisher_id, payload = event
    return Notification(f"m{n}-{event_type}", event_type, publisher_id, payload)


def port_event(standin: OpenStackStandIn, deleted: bool) -> tuple[str, str, object]:
    server = standin.create()
    port_id = standin.add_port(server, "10.0.0.5")
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
    verifying: tuple[Handler, Metrics],
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
    verifying: tuple[Handler, Metrics], standin: OpenStackStandIn, k2hr3: FakeK2HR3
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
    # One round of calls, sent together: K2HR3 may see them in either order.
    sent = sorted(cuk for cuk, _ in k2hr3.deleted())
    assert sent == sorted([gone.id, notes[2].payload["port"]["device_id"]])
    assert metric(metrics, "server", "gone") == 1 and metric(metrics, "port", "gone") == 1


def test_when_nova_cannot_answer_the_deletion_goes_ahead_and_is_counted(
    verifying: tuple[Handler, Metrics],
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


def test_the_daemons_own_deletions_are_not_asked_about_again(
    verifying: tuple[Handler, Metrics], standin: OpenStackStandIn, k2hr3: FakeK2HR3
) -> None:
    """Reconciliation's (Nova listed the server deleted) and a re-check's (just verified)."""
    handler, _ = verifying
    server = standin.create()
    event_type, publisher_id, payload = nova_versioned_delete(server.id)
    recheck = Notification("m-recheck", event_type, publisher_id, payload, internal=True)
    reconciled = Notification(
        "m-reconciled",
        "k2hr3_osnl.reconcile.server.deleted",
        "k2hr3_osnl",
        {"uuid": server.id},
        internal=True,
    )
    assert handler.handle_batch([recheck, reconciled]) == [Result.DELETED, Result.DELETED]
    assert standin.count("/compute/v2.1/servers/") == 0


@pytest.fixture(scope="module")
def held_device(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CloudVerifier, str, list[str]]]:
    """A device holding an IPv4 and an IPv6 address, and a verifier to ask about it."""
    standin = OpenStackStandIn().start()
    vm = standin.create()
    ips = ["10.1.2.3", "2001:db8::a:5"]
    standin.add_port(vm, *ips)
    path = tmp_path_factory.mktemp("held") / "k2hr3-osnl.conf"
    lines = ["[service_credentials]", *(f"{k} = {v}" for k, v in standin.credentials().items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    yield CloudVerifier(session.connect(config.load([str(path)]))), vm.id, ips
    standin.stop()


def _spellings(ip: str) -> st.SearchStrategy[str]:
    address = ipaddress.ip_address(ip)
    forms = {ip, ip.upper()}
    if address.version == 6:
        forms |= {address.exploded, address.exploded.upper()}
    return st.sampled_from(sorted(forms))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_a_forged_port_deletion_is_refused_however_its_addresses_are_spelled(
    held_device: tuple[CloudVerifier, str, list[str]], data: st.DataObject
) -> None:
    verifier, device, ips = held_device
    spelled = data.draw(_spellings(data.draw(st.sampled_from(ips))))
    forged = Delete(device, (spelled,), Proof("port", str(uuid.uuid4())))
    (check,) = verifier.verify([forged])
    assert check.verdict is Verdict.EXISTS, check


def test_a_dry_run_parks_nothing_when_verification_is_broken(
    verifying: tuple[Handler, Metrics],
    standin: OpenStackStandIn,
    k2hr3: FakeK2HR3,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It shares state_dir with the live daemon, whose parked files get re-sent."""
    handler, _ = verifying
    handler.client.close()
    handler.client = RoleClient(k2hr3.url, dry_run=True)
    standin.fail_with = 403
    with caplog.at_level(logging.DEBUG):
        result = handler.handle(note(nova_versioned_delete(standin.create().id)))
    assert result is Result.INVALID
    assert ParkingLot(tmp_path).count() == 0
    assert any(
        "dry run: would park it (verification unavailable" in r.getMessage() for r in caplog.records
    )
    assert k2hr3.calls == []
