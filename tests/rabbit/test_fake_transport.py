"""The real daemon, in process, on oslo.messaging's in-memory ``fake://`` transport.

``service.build`` wires the real listener, endpoint, filter, handler and K2HR3 client
from a real config file; an ``oslo_messaging.Notifier`` publishes the sample payloads as
neutron and nova do; the local K2HR3 stand-in records what arrives.

How the fake driver routes, and what that means here (read from
``oslo_messaging/_drivers/impl_fake.py``):

- Exchanges are process-wide (a class attribute), so a Notifier on one fake transport
  reaches a listener on another. A Notifier has no exchange argument: it publishes to
  its transport's ``control_exchange``, exactly as neutron and nova do, so each
  publisher here gets its own config with ``control_exchange`` = neutron or nova.
- Queues are keyed by ``(topic.priority, pool)`` within an exchange; every queue of a
  topic gets a copy of each message, so pools behave as on RabbitMQ.
- What it cannot show: the fake driver passes the message dict as is and ignores the
  envelope version, so ``messaging`` and ``messagingv2`` deliver identical objects and
  the v2 JSON envelope is never serialised. Both drivers are still run (the Notifier
  side differs), but the wire format is covered by the real-RabbitMQ tests and by the
  ``wire/`` samples in test_events.py. Acknowledgement is a no-op on fake://; a
  requeue puts the message back, which is what the stop test below relies on.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import oslo_messaging
import pytest
from oslo_config import cfg
from oslo_messaging._drivers import impl_fake
from support.k2hr3_standin import FakeK2HR3
from support.samples import SAMPLES
from support.waiting import wait_until

from k2hr3_osnl import config
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.process import service
from k2hr3_osnl.rabbit import seam

NEUTRON_CUK = "12345678-1234-5678-1234-567812345678"
NEUTRON_IPS = ("172.16.0.1", "2001:db8::6")
VERSIONED_CUK = "178b0921-8f85-4257-88b6-2e743b5a975c"
CAPTURED_CUK = "d2e4fa5d-e93a-473a-ab43-af56f19d2af2"
ERROR_CUK = "0e6f6a9c-8d1b-4b8e-9a39-2f4c7f8e1d00"


def payload_of(relative: str) -> Any:
    document = json.loads((SAMPLES / relative).read_text(encoding="utf-8"))
    return copy.deepcopy(document["payload"])


NEUTRON_DELETE = payload_of("neutron/k2hr3_osnl__notifications_neutron.json")
NEUTRON_CREATE = payload_of("neutron/designate__port.create.end.json")
VERSIONED_DELETE = payload_of("nova_versioned/resolved/instance-delete-end.json")
VERSIONED_DELETE_START = payload_of("nova_versioned/resolved/instance-delete-start.json")
LEGACY_DELETE = payload_of(
    "wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json"
)
LEGACY_DELETE_START = payload_of("nova_legacy/designate__compute.instance.delete.start.json")

NEUTRON_PUBLISHER = "network.node1.example.com"
VERSIONED_PUBLISHER = "nova-compute:compute"
LEGACY_PUBLISHER = "compute.overcloud-novacompute-0"


def pending(pool: str | None) -> int:
    """Messages still queued for our listener, across every fake exchange."""
    total = 0
    for exchange in list(impl_fake.FakeExchangeManager._exchanges.values()):
        with exchange._queues_lock:
            total += sum(len(q) for (_, p), q in exchange._topic_queues.items() if p == pool)
    return total


class Publisher:
    """Notifiers as the OpenStack services make them: one control_exchange each."""

    def __init__(self) -> None:
        self._transports: dict[str, oslo_messaging.Transport] = {}

    def notifier(
        self, exchange: str, publisher_id: str, driver: str, topic: str
    ) -> oslo_messaging.Notifier:
        if exchange not in self._transports:
            conf = cfg.ConfigOpts()
            for group, group_opts in oslo_messaging.opts.list_opts():
                conf.register_opts(group_opts, group=group)
            conf([])
            conf.set_override("control_exchange", exchange)
            self._transports[exchange] = oslo_messaging.get_notification_transport(
                conf, url="fake://"
            )
        return oslo_messaging.Notifier(
            self._transports[exchange], publisher_id, driver=driver, topics=[topic]
        )


@pytest.fixture
def publisher() -> Publisher:
    # What FakeExchangeManager.cleanup() does since oslo.messaging 14.x; 14.0.3 (Debian 12)
    # lacks it, and a test must not see the messages another one left.
    with impl_fake.FakeExchangeManager._exchanges_lock:
        impl_fake.FakeExchangeManager._exchanges.clear()
    return Publisher()


@pytest.fixture
def make_conf(tmp_path: Path, k2hr3: FakeK2HR3) -> Callable[..., cfg.ConfigOpts]:
    def make(extra: str = "", pool: str = "k2hr3_osnl") -> cfg.ConfigOpts:
        path = tmp_path / "k2hr3-osnl.conf"
        path.write_text(
            "[oslo_messaging_notifications]\n"
            "transport_url = fake://\n"
            f"pool = {pool}\n"
            f"{extra}\n"
            "[k2hr3]\n"
            f"api_url = {k2hr3.url}\n"
            f"state_dir = {tmp_path / 'state'}\n"
            "retry_interval_seconds = 0.2\n",
            encoding="utf-8",
        )
        conf = config.load([str(path)])
        assert config.problems(conf) == []
        return conf

    return make


@pytest.fixture
def daemons() -> Iterator[list[service.Daemon]]:
    """Every daemon a test starts is stopped, and the fake exchanges emptied."""
    started: list[service.Daemon] = []
    yield started
    for daemon in started:
        daemon.handler.breaker.stop()
        daemon.listener.stop()
        daemon.listener.wait()
        daemon.handler.client.close()
    # What FakeExchangeManager.cleanup() does since oslo.messaging 14.x; 14.0.3 (Debian 12)
    # lacks it, and a test must not see the messages another one left.
    with impl_fake.FakeExchangeManager._exchanges_lock:
        impl_fake.FakeExchangeManager._exchanges.clear()


def start(conf: cfg.ConfigOpts, daemons: list[service.Daemon]) -> service.Daemon:
    daemon = service.build(conf)
    daemons.append(daemon)
    daemon.listener.start()
    return daemon


def drain(daemon: service.Daemon) -> None:
    """Wait until our queues are empty, then until every delivery in flight is done."""
    pool = daemon.conf.oslo_messaging_notifications.pool or None
    wait_until(lambda: pending(pool) == 0, 20)
    daemon.listener.stop()
    daemon.listener.wait()


@pytest.mark.parametrize("pool", ["k2hr3_osnl", ""], ids=["pool", "no-pool"])
@pytest.mark.parametrize("driver", ["messaging", "messagingv2"])
def test_deletions_reach_k2hr3_and_nothing_else_does(
    k2hr3: FakeK2HR3,
    publisher: Publisher,
    make_conf: Callable[..., cfg.ConfigOpts],
    daemons: list[service.Daemon],
    driver: str,
    pool: str,
) -> None:
    daemon = start(make_conf(pool=pool), daemons)
    neutron = publisher.notifier("neutron", NEUTRON_PUBLISHER, driver, "notifications")
    versioned = publisher.notifier("nova", VERSIONED_PUBLISHER, driver, "versioned_notifications")
    legacy = publisher.notifier("nova", LEGACY_PUBLISHER, driver, "notifications")

    # Not deletions: the filter drops them before the endpoint.
    neutron.info({}, "port.create.end", NEUTRON_CREATE)
    versioned.info({}, "instance.delete.start", VERSIONED_DELETE_START)
    legacy.info({}, "compute.instance.delete.start", LEGACY_DELETE_START)
    # Deletions of something that is not a VM: through the filter, ignored by the parser.
    dhcp = copy.deepcopy(NEUTRON_DELETE)
    dhcp["port"]["device_owner"] = "network:dhcp"
    neutron.info({}, "port.delete.end", dhcp)
    neutron.info({}, "port.delete.end", {"port_id": "bfdcb007-48b0-4f0f-b6fb-e7e2a8ae8b1e"})
    # Not a deletion, at another priority: acknowledged, not acted on.
    legacy.error({}, "compute.instance.create.end", LEGACY_DELETE)
    # A deletion at another priority (nova's default_level = ERROR) is a deletion.
    at_error = dict(LEGACY_DELETE, instance_id=ERROR_CUK)
    legacy.error({}, "compute.instance.delete.end", at_error)
    # The three deletions.
    neutron.info({}, "port.delete.end", NEUTRON_DELETE)
    versioned.info({}, "instance.delete.end", VERSIONED_DELETE)
    legacy.info({}, "compute.instance.delete.end", LEGACY_DELETE)

    assert k2hr3.wait_for(4, timeout=20)
    drain(daemon)
    assert sorted(k2hr3.deleted()) == sorted(
        [
            (NEUTRON_CUK, NEUTRON_IPS),
            (VERSIONED_CUK, None),
            (CAPTURED_CUK, None),
            (ERROR_CUK, None),
        ]
    )
    assert k2hr3.requests == 4
    assert daemon.endpoint.deletions_at == {"error": 1}
    assert ParkingLot(daemon.conf.k2hr3.state_dir).count() == 0


def test_a_permissive_filter_still_sends_only_deletions(
    k2hr3: FakeK2HR3,
    publisher: Publisher,
    make_conf: Callable[..., cfg.ConfigOpts],
    daemons: list[service.Daemon],
) -> None:
    """With event_type and publisher_id opened up, the parser is what keeps them out."""
    daemon = start(make_conf("event_type = .*\npublisher_id = .*"), daemons)
    neutron = publisher.notifier("neutron", "anything", "messagingv2", "notifications")
    versioned = publisher.notifier("nova", "anything", "messagingv2", "versioned_notifications")
    neutron.info({}, "port.create.end", NEUTRON_CREATE)
    versioned.info({}, "instance.delete.start", VERSIONED_DELETE_START)
    versioned.info({}, "instance.soft_delete.end", VERSIONED_DELETE)
    neutron.info({}, "compute.instance.delete.start", LEGACY_DELETE_START)
    broken = copy.deepcopy(NEUTRON_DELETE)
    broken["port"]["device_id"] = "not-a-uuid"
    neutron.info({}, "port.delete.end", broken)
    versioned.info({}, "instance.delete.end", VERSIONED_DELETE)

    assert k2hr3.wait_for(1, timeout=20)
    drain(daemon)
    assert k2hr3.deleted() == [(VERSIONED_CUK, None)]
    assert k2hr3.requests == 1


def test_single_exchange_and_topic_as_in_1_0_8(
    k2hr3: FakeK2HR3,
    publisher: Publisher,
    make_conf: Callable[..., cfg.ConfigOpts],
    daemons: list[service.Daemon],
) -> None:
    """A neutron-only listener: nova's deletions on its own exchange do not reach it."""
    daemon = start(make_conf("exchange = neutron\ntopic = notifications"), daemons)
    assert [(t.exchange, t.topic) for t in daemon.targets] == [("neutron", "notifications")]
    publisher.notifier("nova", LEGACY_PUBLISHER, "messaging", "notifications").info(
        {}, "compute.instance.delete.end", LEGACY_DELETE
    )
    publisher.notifier("neutron", NEUTRON_PUBLISHER, "messaging", "notifications").info(
        {}, "port.delete.end", NEUTRON_DELETE
    )
    assert k2hr3.wait_for(1, timeout=20)
    drain(daemon)
    assert k2hr3.deleted() == [(NEUTRON_CUK, NEUTRON_IPS)]


def test_outage_then_recovery_through_the_listener(
    k2hr3: FakeK2HR3,
    publisher: Publisher,
    make_conf: Callable[..., cfg.ConfigOpts],
    daemons: list[service.Daemon],
) -> None:
    """Deletions held while K2HR3 answers 503 all go through once it recovers."""
    k2hr3.status = 503
    daemon = start(make_conf(), daemons)
    legacy = publisher.notifier("nova", LEGACY_PUBLISHER, "messagingv2", "notifications")
    cuks = [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)]
    for cuk in cuks:
        legacy.info({}, "compute.instance.delete.end", dict(LEGACY_DELETE, instance_id=cuk))
    wait_until(lambda: daemon.handler.breaker.is_open)
    time.sleep(1.0)
    k2hr3.status = 204
    assert k2hr3.wait_for(10, timeout=20)
    drain(daemon)
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == cuks
    assert ParkingLot(daemon.conf.k2hr3.state_dir).count() == 0


def test_stop_hands_held_deletions_back_and_a_restart_delivers_them(
    k2hr3: FakeK2HR3,
    publisher: Publisher,
    make_conf: Callable[..., cfg.ConfigOpts],
    daemons: list[service.Daemon],
) -> None:
    """Stopping while K2HR3 is down loses nothing: the message is requeued, not parked."""
    k2hr3.status = 503
    conf = make_conf()
    first = start(conf, daemons)
    legacy = publisher.notifier("nova", LEGACY_PUBLISHER, "messaging", "notifications")
    legacy.info({}, "compute.instance.delete.end", LEGACY_DELETE)
    wait_until(lambda: first.handler.breaker.is_open)

    # What service.shutdown does, minus the transport cleanup that would empty the
    # in-memory exchanges this test wants to look into.
    first.listener.stop()
    first.handler.breaker.stop()
    first.listener.wait()
    assert pending("k2hr3_osnl") == 1
    assert ParkingLot(conf.k2hr3.state_dir).count() == 0
    assert k2hr3.deleted() == []

    k2hr3.status = 204
    second = start(conf, daemons)
    assert k2hr3.wait_for(1, timeout=20)
    drain(second)
    assert k2hr3.deleted() == [(CAPTURED_CUK, None)]


def test_a_backlog_is_taken_in_batches_and_a_trickle_one_by_one(
    k2hr3: FakeK2HR3,
    publisher: Publisher,
    make_conf: Callable[..., cfg.ConfigOpts],
    daemons: list[service.Daemon],
) -> None:
    """Messages already queued are handled many at a time (cheap per message); a lone
    one later is handled on its own at once, not held back for company."""
    notifier = publisher.notifier("neutron", NEUTRON_PUBLISHER, "messaging", "notifications")
    cuks = [f"00000000-0000-4000-8000-{i:012d}" for i in range(40)]
    for cuk in cuks:
        payload = json.loads(json.dumps(NEUTRON_DELETE))
        payload["port"]["device_id"] = cuk
        notifier.info({}, "port.delete.end", payload)
    daemon = service.build(make_conf())
    daemons.append(daemon)
    sizes: list[int] = []
    info = daemon.endpoint.info
    received: list[float | None] = []

    def seen(messages: list[dict[str, Any]]) -> list[Any]:
        sizes.append(len(messages))
        received.extend(message["received"] for message in messages)
        return info(messages)

    daemon.endpoint.info = seen  # type: ignore[method-assign]
    daemon.listener.start()
    # Batches are formed by batching.greedy: a newer oslo.messaging must not lose it.
    assert getattr(seam.driver_poll(daemon.listener.listener), "greedy", False)
    assert k2hr3.wait_for(40, timeout=20)
    assert max(sizes) > 1, sizes
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == cuks
    # Stamped when taken from the broker: the retry budget counts from then.
    assert all(isinstance(stamp, float) for stamp in received), received
    sizes.clear()
    notifier.info({}, "port.delete.end", NEUTRON_DELETE)
    assert k2hr3.wait_for(41, timeout=20)
    assert sizes == [1]
