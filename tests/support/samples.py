"""The real OpenStack notifications under tests/samples, and what tests make of them.

Every test reads samples from here (see tests/samples/README.md for where each comes from).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).parent.parent / "samples"


def sample(relative: str) -> dict[str, Any]:
    return json.loads((SAMPLES / relative).read_text(encoding="utf-8"))


def neutron_port_delete(cuk: str, ips: Iterable[str]) -> tuple[str, str, dict[str, Any]]:
    """``(event_type, publisher_id, payload)`` of neutron's ``port.delete.end``."""
    document = sample("neutron/k2hr3_osnl__notifications_neutron.json")
    payload = document["payload"]
    payload["port"]["device_id"] = cuk
    payload["port"]["fixed_ips"] = [
        {"ip_address": ip, "subnet_id": str(uuid.uuid4())} for ip in ips
    ]
    return document["event_type"], document["publisher_id"], payload


def nova_legacy_delete(cuk: str) -> tuple[str, str, dict[str, Any]]:
    """legacy nova's ``compute.instance.delete.end`` (the captured 2017 message)."""
    document = sample("wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json")
    document["payload"]["instance_id"] = cuk
    return document["event_type"], document["publisher_id"], document["payload"]


def nova_versioned(name: str, cuk: str) -> tuple[str, str, dict[str, Any]]:
    """A resolved nova versioned sample, e.g. ``instance-delete-end``."""
    document = sample(f"nova_versioned/resolved/{name}.json")
    document["payload"]["nova_object.data"]["uuid"] = cuk
    return document["event_type"], document["publisher_id"], document["payload"]


def nova_versioned_delete(cuk: str) -> tuple[str, str, dict[str, Any]]:
    return nova_versioned("instance-delete-end", cuk)


def wire_body(event_type: str, publisher_id: str, payload: Any, v2: bool = True) -> bytes:
    """A body like the ``messaging``/``messagingv2`` drivers send, with a new message_id."""
    message = {
        "message_id": str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": "INFO",
        "payload": payload,
        "timestamp": "2026-01-01 00:00:00.000000",
        "_unique_id": uuid.uuid4().hex,
    }
    if not v2:
        return json.dumps(message).encode()
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()
