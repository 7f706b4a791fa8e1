"""The oslo.messaging endpoint: priority-named methods the notification listener calls.

Deletions arrive at ``info``. The other priorities are subscribed only so that nothing
sent there piles up in our queue: they are counted, logged at debug and acknowledged.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from oslo_messaging import NotificationFilter, NotificationResult

from k2hr3_osnl.handler import Handler, Notification, Result

LOG = logging.getLogger(__name__)


class NotificationEndpoint:
    def __init__(self, handler: Handler, filter_rule: NotificationFilter | None = None) -> None:
        self.handler = handler
        if filter_rule is not None:
            # oslo.messaging's dispatcher looks for this exact attribute name.
            self.filter_rule = filter_rule
        self.other_priorities: Counter[str] = Counter()

    def info(
        self,
        ctxt: dict[str, Any],
        publisher_id: str,
        event_type: str,
        payload: Any,
        metadata: dict[str, Any],
    ) -> str | None:
        note = Notification(
            message_id=(metadata or {}).get("message_id"),
            event_type=event_type,
            publisher_id=publisher_id,
            payload=payload,
        )
        try:
            result = self.handler.handle(note)
        except Exception:
            # A bug of ours must not stop the daemon, nor loop the message on the broker.
            LOG.exception(
                "message_id=%s event_type=%s failed; acknowledged", note.message_id, event_type
            )
            return NotificationResult.HANDLED
        if result is Result.REQUEUED:
            return NotificationResult.REQUEUE
        return NotificationResult.HANDLED

    def _other(
        self, priority: str, publisher_id: str, event_type: str, metadata: dict[str, Any]
    ) -> None:
        self.other_priorities[priority] += 1
        LOG.debug(
            "message_id=%s %s %s from %s: acknowledged",
            (metadata or {}).get("message_id"),
            priority,
            event_type,
            publisher_id,
        )

    def audit(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        self._other("audit", publisher_id, event_type, metadata)

    def debug(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        self._other("debug", publisher_id, event_type, metadata)

    def warn(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        self._other("warn", publisher_id, event_type, metadata)

    def error(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        self._other("error", publisher_id, event_type, metadata)

    def critical(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        self._other("critical", publisher_id, event_type, metadata)

    def sample(self, ctxt, publisher_id, event_type, payload, metadata) -> None:
        self._other("sample", publisher_id, event_type, metadata)
