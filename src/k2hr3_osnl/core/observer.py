"""What the daemon reports while it works: hooks for metrics and health, no-ops by default.

The handler and the service call these few methods at the moments that matter, so that
they need not know about Prometheus, HTTP or health rules; :mod:`k2hr3_osnl.observability.metrics`
and :mod:`k2hr3_osnl.observability.health` implement them. Every hook must be cheap and must not
raise: it runs on the path of each notification.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2hr3_osnl.core.answers import Answer
    from k2hr3_osnl.core.types import Notification, Result


class Observer:
    """Override the hooks you need; the others do nothing."""

    def listening(self) -> None:
        """The listener consumes: ``start()`` returned."""

    def stopping(self) -> None:
        """The daemon stops taking messages."""

    def broker_lost(self, detail: str) -> None:
        """The connection to RabbitMQ failed; the driver retries."""

    def broker_back(self) -> None:
        """The driver reconnected to RabbitMQ."""

    def handling(self, note: Notification) -> None:
        """A notification reached the endpoint."""

    def handled(self, note: Notification, result: Result | None) -> None:
        """Its outcome (None: an exception escaped the handler)."""

    def answered(self, note: Notification, answer: Answer, attempt: int) -> None:
        """K2HR3 answered attempt number ``attempt`` (1 for the first) of a deletion."""

    def forgot(self, cuk: str) -> None:
        """K2HR3 accepted the deletion of ``cuk`` whole (every address of an instance):
        what reconciliation need not send again. Said after ``handled``."""

    def unreadable(self, reason: str) -> None:
        """A message that is no notification at all was acknowledged before our endpoint."""

    def reconcile_missed(self, cuk: str) -> None:
        """Reconciliation found a deleted server that no notification had deleted."""

    def reconciled(self, found: int) -> None:
        """A reconciliation pass asked Nova successfully and found ``found`` deletions."""

    def reconcile_failed(self, detail: str) -> None:
        """A reconciliation pass could not ask Keystone or Nova (``detail`` says why)."""

    def reconcile_cells(self, unknown: int | None) -> None:
        """Nova listed ``unknown`` compute services as UNKNOWN (a cell down); None: cannot tell."""

    def reconcile_leading(self, leading: bool) -> None:
        """This process got (True) or lost (False) the pool's reconciler token."""

    def reconcile_abandoned(self) -> None:
        """A pass stopped because its process lost the token: it may have overlapped the
        next holder's (allowed: deletions are idempotent)."""

    def verified(self, target: str, outcome: str) -> None:
        """Verification asked about a ``server`` or ``port``: ``gone``, ``exists``, ``unknown``."""

    def parked_causes(self, counts: Mapping[str, int]) -> None:
        """The parking lot, counted by cause (``core/parking.py: Cause``)."""

    def resent(self, cause: str, outcome: str) -> None:
        """A parked deletion of ``cause`` was sent again: delivered, failed or gave_up."""


class Observers(Observer):
    """Several observers as one, called in order."""

    def __init__(self, observers: Iterable[Observer]) -> None:
        self.observers = tuple(observers)

    def listening(self) -> None:
        for observer in self.observers:
            observer.listening()

    def stopping(self) -> None:
        for observer in self.observers:
            observer.stopping()

    def broker_lost(self, detail: str) -> None:
        for observer in self.observers:
            observer.broker_lost(detail)

    def broker_back(self) -> None:
        for observer in self.observers:
            observer.broker_back()

    def handling(self, note: Notification) -> None:
        for observer in self.observers:
            observer.handling(note)

    def handled(self, note: Notification, result: Result | None) -> None:
        for observer in self.observers:
            observer.handled(note, result)

    def answered(self, note: Notification, answer: Answer, attempt: int) -> None:
        for observer in self.observers:
            observer.answered(note, answer, attempt)

    def forgot(self, cuk: str) -> None:
        for observer in self.observers:
            observer.forgot(cuk)

    def unreadable(self, reason: str) -> None:
        for observer in self.observers:
            observer.unreadable(reason)

    def reconcile_missed(self, cuk: str) -> None:
        for observer in self.observers:
            observer.reconcile_missed(cuk)

    def reconciled(self, found: int) -> None:
        for observer in self.observers:
            observer.reconciled(found)

    def reconcile_failed(self, detail: str) -> None:
        for observer in self.observers:
            observer.reconcile_failed(detail)

    def reconcile_cells(self, unknown: int | None) -> None:
        for observer in self.observers:
            observer.reconcile_cells(unknown)

    def reconcile_leading(self, leading: bool) -> None:
        for observer in self.observers:
            observer.reconcile_leading(leading)

    def reconcile_abandoned(self) -> None:
        for observer in self.observers:
            observer.reconcile_abandoned()

    def verified(self, target: str, outcome: str) -> None:
        for observer in self.observers:
            observer.verified(target, outcome)

    def parked_causes(self, counts: Mapping[str, int]) -> None:
        for observer in self.observers:
            observer.parked_causes(counts)

    def resent(self, cause: str, outcome: str) -> None:
        for observer in self.observers:
            observer.resent(cause, outcome)
