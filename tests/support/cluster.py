"""A RabbitMQ cluster of the test's own, as the daemon and the test each see it.

The settings docs/scale-out.md gives the daemon's side, the URLs of every node, and
which node a daemon's connection goes to (tests/broker/test_cluster.py, test_fleet.py
and benchmarks/failover.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from support.rabbitmq_node import Node

#: What docs/scale-out.md sets in the daemon's config file.
DAEMON_RABBIT = {
    "rabbit_quorum_queue": "true",
    "amqp_durable_queues": "true",
    "kombu_failover_strategy": "round-robin",
    "rabbit_retry_interval": 1,
    "rabbit_retry_backoff": 1,
    "rabbit_interval_max": 2,
    "heartbeat_timeout_threshold": 10,
}


def transport_url(nodes: Sequence[Node]) -> str:
    return "rabbit://" + ",".join(f"guest:guest@127.0.0.1:{n.port}" for n in nodes) + "/"


def kombu_url(nodes: Sequence[Node]) -> str:
    """kombu fails over between ';'-separated URLs: the test's view survives a lost node."""
    return ";".join(n.amqp_url("guest", "guest") for n in nodes)


def connected_node(nodes: Sequence[Node], pid: int) -> Node:
    """The node whose AMQP port the connection of process ``pid`` goes to."""
    alive = next(n for n in nodes if n.alive)
    text = alive.ctl("list_connections", "name", "client_properties")
    for line in text.splitlines():
        # oslo.messaging names its connections "<program>:<pid>:<uuid>".
        if f":{pid}:" in line:
            port = int(re.search(r"-> 127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]
            return next(n for n in nodes if n.port == port)
    raise AssertionError(f"no connection of pid {pid} in:\n{text}")
