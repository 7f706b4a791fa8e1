"""How a batch is acknowledged (issue 21), on the real broker.

A busy neutron topic is mostly not deletions. The messages of a batch that need no
K2HR3 call (filtered out, unreadable, another priority) are acknowledged as soon as
they are judged, not when the batch's deletions are answered: a slow K2HR3 must not
hold RabbitMQ's prefetch, and with it the next deletions, behind messages that are
already settled. The deletions themselves are acknowledged once settled, as before.
"""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler

import pytest
from support.broker import queue_counts
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete, wire_body
from support.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

UPDATES = 20


class HeldK2HR3(FakeK2HR3):
    """Answers nothing until :attr:`release` is set: a deletion stays on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.holding = threading.Event()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        self.holding.set()
        self.release.wait(60)
        super()._handle(request)


@pytest.fixture
def held() -> HeldK2HR3:
    server = HeldK2HR3().start()
    yield server
    server.release.set()
    server.stop()


def test_settled_messages_are_acknowledged_while_their_batchs_deletion_waits(
    tmp_path: object, rabbitmq: str, unique: str, held: HeldK2HR3
) -> None:
    with Harness(tmp_path, unique, held.url, rabbitmq) as e2e:  # type: ignore[arg-type]
        daemon = e2e.start()
        assert daemon.stop() == 0  # the pool queue exists; what follows waits for one batch
        cuk = str(uuid.uuid4())
        bodies = [wire_body(*neutron_port_delete(cuk, ["10.9.1.1"]))]
        for _ in range(UPDATES):
            _, publisher_id, payload = neutron_port_delete(str(uuid.uuid4()), [])
            bodies.append(wire_body("port.update.end", publisher_id, payload))
        e2e.broker.publish_raw(e2e.neutron, f"{e2e.notifications}.info", bodies)
        daemon.start()
        assert held.holding.wait(30), daemon.report("the deletion never reached K2HR3")
        # K2HR3 holds the deletion: only its message is still unacknowledged.
        wait_until(
            lambda: queue_counts(e2e.pool) == (0, 1, 1), 30, "only the deletion unacknowledged"
        )
        held.release.set()
        wait_until(lambda: queue_counts(e2e.pool) == (0, 0, 1), 30, "the deletion acknowledged")
        assert [c for c, _ in held.deleted()] == [cuk]
        assert daemon.stop() == 0
