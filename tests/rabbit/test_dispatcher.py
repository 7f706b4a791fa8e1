"""A batch from oslo.messaging, judged one message at a time.

oslo.messaging's own batch dispatcher requeues a whole batch when one message cannot be
read or when the endpoint asks; ours acknowledges what is done or unreadable and hands
back only what the handler did not finish (a stopping daemon's deliveries).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.k2hr3_standin import FakeK2HR3
from support.samples import SAMPLES

from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.rabbit.dispatcher import PoisonSafeDispatcher
from k2hr3_osnl.rabbit.endpoint import NotificationEndpoint

NEUTRON = json.loads(
    (SAMPLES / "neutron/k2hr3_osnl__notifications_neutron.json").read_text(encoding="utf-8")
)


@dataclass(eq=False)
class Incoming:
    """What the rabbit driver hands the dispatcher: a context and the message dict."""

    message: dict[str, Any]
    ctxt: dict[str, Any] = field(default_factory=dict)


def notification(message_id: str, cuk: str, priority: Any = "INFO") -> Incoming:
    payload = json.loads(json.dumps(NEUTRON["payload"]))
    payload["port"]["device_id"] = cuk
    return Incoming(
        {
            "message_id": message_id,
            "priority": priority,
            "event_type": "port.delete.end",
            "publisher_id": NEUTRON["publisher_id"],
            "payload": payload,
            "timestamp": "2026-11-26 00:00:00.000000",
        }
    )


@pytest.fixture
def handler(k2hr3: FakeK2HR3, tmp_path: Path) -> Iterator[Handler]:
    made = Handler(
        client=RoleClient(k2hr3.url),
        breaker=CircuitBreaker(),
        parking=ParkingLot(tmp_path),
        recent=RecentDeliveries(600),
        retry_budget=30,
    )
    yield made
    made.client.close()


def cuk(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def test_an_unreadable_message_does_not_take_its_batch_back(
    k2hr3: FakeK2HR3, handler: Handler
) -> None:
    poison = notification("m-poison", cuk(9), priority=None)  # oslo cannot .lower() it
    batch = [notification("m-1", cuk(1)), poison, notification("m-2", cuk(2))]
    assert PoisonSafeDispatcher(NotificationEndpoint(handler)).dispatch(batch) == set()
    assert sorted(c for c, _ in k2hr3.deleted()) == [cuk(1), cuk(2)]


def test_other_priorities_are_counted_and_acknowledged(k2hr3: FakeK2HR3, handler: Handler) -> None:
    endpoint = NotificationEndpoint(handler)
    created = notification("m-1", cuk(1), "ERROR")
    created.message["event_type"] = "port.create.end"
    batch = [created, notification("m-2", cuk(2), "bogus")]
    assert PoisonSafeDispatcher(endpoint).dispatch(batch) == set()
    assert endpoint.other_priorities == {"error": 1}
    assert k2hr3.requests == 0


def test_a_deletion_at_another_priority_is_handled_as_a_deletion(
    k2hr3: FakeK2HR3, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    """nova with ``[notifications] default_level = WARN`` sends its deletions at warn:
    the VM is gone all the same. Handled, counted as any deletion, said once."""
    endpoint = NotificationEndpoint(handler)
    batch = [
        notification("m-1", cuk(1), "WARN"),
        notification("m-2", cuk(2), "ERROR"),
        notification("m-3", cuk(3), "WARN"),
    ]
    assert PoisonSafeDispatcher(endpoint).dispatch(batch) == set()
    assert sorted(c for c, _ in k2hr3.deleted()) == [cuk(1), cuk(2), cuk(3)]
    assert endpoint.deletions_at == {"warn": 2, "error": 1}
    said = [r for r in caplog.records if "handled as a deletion" in r.getMessage()]
    assert [r.levelname for r in said] == ["WARNING", "WARNING"]


def test_a_stopping_daemon_hands_back_only_unfinished_deliveries(
    k2hr3: FakeK2HR3, handler: Handler
) -> None:
    ignored = notification("m-ignored", cuk(3))
    ignored.message["event_type"] = "port.create.end"
    pending = [notification("m-1", cuk(1)), notification("m-2", cuk(2))]
    handler.breaker.stop()  # what SIGTERM does: no more calls start
    requeue = PoisonSafeDispatcher(NotificationEndpoint(handler)).dispatch([*pending, ignored])
    assert requeue == set(pending)
    assert k2hr3.requests == 0
