"""How the listener forms its batches: wait to fill one only while messages queue up.

oslo.messaging's batch listener returns a batch when it is full or when
``batch_timeout`` has passed since it began. At a low rate that makes every deletion
wait for the timeout, and while idle it makes the poll thread wake up every
``batch_timeout`` for nothing. Here the first message of a batch is awaited as the plain
listener awaits any message (long, cheap waits while idle). If it was there at once,
messages are queueing (a backlog, a burst): the rest of the batch may take up to
``batch_timeout`` to arrive, and large batches keep the cost per message low. If it had
to be waited for, the rate is low: the batch is what has already arrived, and nothing
waits for company.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from oslo_messaging.notify.listener import BatchNotificationServer

LOG = logging.getLogger(__name__)

Poll = Callable[..., list[Any]]

#: A batch_timeout that means "only what is already here" (oslo.messaging reads 0 as
#: "no timeout at all").
_NO_WAIT = 1e-6


def greedy(poll: Poll) -> Poll:
    """Wrap a driver listener's ``poll(timeout, batch_size, batch_timeout)``."""

    def poll_batch(
        timeout: float | None = None, batch_size: int = 1, batch_timeout: float | None = None
    ) -> list[Any]:
        started = time.monotonic()
        first = poll(timeout=timeout, batch_size=1)
        if not first:
            return first
        batch = first
        if batch_size > 1:
            queueing = time.monotonic() - started < (batch_timeout or 0)
            wait = batch_timeout if queueing else _NO_WAIT
            batch = first + poll(batch_size=batch_size - 1, batch_timeout=wait)
        received = time.monotonic()
        for message in batch:
            # Its retry budget counts from here, not from when a worker thread is free.
            message.k2hr3_osnl_received = received
        return batch

    poll_batch.greedy = True  # type: ignore[attr-defined]
    return poll_batch


class GreedyBatchServer(BatchNotificationServer):
    """oslo.messaging's batch notification server, with :func:`greedy` batches."""

    def _create_listener(self) -> Any:
        adapter = super()._create_listener()
        # PollStyleListenerAdapter (rabbit, fake and kafka drivers) keeps the driver's
        # listener here. Should a release move it, batches are oslo.messaging's own:
        # slower at a trickle, still correct.
        listener = getattr(adapter, "_poll_style_listener", None)
        if listener is not None and callable(getattr(listener, "poll", None)):
            listener.poll = greedy(listener.poll)
        else:
            LOG.warning("oslo.messaging's listener has changed: batches wait for their timeout")
        return adapter
