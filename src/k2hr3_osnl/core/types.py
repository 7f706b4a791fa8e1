"""The two small types every part shares: a notification, and what became of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Notification:
    message_id: Any
    event_type: Any
    publisher_id: Any
    payload: Any
    #: time.monotonic() when the listener took it from RabbitMQ, if known: its retry
    #: budget counts from then, however long it waited for a free worker thread.
    received: float | None = None
    #: Made by the daemon itself (reconciliation, a verification re-check), not taken
    #: from the bus: only such a notification may use an internal event type.
    internal: bool = False
    #: Unix time the deletion happened by its own account (the notification's
    #: timestamp, a reconciled server's terminated_at), if known: where the window
    #: in which K2HR3 still grants the deleted VM's addresses begins.
    happened: float | None = None


class Result(enum.Enum):
    """What became of a notification; every value but REQUEUED means acknowledge it."""

    DELETED = "deleted"
    IGNORED = "ignored"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    #: Handed back: RabbitMQ delivers it again later (the daemon stops, or could not
    #: settle it).
    REQUEUED = "requeued"


def acknowledges(result: Result | None) -> bool:
    """The acknowledgement rule, the only one: settled messages are acknowledged.

    No result (something failed before one was reached) and REQUEUED hand it back.
    """
    return result is not None and result is not Result.REQUEUED
