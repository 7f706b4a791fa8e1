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

from k2hr3_osnl.rabbit import seam

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


class GreedyBatchServer(seam.PollWrappingBatchServer):
    """oslo.messaging's batch notification server, with :func:`greedy` batches.

    oslo.messaging's own batching (a plain BatchNotificationServer) made every message at
    a trickle wait for ``batch_timeout`` and drained a backlog at 1,620/s where greedy
    batches drain 1,850/s (docs/benchmarks.md), so the poll is wrapped, through the seam.
    """

    wrap_poll = staticmethod(greedy)
