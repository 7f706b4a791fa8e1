"""A fleet of gateways on one pool, every one with reconciliation on (issue 20).

Three real daemons consume one pool on the real RabbitMQ, each with its own state
directory as on its own node, against the K2HR3 and OpenStack stand-ins. One pass runs
at a time across them (Nova's list requests count the passes), each deletion the bus
lost costs one K2HR3 call, and a leader killed with SIGKILL leaves no gap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest
import test_cluster
from support.cluster import DAEMON_RABBIT
from support.daemon import Daemon
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn
from support.rabbitmq_node import Node
from support.samples import nova_versioned_delete
from support.waiting import wait_until
from test_reconcile_e2e import cuks, free_port, healthz, metric

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(300)]

#: The three-node cluster of tests/broker/test_cluster.py, and a harness on it (fixtures).
cluster = test_cluster.cluster
harness = test_cluster.harness

INTERVAL = 8
LIST = "/compute/v2.1/servers/detail"
VERSIONED = "messagingv2"
LEADS = "reconciles for the pool now"


class Fleet:
    def __init__(
        self,
        e2e: Harness,
        standin: OpenStackStandIn,
        size: int = 3,
        rabbit: dict[str, object] | None = None,
    ) -> None:
        self.e2e = e2e
        self.ports = [free_port() for _ in range(size)]
        self.daemons: list[Daemon] = []
        for i, port in enumerate(self.ports):
            config = e2e.config(
                f"gw{i}",
                sections={
                    "reconcile": {"enabled": "true", "interval_seconds": INTERVAL},
                    "service_credentials": standin.credentials(),
                    "metrics": {"port": port},
                    # Each gateway on its own node: its own disk.
                    "k2hr3": {"state_dir": e2e.tmp_path / f"state{i}"},
                    "oslo_messaging_rabbit": rabbit or {},
                },
            )
            self.daemons.append(e2e.daemon(config))

    def start(self) -> Fleet:
        for daemon in self.daemons:
            daemon.start(wait=False)
        for daemon in self.daemons:
            daemon.wait_listening(60)
        return self

    def leader(self) -> int:
        """The daemon whose latest election line says it holds the token."""
        holding = []
        for i, daemon in enumerate(self.daemons):
            log = daemon.log(since_start=False)
            if daemon.alive and log.rfind(LEADS) > log.rfind("no longer reconciles"):
                holding.append(i)
        assert len(holding) <= 1, holding
        return holding[0] if holding else -1

    def missed(self) -> float:
        return sum(
            metric(port, "k2hr3_osnl_reconcile_missed_total")
            for port, daemon in zip(self.ports, self.daemons, strict=True)
            if daemon.alive
        )

    def report(self, what: str) -> str:
        logs = "\n\n".join(d.report(f"gw{i}", tail=40) for i, d in enumerate(self.daemons))
        return f"{what}\n{logs}"


@pytest.fixture
def fleet(e2e: Harness, standin: OpenStackStandIn) -> Iterator[Fleet]:
    yield Fleet(e2e, standin)


def test_three_gateways_make_one_pass_per_interval_and_one_call_per_lost_deletion(
    fleet: Fleet, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    fleet.start()
    wait_until(lambda: standin.count(LIST) >= 1, 30, "a first pass")
    first = time.monotonic()
    lost = [standin.create() for _ in range(6)]
    for server in lost:
        standin.delete(server)  # and the bus never says so
    time.sleep(3 * INTERVAL)
    passes = standin.count(LIST)
    elapsed = time.monotonic() - first
    # One pass at start, then at most one per interval, across the three.
    assert passes <= 1 + elapsed // INTERVAL + 1, fleet.report(f"{passes} passes")
    assert passes >= 2
    assert sorted(cuks(k2hr3)) == sorted(s.id for s in lost), fleet.report("calls")
    assert fleet.missed() == 6
    # Which one reconciles, as an operator sees it: the log, a metric, /healthz, STATUS.
    leader = fleet.leader()
    assert leader >= 0
    gauges = [metric(port, "k2hr3_osnl_reconcile_leader") for port in fleet.ports]
    assert gauges == [1.0 if i == leader else 0.0 for i in range(3)]
    roles = [healthz(port)["reconcile"]["role"] for port in fleet.ports]
    assert roles == ["leader" if i == leader else "standby" for i in range(3)]
    for i, daemon in enumerate(fleet.daemons):
        assert daemon.notify is not None
        statuses = [m.fields.get("STATUS", "") for m in daemon.notify.snapshot()]
        said = any(text.endswith("; reconciling for the pool") for text in statuses)
        assert said == (i == leader), statuses
    assert metric(fleet.ports[0], "k2hr3_osnl_reconcile_interval_seconds") == INTERVAL
    for daemon in fleet.daemons:
        assert daemon.stop() == 0


def test_the_leader_killed_its_successor_catches_what_was_deleted_meanwhile(
    fleet: Fleet, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    fleet.start()
    wait_until(lambda: fleet.leader() >= 0 and standin.count(LIST) >= 1, 30, "a first pass")
    leader = fleet.daemons[fleet.leader()]
    leader.process.send_signal(9)  # type: ignore[union-attr]  # SIGKILL: no goodbye
    leader.process.wait()  # type: ignore[union-attr]
    killed = time.monotonic()
    gone = [standin.create() for _ in range(4)]
    for server in gone:
        standin.delete(server)
    wait_until(
        lambda: set(cuks(k2hr3)) >= {s.id for s in gone},
        2 * INTERVAL + 10,
        "the next holder to catch them",
    )
    assert time.monotonic() - killed < 2 * INTERVAL, fleet.report("late")
    assert fleet.leader() >= 0 and fleet.daemons[fleet.leader()] is not leader
    assert sorted(cuks(k2hr3)) == sorted(s.id for s in gone)
    for daemon in fleet.daemons:
        if daemon is not leader:
            assert daemon.stop() == 0


def test_a_deletion_another_gateway_delivered_is_not_missed_and_costs_no_second_call(
    fleet: Fleet, e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    fleet.start()
    wait_until(lambda: standin.count(LIST) >= 1, 30, "a first pass")
    told = [standin.create() for _ in range(9)]
    for server in told:
        standin.delete(server)
        e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(server.id))
    wait_until(lambda: len(cuks(k2hr3)) >= 9, 30, "the notifications")
    # Round robin: the three gateways delivered some each.
    assert sum(1 for d in fleet.daemons if "status=204" in d.log()) >= 2, fleet.report("spread")
    passes = standin.count(LIST)
    wait_until(lambda: standin.count(LIST) >= passes + 2, 4 * INTERVAL, "two more passes")
    assert fleet.missed() == 0, fleet.report("counted missed")
    calls = cuks(k2hr3)
    assert all(calls.count(s.id) == 1 for s in told), fleet.report(f"calls {calls}")
    for daemon in fleet.daemons:
        assert daemon.stop() == 0


@pytest.mark.cluster
def test_on_a_three_node_cluster_losing_the_election_s_broker_node_leaves_no_gap(
    harness: Harness, cluster: Sequence[Node], k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    """The cluster of docs/scale-out.md (quorum queues, every node in transport_url):
    the election's queue is a quorum queue too, and survives the node it was led from."""
    fleet = Fleet(harness, standin, rabbit=DAEMON_RABBIT).start()
    wait_until(lambda: fleet.leader() >= 0 and standin.count(LIST) >= 1, 60, "a first pass")
    # Every election connects to the first node of transport_url first: stop it.
    cluster[0].stop()
    stopped = time.monotonic()
    gone = [standin.create() for _ in range(4)]
    for server in gone:
        standin.delete(server)
    wait_until(
        lambda: set(cuks(k2hr3)) >= {s.id for s in gone},
        2 * INTERVAL + 20,
        "a holder on the other nodes to catch them",
    )
    assert time.monotonic() - stopped < 2 * INTERVAL, fleet.report("late")
    wait_until(lambda: fleet.leader() >= 0, 10, "one holder")
    assert sorted(cuks(k2hr3)) == sorted(s.id for s in gone)
    for daemon in fleet.daemons:
        assert daemon.stop() == 0


def test_a_dry_run_beside_the_fleet_never_takes_part_in_the_election(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    fleet = Fleet(e2e, standin, size=1).start()
    wait_until(lambda: fleet.leader() == 0, 30, "the live daemon to hold the token")
    dry = e2e.daemon(
        e2e.config(
            "dry",
            sections={
                "reconcile": {"enabled": "true", "interval_seconds": INTERVAL},
                "service_credentials": standin.credentials(),
                "k2hr3": {"dry_run": "true", "state_dir": e2e.tmp_path / "dry-state"},
            },
        ),
        queues=[f"{e2e.pool}-dry-run"],
    )
    e2e.extra_queues.append(f"{e2e.pool}-dry-run")
    dry.start()
    fleet.daemons[0].stop()  # the token is free: only a candidate may take it
    time.sleep(2 * INTERVAL)
    assert LEADS not in dry.log() and "reconcile-election" not in dry.log()
    assert "reconciling with Nova at start" in dry.log()  # alone, as before
    assert e2e.broker.queue_info(f"{e2e.pool}-reconcile") == (1, 0), "the token waits"
    assert dry.stop() == 0
