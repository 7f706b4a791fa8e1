"""Two places where oslo.messaging's notification listener could hold or loop a message.

Both were found by the end-to-end tests on the real broker (tests/test_rabbitmq_*.py).

When oslo.messaging cannot unpack a delivered message (a ``priority`` that is null or a
number, for instance, or a ``payload`` filter applied to a payload that is not an
object), its dispatcher raises and the listener requeues the whole batch. The daemon must allow
requeueing (a stopping daemon hands back what it did not finish), so such a message
would come straight back, forever, at full speed, and take its batch with it.
:class:`PoisonSafeDispatcher` acknowledges it once instead, and says so.
The other, a redelivered copy skipped unacknowledged, is turned off by
:func:`k2hr3_osnl.rabbit.seam.let_redeliveries_through`.
:class:`k2hr3_osnl.rabbit.driverlog.UndecodableWatch` reports what never reaches a
dispatcher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from k2hr3_osnl.core import handler as _handler
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.types import Result, acknowledges
from k2hr3_osnl.rabbit import seam

LOG = logging.getLogger(__name__)


class PoisonSafeDispatcher(seam.BatchDispatcher):
    """Hands a batch to the endpoint; says which of its messages go back to RabbitMQ.

    oslo.messaging's own batch dispatcher requeues the whole batch when one message
    cannot be read, or when the endpoint asks for it: here each message is judged alone.
    """

    def __init__(self, endpoint: Any, observer: Observer | None = None) -> None:
        super().__init__([endpoint], None)
        self.endpoint = endpoint
        self.observer = observer or Observer()

    def dispatch(
        self, incoming: list[Any], acknowledge_now: Callable[[list[Any]], None] | None = None
    ) -> set[Any]:
        """The messages to hand back to RabbitMQ; oslo.messaging acknowledges the rest.

        Each message gets a result here, and :func:`acknowledges` alone decides: one
        that got none, because something of ours failed, goes back (after a pause, so
        that a bug does not loop fast on the broker), never acknowledged. Those settled
        before any K2HR3 call (filtered out, unreadable, another priority) are handed
        to ``acknowledge_now`` first, so they do not wait for the batch's deletions.
        """
        results: dict[Any, Result | None] = {}
        try:
            infos: list[tuple[Any, dict[str, Any]]] = []
            for raw in incoming:
                read = self._read(raw)
                if isinstance(read, Result):
                    results[raw] = read
                elif self.endpoint.takes(*read):
                    infos.append((raw, read[1]))
                else:
                    getattr(self.endpoint, read[0])([read[1]])
                    results[raw] = Result.IGNORED
            if infos and acknowledge_now is not None:
                acknowledge_now([raw for raw, result in results.items() if acknowledges(result)])
            if infos:
                answers = self.endpoint.info([message for _, message in infos])
                for (raw, _), result in zip(infos, answers, strict=True):
                    results[raw] = result
        except Exception:
            unsettled = sum(1 for raw in incoming if not acknowledges(results.get(raw)))
            LOG.exception(
                "a batch of %d notifications failed; %d handed back to RabbitMQ",
                len(incoming),
                unsettled,
            )
            time.sleep(_handler.PARK_FAILURE_PAUSE)
        return {raw for raw in incoming if not acknowledges(results.get(raw))}

    def _read(self, raw: Any) -> Result | tuple[str, dict[str, Any]]:
        """``(priority, message)`` for the endpoint, or the result of one that needs none."""
        try:
            priority, message = seam.read_message(self, raw)
            if priority not in seam.PRIORITIES:
                LOG.warning(
                    'message_id=%s: unknown priority "%s"; acknowledged', _id(raw), priority
                )
                return Result.INVALID
            screen = getattr(self.endpoint, "filter_rule", None)
            if screen is not None and not screen.match(
                message["ctxt"],
                message["publisher_id"],
                message["event_type"],
                message["metadata"],
                message["payload"],
            ):
                return Result.IGNORED
        except Exception as error:
            reason = f"oslo.messaging cannot read it ({type(error).__name__}: {error})"
            LOG.warning("message_id=%s invalid: %s; acknowledged", _id(raw), reason)
            self.observer.unreadable(reason)
            return Result.INVALID
        message["received"] = getattr(raw, "k2hr3_osnl_received", None)
        return priority, message


def _id(raw: Any) -> Any:
    message = getattr(raw, "message", None)
    return message.get("message_id") if isinstance(message, dict) else None
