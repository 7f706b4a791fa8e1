"""``[reconcile] verify_deletions``: ask Nova or Neutron before believing a notification.

Anyone who can publish on the bus can forge ``instance.delete.end`` for a live VM, and a
misrouted notification from another cloud names servers that exist here. With this on,
an instance deletion is sent only if Nova answers 404 for the server, and a port
deletion only if Neutron answers 404 for the port. One that still exists is refused
(logged at warning, acknowledged as invalid, counted); if Nova or Neutron cannot
answer, the deletion goes ahead, because removing access is the safe side, and that is
counted too.

:class:`VerifyingHandler` wraps the handler for the endpoint, so the handler itself
does not change.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from k2hr3_osnl.core.events import Delete, NeutronPort, NovaLegacy, NovaVersioned, decide
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.observability import logs
from k2hr3_osnl.openstack import neutron, nova
from k2hr3_osnl.openstack.session import Cloud, OpenStackError

LOG = logging.getLogger(__name__)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INSTANCE_EVENTS = NovaVersioned.event_types | NovaLegacy.event_types

#: ``(target, id)`` to look up -> does it still exist? Raises OpenStackError if unknown.
Lookup = Callable[[str, str], bool]


def cloud_lookup(cloud: Cloud) -> Lookup:
    def exists(target: str, ident: str) -> bool:
        if target == "server":
            return nova.server_exists(cloud, ident)
        return neutron.port_exists(cloud, ident)

    return exists


def target_of(event_type: Any, payload: Any) -> tuple[str, str] | None:
    """What to ask about a deletion notification: ``("server", uuid)``, ``("port", id)``.

    None for anything else (reconciliation's own deletions: Nova just listed them as
    deleted) and for a port payload without a usable id.
    """
    decision = decide(event_type, payload)
    if not isinstance(decision, Delete):
        return None
    if event_type in _INSTANCE_EVENTS:
        return "server", decision.cuk
    if event_type in NeutronPort.event_types and isinstance(payload, Mapping):
        port = payload.get("port")
        port_id = port.get("id") if isinstance(port, Mapping) else None
        if isinstance(port_id, str) and _UUID.fullmatch(port_id):
            return "port", port_id
    return None


class VerifyingHandler:
    """A :class:`Handler` in front of which each deletion is checked first."""

    def __init__(self, handler: Handler, lookup: Lookup) -> None:
        self.handler = handler
        self.lookup = lookup
        self._unanswered = False  # within a streak of unanswered lookups: log once

    def handle(self, note: Notification) -> Result:
        return self.handle_batch([note])[0]

    def handle_batch(self, notes: Sequence[Notification]) -> list[Result]:
        refused = {i: why for i, note in enumerate(notes) if (why := self._refusal(note))}
        if not refused:
            return self.handler.handle_batch(notes)
        passed = [note for i, note in enumerate(notes) if i not in refused]
        results = iter(self.handler.handle_batch(passed) if passed else [])
        observer = self.handler.observer
        out: list[Result] = []
        for i, note in enumerate(notes):
            if i not in refused:
                out.append(next(results))
                continue
            observer.handling(note)
            with logs.fields(
                message_id=note.message_id,
                event_type=note.event_type,
                publisher_id=note.publisher_id,
            ):
                LOG.warning(
                    "message_id=%s event_type=%s %s: %s",
                    note.message_id,
                    note.event_type,
                    Result.INVALID.value,
                    refused[i],
                    extra={"outcome": Result.INVALID.value},
                )
            observer.handled(note, Result.INVALID)
            out.append(Result.INVALID)
        return out

    def _refusal(self, note: Notification) -> str | None:
        """Why not to act on ``note``, or None to go ahead."""
        try:
            target = target_of(note.event_type, note.payload)
        except Exception:  # the handler will say what is wrong with it
            return None
        if target is None:
            return None
        kind, ident = target
        observer = self.handler.observer
        try:
            exists = self.lookup(kind, ident)
        except OpenStackError as error:
            observer.verified(kind, "unknown")
            if not self._unanswered:
                self._unanswered = True
                LOG.warning(
                    "cannot verify deletions (%s): deleting without verification until "
                    "it answers again (logged once)",
                    error,
                )
            return None
        if self._unanswered:
            self._unanswered = False
            LOG.info("verification of deletions works again")
        if exists:
            observer.verified(kind, "exists")
            service = "Nova" if kind == "server" else "Neutron"
            return (
                f"{service} still has {kind} {ident}: not deleting it from K2HR3 "
                "(a forged or misrouted notification?)"
            )
        observer.verified(kind, "gone")
        return None

    def __getattr__(self, name: str) -> Any:
        # breaker, parking, observer, client...: the wrapped handler's.
        return getattr(self.handler, name)
