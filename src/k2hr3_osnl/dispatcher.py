"""oslo.messaging's notification dispatcher, minus its requeue loop on unreadable messages.

When oslo.messaging cannot unpack a delivered message (a ``priority`` that is null or a
number, for instance, or a ``payload`` filter applied to a payload that is not an
object), its dispatcher raises and the listener answers REQUEUE. The daemon must allow
requeueing (a stopping daemon hands back what it did not finish), so such a message
would come straight back, forever, at full speed. Found by the poison test on the real
broker; this dispatcher acknowledges it once instead, and says so.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_messaging import NotificationResult
from oslo_messaging.notify import dispatcher as _oslo_dispatcher

LOG = logging.getLogger(__name__)


class PoisonSafeDispatcher(_oslo_dispatcher.NotificationDispatcher):
    def dispatch(self, incoming: Any) -> str | None:
        try:
            return super().dispatch(incoming)
        except Exception as error:
            message = getattr(incoming, "message", None)
            message_id = message.get("message_id") if isinstance(message, dict) else None
            LOG.warning(
                "message_id=%s invalid: oslo.messaging cannot read it (%s: %s); acknowledged",
                message_id,
                type(error).__name__,
                error,
            )
            return NotificationResult.HANDLED
