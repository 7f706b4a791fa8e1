"""From a notification to a decision: pure functions, no I/O.

Each OpenStack source gets one small class that declares the event types it handles next
to the code that reads them. :func:`decide` is the only entry point the rest of the
daemon needs.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

#: A port carrying more addresses than this is not a real port: refuse it whole.
MAX_IPS = 256

#: Used with fullmatch: a "$" would also match before a trailing newline.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``cuk`` from K2HR3: only ``ips`` if given, else every IP it has."""

    cuk: str
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ignore:
    """Nothing to do, and nothing wrong: not a deletion, or not a VM."""

    reason: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """A deletion we cannot trust: never sent to K2HR3."""

    reason: str


Decision = Delete | Ignore | Invalid


class _Reject(Exception):
    """Raised inside a handler to turn a bad field into :class:`Invalid`."""


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Reject(f"{where} is {type(value).__name__}, not an object")
    return value


def _cuk(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise _Reject(f"{where} is not a UUID: {_short(value)}")
    return value


def _ip(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Reject(f"{where} is {type(value).__name__}, not an IP address")
    try:
        if "%" in value:  # fe80::1%eth0: a zone only means something on one host
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _Reject(f"{where} is not an IP address: {_short(value)}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class NeutronPort:
    """neutron ``port.delete.end``: one port of a VM is gone, and with it its addresses.

    Only that port's IPs are removed (``host``), because a VM with several ports keeps
    the others. neutron before Newton sends only ``port_id``: nothing to act on.
    """

    event_types: ClassVar[frozenset[str]] = frozenset({"port.delete.end"})

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        port = payload.get("port")
        if port is None:
            if "port_id" in payload:
                return Ignore("payload has only port_id (neutron before Newton): no device")
            raise _Reject("payload has no 'port'")
        port = _mapping(port, "payload.port")
        owner = port.get("device_owner")
        if not isinstance(owner, str) or not owner.startswith("compute:"):
            return Ignore(f"device_owner {_short(owner)} is not a VM")
        cuk = _cuk(port.get("device_id"), "payload.port.device_id")
        fixed_ips = port.get("fixed_ips")
        if not isinstance(fixed_ips, list):
            raise _Reject(f"payload.port.fixed_ips is {type(fixed_ips).__name__}, not a list")
        if len(fixed_ips) > MAX_IPS:
            raise _Reject(f"payload.port.fixed_ips has {len(fixed_ips)} entries (max {MAX_IPS})")
        if not fixed_ips:
            # Sending no host would remove every IP of the VM, including other ports'.
            return Ignore("the port had no IP addresses")
        ips: list[str] = []
        for i, entry in enumerate(fixed_ips):
            where = f"payload.port.fixed_ips[{i}]"
            ip = _ip(_mapping(entry, where).get("ip_address"), f"{where}.ip_address")
            if ip not in ips:
                ips.append(ip)
        return Delete(cuk, tuple(ips))


class NovaVersioned:
    """nova versioned ``instance.delete.end``: the whole instance is gone.

    Deleted by cuk alone: ``ip_addresses`` is empty at delete time, and naming a subset
    would leave the other addresses behind.
    """

    event_types: ClassVar[frozenset[str]] = frozenset({"instance.delete.end"})

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        data = _mapping(payload.get("nova_object.data"), 'payload["nova_object.data"]')
        return Delete(_cuk(data.get("uuid"), 'payload["nova_object.data"].uuid'))


class NovaLegacy:
    """nova unversioned ``compute.instance.delete.end``: the whole instance is gone."""

    event_types: ClassVar[frozenset[str]] = frozenset({"compute.instance.delete.end"})

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        return Delete(_cuk(payload.get("instance_id"), "payload.instance_id"))


class ReconciledServer:
    """Our own ``k2hr3_osnl.reconcile.server.deleted``: Nova lists the server as deleted.

    Reconciliation (:mod:`k2hr3_osnl.core.catchup`) found it: the whole instance is gone, as
    for ``instance.delete.end``; it travels the same path as a notification would.
    """

    event_types: ClassVar[frozenset[str]] = frozenset({"k2hr3_osnl.reconcile.server.deleted"})

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        return Delete(_cuk(payload.get("uuid"), "payload.uuid"))


HANDLERS = (NeutronPort, NovaVersioned, NovaLegacy, ReconciledServer)
_BY_EVENT_TYPE = {event: handler for handler in HANDLERS for event in handler.event_types}
#: Every event type that can lead to a K2HR3 call.
DELETION_EVENT_TYPES = frozenset(_BY_EVENT_TYPE)


def decide(event_type: Any, payload: Any) -> Decision:
    """What to do about one notification."""
    handler = _BY_EVENT_TYPE.get(event_type) if isinstance(event_type, str) else None
    if handler is None:
        return Ignore(f"event_type {_short(event_type)} is not a deletion")
    try:
        return handler.decide(_mapping(payload, "payload"))
    except _Reject as reject:
        return Invalid(str(reject))


def utc_time(text: Any) -> float | None:
    """Unix time of an OpenStack timestamp (UTC when it names no zone); None if it is
    not one: a bad timestamp loses only a histogram sample, never the deletion."""
    if not isinstance(text, str):
        return None
    try:
        stamp = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()
