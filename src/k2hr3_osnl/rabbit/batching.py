"""How the listener forms its batches: of what is already arriving, never waiting for it.

oslo.messaging's batch listener returns a batch when it is full or when
``batch_timeout`` has passed since it began. At a low rate that makes every deletion
wait for the timeout, and while idle it makes the poll thread wake up every
``batch_timeout`` for nothing. Here the first message of a batch is awaited as the plain
listener awaits any message (long, cheap waits while idle). If it had to be waited for,
the rate is low: the batch is what has already arrived. If it was there at once,
messages are queueing (a backlog, a burst): the batch takes the messages that are
already there (unpacked, buffered or on the socket, as the seam sees it), each given
:data:`GAP_SECONDS` to be read, and closes when nothing more is there, when full, or
after ``batch_timeout``. A busy topic (300 messages/s, mostly not deletions) or a burst
arriving a message at a time thus never makes a deletion wait for its batch to fill,
while a backlog still comes in full batches (docs/benchmarks.md).
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

#: How long a filling batch gives its next message to arrive and be read: one already
#: on the socket is read well within it (its three frames, in Python, on a busy
#: machine); one that is not on its way yet is not waited for. 0.1 ms was too short to
#: read one, and cut a backlog's batches short (a third slower drain).
GAP_SECONDS = 0.0003

#: A first message taken within this long was already there: messages are queueing.
#: One awaited longer came on its own (at 300 messages/s, 3 ms apart).
QUEUED_SECONDS = 0.001


def greedy(poll: Poll, ready: Callable[[], bool] | None = None) -> Poll:
    """Wrap a driver listener's ``poll(timeout, batch_size, batch_timeout)``.

    ``ready()`` says whether another message is already there; without it (another
    driver) each next message is given :data:`GAP_SECONDS` to arrive.
    """

    def poll_batch(
        timeout: float | None = None, batch_size: int = 1, batch_timeout: float | None = None
    ) -> list[Any]:
        started = time.monotonic()
        first = poll(timeout=timeout, batch_size=1)
        if not first:
            return first
        batch = list(first)
        limit = started + (batch_timeout or 0)
        queueing = time.monotonic() - started < QUEUED_SECONDS
        while len(batch) < batch_size:
            if not queueing:
                # It had to be waited for: the rate is low; take only what is here.
                batch += poll(batch_size=batch_size - len(batch), batch_timeout=_NO_WAIT)
                break
            # One message at a time, each given GAP_SECONDS to be read: a backlog's are
            # already on the socket; a burst's next one is not waited for.
            if ready is not None and not ready():
                break
            more = poll(batch_size=1, batch_timeout=GAP_SECONDS)
            batch += more
            if not more or time.monotonic() >= limit:
                break
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
    a trickle wait for ``batch_timeout``, and a backlog drained slower than with greedy
    batches (docs/benchmarks-history.md, "Changes made for speed"), so the
    poll is wrapped, through the seam.
    """

    wrap_poll = staticmethod(greedy)
