"""A three-node RabbitMQ cluster with quorum queues: losing a node loses no deletion.

The cluster is the test's own (three nodes on ports of their own, never the machine's
broker). The daemon lists every node in ``transport_url`` and declares its pool queue
as a quorum queue; the publishers use durable exchanges and quorum queues too, the
settings docs/scale-out.md gives both sides. Only what the publisher got a confirm for
counts as sent; duplicates are allowed (delivery is at least once) and counted.
"""

from __future__ import annotations

import datetime
import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import kombu
import pytest
from support import cluster as cluster_view
from support.broker import Broker
from support.cluster import DAEMON_RABBIT, kombu_url, transport_url
from support.daemon import Daemon
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.notifiers import Notifiers
from support.rabbitmq_node import Node, make_nodes, running
from support.samples import nova_legacy_delete, wire_body
from support.waiting import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sequence[Node]]:
    with running(make_nodes(tmp_path_factory.mktemp("cluster"), 3)) as nodes:
        yield nodes


@pytest.fixture
def harness(
    tmp_path: Path, cluster: Sequence[Node], k2hr3: FakeK2HR3, unique: str
) -> Iterator[Harness]:
    with Harness(tmp_path, unique, k2hr3.url, transport_url(cluster), durable=True) as h:
        h.broker = Broker(kombu_url(cluster))
        h.notifiers.close()
        # nova's and neutron's Notifier with the cluster settings: durable and quorum.
        h.notifiers = Notifiers(transport_url(cluster), durable=True, quorum=True)
        yield h


def start_daemon(harness: Harness, name: str, **rabbit: object) -> Daemon:
    config = harness.config(
        name,
        sections={
            "DEFAULT": {"libs_debug_level": "info"},  # the driver's "Reconnected" lines
            "oslo_messaging_rabbit": {**DAEMON_RABBIT, **rabbit},
        },
    )
    return harness.daemon(config).start(timeout=60)


def connected_node(cluster: Sequence[Node], daemon: Daemon) -> Node:
    return cluster_view.connected_node(cluster, daemon.pid)


@pytest.mark.parametrize("how", ["killed", "stopped", "drained"])
def test_losing_the_daemons_node_loses_no_confirmed_deletion(
    harness: Harness, cluster: Sequence[Node], k2hr3: FakeK2HR3, how: str
) -> None:
    """How a node goes: ``killed`` (SIGKILL: a crash, a power loss), ``stopped``
    (``rabbitmqctl stop``) or ``drained`` (``rabbitmq-upgrade drain`` first, as
    RabbitMQ advises for maintenance: it closes the node's client listeners before
    anything else)."""
    daemon = start_daemon(harness, "k2hr3-osnl")
    nodes = ",".join(f"127.0.0.1:{n.port}" for n in cluster)
    assert f"RabbitMQ rabbit://{nodes} vhost '/' [" in daemon.log(), "every node in the status line"
    victim = connected_node(cluster, daemon)
    confirmed: list[str] = []
    unconfirmed = 0
    stop = threading.Event()

    def publish() -> None:
        nonlocal unconfirmed
        while not stop.is_set():
            cuk = str(uuid.uuid4())
            try:
                harness.notify(harness.nova, harness.notifications, "messaging",
                               nova_legacy_delete(cuk))  # fmt: skip
            except Exception:
                unconfirmed += 1  # no confirm: the publisher would log and move on
                continue
            confirmed.append(cuk)
            time.sleep(0.01)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        wait_until(lambda: len(k2hr3.deleted()) >= 100, 30, "deletions flowing")
        leader = queue_leader(victim, harness.pool)
        killed, killed_wall, calls_at_kill = time.monotonic(), time.time(), len(k2hr3.calls)
        if how == "killed":
            victim.kill()
        else:
            if how == "drained":
                victim.ctl("drain", tool="rabbitmq-upgrade")
            victim.stop()
        # Deletions keep flowing through the other two nodes for a while.
        wait_until(
            lambda: any(c.at > killed + 1 for c in k2hr3.calls), 60, "a delivery after the kill"
        )
        time.sleep(5)
    finally:
        stop.set()
        publisher.join(30)
    try:
        wait_until(
            lambda: {c for c, _ in k2hr3.deleted()} >= set(confirmed),
            90,
            f"all {len(confirmed)} confirmed deletions at K2HR3",
        )
    except AssertionError as error:
        missing = len(set(confirmed) - {c for c, _ in k2hr3.deleted()})
        raise AssertionError(daemon.report(f"{error}: {missing} missing")) from None
    else:
        survivor = connected_node(cluster, daemon)
    finally:
        victim.start()  # the next test gets a whole cluster again
        if how == "drained":
            victim.ctl("revive", tool="rabbitmq-upgrade")  # maintenance outlives a restart

    counts = Counter(c for c, _ in k2hr3.deleted())
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    # The longest pause in deliveries from the loss on: what K2HR3 sees of the failover.
    times = sorted(c.at for c in k2hr3.calls)
    around = [t for t in times if t >= killed - 1]
    gap = max(b - a for a, b in itertools.pairwise(around))
    reconnected = _reconnected_after(daemon, killed_wall)
    print(
        f"\n{how} {victim.nodename} (the daemon's node"
        f"{', the pool queue leader' if leader == victim.nodename else ''}) "
        f"at {calls_at_kill} calls: "
        f"{len(confirmed)} confirmed, {unconfirmed} unconfirmed publishes; every confirmed "
        f"deletion delivered, {duplicates} duplicate(s); longest pause in deliveries "
        f"{gap:.2f}s; {reconnected}; now consuming through {survivor.nodename}"
    )
    assert survivor is not victim
    assert daemon.alive and daemon.stop() == 0
    # Typically ~1 s (docs/scale-out.md); a stopping node that still accepts connections
    # for a while holds the driver longer. The bound only catches a failover that hangs.
    assert gap < 30, daemon.report(f"{gap:.1f}s without a delivery after the node was lost")


def queue_leader(node: Node, queue: str) -> str:
    """The node of the quorum queue's Raft leader."""
    for line in node.ctl("list_queues", "name", "leader").splitlines():
        name, _, leader = line.partition("\t")
        if name == queue:
            return leader.strip()
    return "?"


def _reconnected_after(daemon: Daemon, killed: float) -> str:
    """How long after the loss the driver logged each of its lines about it."""
    seen = []
    for line in daemon.log().splitlines():
        if "oslo.messaging._drivers.impl_rabbit" in line and " DEBUG " not in line:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            message = line.split("] ", 1)[-1][:90]
            seen.append(f"+{stamp - killed:.2f}s {message}")
    return "driver: " + (" | ".join(seen) or "nothing")


def publish_confirmed(url: str, exchange: str, routing_key: str, bodies: list[bytes]) -> None:
    """Raw bodies with publisher confirms: each publish returns once RabbitMQ has it."""
    with kombu.Connection(url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        target = kombu.Exchange(exchange, type="topic", durable=True)
        for body in bodies:
            producer.publish(
                body,
                exchange=target,
                routing_key=routing_key,
                content_type="application/json",
                content_encoding="utf-8",
                delivery_mode=2,
                retry=True,
            )


def test_two_daemons_on_one_pool_one_killed_mid_backlog_lose_nothing(
    harness: Harness, cluster: Sequence[Node], k2hr3: FakeK2HR3
) -> None:
    """Two gateway nodes share the pool; SIGKILL one while both work through a backlog."""
    k2hr3.latency = 0.2  # 2 daemons x 16 in flight / 0.2 s: the backlog lasts ~10 s
    # A small prefetch: each daemon holds a slice of the backlog, not all of it.
    first = start_daemon(harness, "gateway-1", rabbit_qos_prefetch_count=16)
    second = start_daemon(harness, "gateway-2", rabbit_qos_prefetch_count=16)
    cuks = [str(uuid.uuid4()) for _ in range(1500)]
    bodies = [wire_body(*nova_legacy_delete(cuk)) for cuk in cuks]
    publish_confirmed(kombu_url(cluster), harness.nova, f"{harness.notifications}.info", bodies)
    wait_until(lambda: len(k2hr3.deleted()) >= 300, 60, "300 deletions delivered")
    second.process.kill()  # type: ignore[union-attr]
    second.process.wait()  # type: ignore[union-attr]
    at_kill = len(k2hr3.deleted())
    try:
        wait_until(lambda: {c for c, _ in k2hr3.deleted()} >= set(cuks), 120, "the whole backlog")
    except AssertionError as error:
        missing = len(set(cuks) - {c for c, _ in k2hr3.deleted()})
        raise AssertionError(first.report(f"{error}: {missing} missing")) from None
    counts = Counter(c for c, _ in k2hr3.deleted())
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(
        f"\nSIGKILL of one of two daemons at {at_kill}/{len(cuks)} delivered: all "
        f"{len(cuks)} delivered by the other, {duplicates} duplicate(s)"
    )
    assert duplicates <= 2 * 16, "more redelivered than the killed daemon could hold"
    assert first.stop() == 0
