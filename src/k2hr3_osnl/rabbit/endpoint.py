"""The oslo.messaging endpoint: priority-named methods the batch listener calls.

Deletions arrive at ``info``, a batch at a time: their K2HR3 calls go out together and
the batch is acknowledged once each of them is settled. The other priorities are
subscribed only so that nothing sent there piles up in our queue: they are counted,
logged at debug and acknowledged.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from oslo_messaging import NotificationFilter

from k2hr3_osnl.core.events import utc_time
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.types import Notification, Result

LOG = logging.getLogger(__name__)

#: What oslo.messaging hands an endpoint for each notification of a batch.
Message = dict[str, Any]


class NotificationEndpoint:
    def __init__(self, handler: Handler, filter_rule: NotificationFilter | None = None) -> None:
        self.handler = handler
        if filter_rule is not None:
            # oslo.messaging's dispatcher looks for this exact attribute name.
            self.filter_rule = filter_rule
        self.other_priorities: Counter[str] = Counter()

    def info(self, messages: list[Message]) -> list[Result]:
        """One result per message, in order; REQUEUED ones go back to RabbitMQ."""
        notes = [
            Notification(
                message_id=_message_id(message),
                event_type=message.get("event_type"),
                publisher_id=message.get("publisher_id"),
                payload=message.get("payload"),
                received=message.get("received"),
                happened=utc_time((message.get("metadata") or {}).get("timestamp")),
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
