"""The acknowledgement invariant, tried on generated batches.

Every message taken from RabbitMQ ends as exactly one of: delivered (K2HR3 answered 2xx
for it), parked (a file that names its deletion), unusable (invalid, ignored, or a copy
of one already delivered) or handed back to RabbitMQ. Only the first three are
acknowledged. Hypothesis builds batches of real sample notifications with duplicates and
unusable bodies, has "K2HR3" answer each cuk from a script of 204/400/403/404/503,
timeouts and exceptions, makes the disk refuse some parkings, and sometimes stops the
daemon mid-batch; the batch goes through the real dispatcher, endpoint and handler.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.samples import sample

from k2hr3_osnl.core import handler as handler_module
from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.events import Delete, decide
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import Parked, ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.types import Result
from k2hr3_osnl.rabbit.dispatcher import PoisonSafeDispatcher
from k2hr3_osnl.rabbit.endpoint import NotificationEndpoint

NEUTRON = sample("neutron/k2hr3_osnl__notifications_neutron.json")
LEGACY = sample("wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json")
VERSIONED = sample("nova_versioned/resolved/instance-delete-end.json")
CUKS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(4)]

#: What "K2HR3" may answer a call: an HTTP status, no answer, or a bug of ours.
ANSWERS = ("204", "400", "403", "404", "503", "timeout", "raise")


def _body(kind: str, cuk: str) -> tuple[str, str, Any]:
    """(event_type, publisher_id, payload) of one kind of notification."""
    if kind == "port":
        payload = copy.deepcopy(NEUTRON["payload"])
        payload["port"]["device_id"] = cuk
        payload["blob"] = b"bytes from kombu's decoder"  # JSON cannot write it
        return "port.delete.end", NEUTRON["publisher_id"], payload
    if kind == "legacy":
        payload = copy.deepcopy(LEGACY["payload"])
        payload["instance_id"] = cuk
        return LEGACY["event_type"], LEGACY["publisher_id"], payload
    if kind == "versioned":
        payload = copy.deepcopy(VERSIONED["payload"])
        payload["nova_object.data"]["uuid"] = cuk
        return VERSIONED["event_type"], VERSIONED["publisher_id"], payload
    if kind == "ignored":
        return "compute.instance.exists", LEGACY["publisher_id"], {"instance_id": cuk}
    return "port.delete.end", NEUTRON["publisher_id"], {"port": "not an object"}  # invalid


@dataclass(eq=False)
class Incoming:
    """What oslo.messaging's rabbit driver hands a dispatcher (ctxt and message)."""

    message: dict[str, Any]
    ctxt: dict[str, Any] = field(default_factory=dict)


messages = st.builds(
    lambda kind, cuk, message_id, priority: (kind, cuk, message_id, priority),
    st.sampled_from(["port", "legacy", "versioned", "ignored", "invalid"]),
    st.sampled_from(CUKS),
    st.sampled_from(["m-0", "m-1", "m-2", "m-3", "m-4", "m-5"]),  # copies are likely
    st.sampled_from(["INFO", "INFO", "INFO", "WARN", None]),
)


class ScriptedK2HR3:
    """A RoleClient stand-in: each cuk answers from its script, the last answer repeats."""

    dry_run = False

    def __init__(self, scripts: Mapping[str, Sequence[str]]) -> None:
        self.scripts = {cuk: list(script) for cuk, script in scripts.items()}
        self.lock = threading.Lock()
        #: (cuk, ips) of every call K2HR3 answered with success.
        self.deleted: list[tuple[str, tuple[str, ...]]] = []

    def delete_many(self, calls: Any, fields: Any = ()) -> list[Answer]:
        answers = []
        with self.lock:
            for cuk, ips in calls:
                script = self.scripts[cuk]
                said = script.pop(0) if len(script) > 1 else script[0]
                if said == "raise":
                    raise RuntimeError("a bug of ours in the client")
                if said == "timeout":
                    answers.append(Answer(Outcome.RETRY, None, "timed out", 0.0))
                    continue
                status = int(said)
                outcome = {204: Outcome.DELETED, 403: Outcome.RETRY, 503: Outcome.RETRY}.get(
                    status, Outcome.REJECTED
                )
                if outcome is Outcome.DELETED:
                    self.deleted.append((cuk, ips))
                answers.append(Answer(outcome, status, "", 0.0))
        return answers

    def close(self) -> None:
        pass


class FlakyParkingLot(ParkingLot):
    """A disk that refuses the parkings it is told to."""

    def __init__(self, state_dir: Path, refuse: Sequence[bool]) -> None:
        super().__init__(state_dir)
        self.refuse = list(refuse)

    def park(self, item: Parked) -> Path:
        if self.refuse and self.refuse.pop(0):
            raise OSError(28, "No space left on device")
        return super().park(item)


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module, "PARK_FAILURE_PAUSE", 0.0)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batch=st.lists(messages, min_size=1, max_size=8),
    scripts=st.fixed_dictionaries(
        {cuk: st.lists(st.sampled_from(ANSWERS), min_size=1, max_size=4) for cuk in CUKS}
    ),
    refuse=st.lists(st.booleans(), max_size=4),
    stop_early=st.booleans(),
)
def test_every_message_ends_settled_or_handed_back(
    tmp_path_factory: pytest.TempPathFactory,
    batch: list[tuple[str, str, str, str | None]],
    scripts: dict[str, list[str]],
    refuse: list[bool],
    stop_early: bool,
) -> None:
    state = tmp_path_factory.mktemp("state")
    client = ScriptedK2HR3(scripts)
    parking = FlakyParkingLot(state, refuse)
    breaker = CircuitBreaker(max_interval=0.02, min_interval=0.005)
    handler = Handler(client, breaker, parking, RecentDeliveries(600), retry_budget=0.15)  # type: ignore[arg-type]
    dispatcher = PoisonSafeDispatcher(NotificationEndpoint(handler))
    if stop_early:
        threading.Timer(0.02, breaker.stop).start()

    incoming = []
    for kind, cuk, message_id, priority in batch:
        event_type, publisher_id, payload = _body(kind, cuk)
        message = {
            "message_id": message_id,
            "event_type": event_type,
            "publisher_id": publisher_id,
            "payload": payload,
        }
        if priority is not None:
            message["priority"] = priority
        incoming.append(Incoming(message))

    handed_back = dispatcher.dispatch(incoming)  # must not raise, whatever happens

    assert handed_back <= set(incoming)
    parked = list(ParkingLot(state))
    parked_ids = [item.message_id for item in parked]
    delivered_cuks = {cuk for cuk, _ in client.deleted}
    for raw in incoming:
        message = raw.message
        decision = decide(message["event_type"], message["payload"])
        acknowledged = raw not in handed_back
        if message.get("priority", "").lower() not in ("info", "warn"):
            assert acknowledged, "an unreadable message is acknowledged once, never looped"
            continue
        if not isinstance(decision, Delete):
            # Unusable (ignored, invalid): acknowledged, nothing sent. A deletion at
            # another priority (WARN) is a deletion: it must not be lost either.
            assert acknowledged
            continue
        if not acknowledged:
            continue  # handed back: RabbitMQ delivers it again
        # Acknowledged deletions were delivered, or parked with their deletion.
        was_delivered = decision.cuk in delivered_cuks
        was_parked = message["message_id"] in parked_ids
        assert was_delivered or was_parked, f"{message['message_id']} acknowledged and lost"
    for item in parked:
        assert item.cuk in CUKS, "a parked file always names its deletion"
    # Parked once each: a file per PARKED result, never two for one parking.
    assert len(parked) == len(set(item.path for item in parked))


def test_a_failing_endpoint_hands_back_the_whole_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug of ours above the handler (here, the endpoint itself raises): the batch
    goes back to RabbitMQ after a pause; before, it was acknowledged and lost."""

    class BrokenEndpoint(NotificationEndpoint):
        def info(self, messages: list[dict[str, Any]]) -> list[Result]:
            raise RuntimeError("a bug of ours")

    breaker = CircuitBreaker()
    handler = Handler(ScriptedK2HR3({}), breaker, ParkingLot(tmp_path), RecentDeliveries(600), 1.0)  # type: ignore[arg-type]
    dispatcher = PoisonSafeDispatcher(BrokenEndpoint(handler))
    event_type, publisher_id, payload = _body("legacy", CUKS[0])
    incoming = [
        Incoming(
            {
                "message_id": f"m-{i}",
                "event_type": event_type,
                "priority": "INFO",
                "publisher_id": publisher_id,
                "payload": payload,
            }
        )
        for i in range(3)
    ]
    assert dispatcher.dispatch(incoming) == set(incoming)
