"""From a notification to a decision: pure functions, no I/O.

Each OpenStack source is described once, by one small class: the event types it
handles, where its service publishes them (:class:`Route`), what verification asks
OpenStack about (``proves``) and the code that reads its payload. Everything else is
derived from :data:`SOURCES`: the default ``event_type`` filter, exchanges and topics
(``config/opts.py``), where ``publish`` sends a sample, the exchanges ``mosk-config``
surveys, the metrics' labels. :func:`decide` is the only entry point the daemon needs.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: A port carrying more addresses than this is not a real port: refuse it whole.
MAX_IPS = 256

#: Used with fullmatch: a "$" would also match before a trailing newline.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


#: What verification looks up (``Proof.target``): a Nova server, a Neutron port.
SERVER = "server"
PORT = "port"
PROOF_TARGETS = (SERVER, PORT)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a service publishes a source's notifications on RabbitMQ."""

    exchange: str
    topic: str
    #: The publisher_id that service sends (its prefix is what the default
    #: ``publisher_id`` filter admits); ``publish`` uses it for a sample without one.
    publisher_id: str


@dataclass(frozen=True, slots=True)
class Proof:
    """What ``verify_deletions`` asks OpenStack about, as the notification named it."""

    #: :data:`SERVER` (Nova) or :data:`PORT` (Neutron).
    target: str
    #: The server's or port's id as sent; None when the notification had none.
    ident: str | None


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``cuk`` from K2HR3: only ``ips`` if given, else every IP it has."""

    cuk: str
    ips: tuple[str, ...] = ()
    #: What would prove the deletion happened; None: its source is proof enough (Nova
    #: itself listed the server as deleted). Carried with the decision, so that the
    #: verification step never parses the payload again.
    proof: Proof | None = field(default=None, compare=False)


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
    """Raised inside a source's ``decide`` to turn a bad field into :class:`Invalid`."""


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Reject(f"{where} is {type(value).__name__}, not an object")
    return value


def _cuk(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise _Reject(f"{where} is not a UUID: {_short(value)}")
    return value


def _ip(value: Any, where: str) -> str:
    """``value`` itself, once it is known to be an address: K2HR3 matches the text it
    stored, so a rewritten ``2001:DB8:0::6`` would match nothing."""
    if not isinstance(value, str):
        raise _Reject(f"{where} is {type(value).__name__}, not an IP address")
    try:
        if "%" in value:  # fe80::1%eth0: a zone only means something on one host
            raise ValueError(value)
        ipaddress.ip_address(value)
    except ValueError:
        raise _Reject(f"{where} is not an IP address: {_short(value)}") from None
    return value


def _server(cuk: str) -> Delete:
    return Delete(cuk, proof=Proof(SERVER, cuk))


def _ident(value: Any) -> str | None:
    """An id as sent, for verification to judge: None if absent, text otherwise."""
    if value is None:
        return None
    return value if isinstance(value, str) else repr(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class NeutronPort:
    """neutron ``port.delete.end``: one port of a VM is gone, and with it its addresses.

    Only that port's IPs are removed (``host``), because a VM with several ports keeps
    the others. neutron before Newton sends only ``port_id``: nothing to act on.
    """

    event_types: ClassVar[tuple[str, ...]] = ("port.delete.end",)
    route: ClassVar[Route | None] = Route("neutron", "notifications", "network.k2hr3-osnl-publish")
    proves: ClassVar[str | None] = PORT
    internal: ClassVar[bool] = False

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
        return Delete(cuk, tuple(ips), Proof(PORT, _ident(port.get("id"))))


class NovaVersioned:
    """nova versioned ``instance.delete.end``: the whole instance is gone.

    Deleted by cuk alone: ``ip_addresses`` is empty at delete time, and naming a subset
    would leave the other addresses behind.
    """

    event_types: ClassVar[tuple[str, ...]] = ("instance.delete.end",)
    route: ClassVar[Route | None] = Route(
        "nova", "versioned_notifications", "nova-compute:k2hr3-osnl-publish"
    )
    proves: ClassVar[str | None] = SERVER
    internal: ClassVar[bool] = False

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        data = _mapping(payload.get("nova_object.data"), 'payload["nova_object.data"]')
        return _server(_cuk(data.get("uuid"), 'payload["nova_object.data"].uuid'))


class NovaLegacy:
    """nova unversioned ``compute.instance.delete.end``: the whole instance is gone."""

    event_types: ClassVar[tuple[str, ...]] = ("compute.instance.delete.end",)
    route: ClassVar[Route | None] = Route("nova", "notifications", "compute.k2hr3-osnl-publish")
    proves: ClassVar[str | None] = SERVER
    internal: ClassVar[bool] = False

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        return _server(_cuk(payload.get("instance_id"), "payload.instance_id"))


class ReconciledServer:
    """Our own ``k2hr3_osnl.reconcile.server.deleted``: Nova lists the server as deleted.

    Reconciliation (:mod:`k2hr3_osnl.core.reconciliation`) found it: the whole instance is gone, as
    for ``instance.delete.end``; it travels the same path as a notification would. It is
    internal: the daemon makes it, and one that comes from the bus is forged.
    """

    event_types: ClassVar[tuple[str, ...]] = ("k2hr3_osnl.reconcile.server.deleted",)
    #: Never on the bus: the daemon hands it to the handler itself.
    route: ClassVar[Route | None] = None
    #: Nova's own listing is the proof.
    proves: ClassVar[str | None] = None
    internal: ClassVar[bool] = True

    @staticmethod
    def decide(payload: Mapping[str, Any]) -> Decision:
        return Delete(_cuk(payload.get("uuid"), "payload.uuid"))


Source = type[NeutronPort] | type[NovaVersioned] | type[NovaLegacy] | type[ReconciledServer]
#: Every source, in the order the defaults list them.
SOURCES: tuple[Source, ...] = (NeutronPort, NovaVersioned, NovaLegacy, ReconciledServer)
#: The sources OpenStack publishes on RabbitMQ; the others are the daemon's own.
FROM_THE_BUS = tuple(source for source in SOURCES if not source.internal)
_BY_EVENT_TYPE = {event: source for source in SOURCES for event in source.event_types}
#: Every event type that can lead to a K2HR3 call.
DELETION_EVENT_TYPES = frozenset(_BY_EVENT_TYPE)


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def bus_event_types() -> list[str]:
    """The event types OpenStack publishes that this daemon acts on, in order."""
    return _unique([event for source in FROM_THE_BUS for event in source.event_types])


def event_type_filter() -> str:
    """The default ``[oslo_messaging_notifications] event_type``: every bus source's."""
    return "^(" + "|".join(re.escape(event) for event in bus_event_types()) + ")$"


def _routes() -> list[Route]:
    return [source.route for source in FROM_THE_BUS if source.route is not None]


def exchanges() -> list[str]:
    """The exchanges the bus sources are published to (the default ``exchange``)."""
    return _unique([route.exchange for route in _routes()])


def topics() -> list[str]:
    """The topics the bus sources are published on (the default ``topic``)."""
    return _unique([route.topic for route in _routes()])


def route_of(event_type: str) -> Route | None:
    """Where OpenStack would publish ``event_type``: its source's route, or for another
    event of the same service (``port.create.end``) that service's; None if unknown."""
    source = _BY_EVENT_TYPE.get(event_type)
    if source is not None:
        return source.route
    service = event_type.split(".", 1)[0]
    for source in FROM_THE_BUS:
        if any(event.split(".", 1)[0] == service for event in source.event_types):
            return source.route
    return None


def made_by_us(event_type: Any) -> bool:
    """Whether ``event_type`` is an internal source's: only the daemon makes those (and
    parks them: a parked file of that type is the daemon's own, sent again)."""
    source = _BY_EVENT_TYPE.get(event_type) if isinstance(event_type, str) else None
    return source is not None and source.internal


def decide(event_type: Any, payload: Any, internal: bool = False) -> Decision:
    """What to do about one notification; ``internal``: the daemon made it itself.

    An internal source's event type from anywhere else (the bus) is refused, whatever
    ``event_type`` filter admitted it: anyone who can publish could otherwise name it.
    """
    source = _BY_EVENT_TYPE.get(event_type) if isinstance(event_type, str) else None
    if source is None:
        return Ignore(f"event_type {_short(event_type)} is not a deletion")
    if source.internal and not internal:
        return Invalid(f"event_type {event_type} is the daemon's own: never taken from the bus")
    try:
        return source.decide(_mapping(payload, "payload"))
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
