"""The oslo.messaging endpoint: priority-named methods the batch listener calls.

Deletions arrive at ``info``, a batch at a time: their K2HR3 calls go out together and
the batch is acknowledged once each of them is settled. The other priorities are
subscribed only so that nothing sent there piles up in our queue: they are counted,
logged at debug and acknowledged, except a deletion. A deletion sent at another
priority (nova's ``[notifications] default_level = WARN`` sends every notification at
``warn``) is still a VM that is gone: it is handled as a deletion, at ``info``'s side,
and a warning says so once per priority.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from oslo_messaging import NotificationFilter

from k2hr3_osnl.core import events
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.types import Notification, Result

LOG = logging.getLogger(__name__)

#: What oslo.messaging hands an endpoint for each notification of a batch.
Message = dict[str, Any]

#: Deletions OpenStack services publish: handled whatever their priority.
BUS_DELETIONS = frozenset(events.bus_event_types())


class NotificationEndpoint:
    def __init__(self, handler: Handler, filter_rule: NotificationFilter | None = None) -> None:
        self.handler = handler
        if filter_rule is not None:
            # oslo.messaging's dispatcher looks for this exact attribute name.
            self.filter_rule = filter_rule
        self.other_priorities: Counter[str] = Counter()
        #: Priorities at which a deletion arrived (each said once, at warning).
        self.deletions_at: Counter[str] = Counter()

    def takes(self, priority: str, message: Message) -> bool:
        """Whether ``message`` goes to :meth:`info`: it came at ``info``, or it is a
        deletion that came at another priority."""
        if priority == "info":
            return True
        if message.get("event_type") not in BUS_DELETIONS:
            return False
        if not self.deletions_at[priority]:
            LOG.warning(
                "message_id=%s %s arrived at priority %s, not info: handled as a deletion "
                "(said once per priority; is the publisher's notification level changed?)",
                _message_id(message),
                message.get("event_type"),
                priority,
            )
        self.deletions_at[priority] += 1
        return True

    def info(self, messages: list[Message]) -> list[Result]:
        """One result per message, in order; REQUEUED ones go back to RabbitMQ."""
        notes = [
            Notification(
                message_id=_message_id(message),
                event_type=message.get("event_type"),
                publisher_id=message.get("publisher_id"),
                payload=message.get("payload"),
                received=message.get("received"),
                happened=events.utc_time((message.get("metadata") or {}).get("timestamp")),
            )
            for message in messages
        ]
        return self.handler.handle_batch(notes)

    def _other(self, priority: str, messages: list[Message]) -> None:
        self.other_priorities[priority] += len(messages)
        for message in messages:
            LOG.debug(
                "message_id=%s %s %s from %s: acknowledged",
                _message_id(message),
                priority,
                message.get("event_type"),
                message.get("publisher_id"),
            )

    def audit(self, messages: list[Message]) -> None:
        self._other("audit", messages)

    def debug(self, messages: list[Message]) -> None:
        self._other("debug", messages)

    def warn(self, messages: list[Message]) -> None:
        self._other("warn", messages)

    def error(self, messages: list[Message]) -> None:
        self._other("error", messages)

    def critical(self, messages: list[Message]) -> None:
        self._other("critical", messages)

    def sample(self, messages: list[Message]) -> None:
        self._other("sample", messages)


def _message_id(message: Message) -> Any:
    return (message.get("metadata") or {}).get("message_id")
