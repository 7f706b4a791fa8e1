"""A bounded memory of message_ids already delivered, to skip duplicate deliveries.

RabbitMQ delivers at least once: after a reconnect, a message whose K2HR3 call already
succeeded can come back. Deletes are idempotent, so this is only about not calling K2HR3
twice; a bounded window keeps memory flat however long the daemon runs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

#: Each remembered message_id costs about 200 bytes (the string, its time, the ordered
#: dict's links): 20,000 of them are 4 MB. Duplicates come within seconds (a redelivery
#: after a reconnect is at most one prefetch, 128, per consumer; a publisher's retry is
#: immediate), which 20,000 covers many times over even while a backlog drains at
#: 2,000/s; 100,000 cost 20 MB of growth on a long drain (docs/benchmarks.md).
DEFAULT_CAPACITY = 20_000


class RecentIds:
    def __init__(
        self,
        window_seconds: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        #: message_ids a worker is delivering right now, and the event that says it ended.
        self._busy: dict[str, threading.Event] = {}

    def __contains__(self, message_id: object) -> bool:
        if not self.window or not isinstance(message_id, str):
            return False
        with self._lock:
            return self._recent(message_id)

    def _recent(self, message_id: str) -> bool:
        added = self._seen.get(message_id)
        return added is not None and self._clock() - added < self.window

    def begin(self, message_id: object) -> bool:
        """Claim ``message_id`` for delivery; False if it was delivered within the window.

        Two copies of one message can arrive together (a publisher's retry, a redelivery
        racing the original): the second waits here for the first to end, and only
        calls K2HR3 itself if the first did not deliver. Pair with :meth:`end`.
        """
        if not self.window or not isinstance(message_id, str):
            return True
        while True:
            with self._lock:
                if self._recent(message_id):
                    return False
                busy = self._busy.get(message_id)
                if busy is None:
                    self._busy[message_id] = threading.Event()
                    return True
            busy.wait()

    def try_begin(self, message_id: object) -> bool | None:
        """:meth:`begin` without waiting: None if a delivery of it is under way now.

        A batch claims all its deliveries before it sends any, so it must not wait for a
        copy that another batch (or itself) holds: two batches each holding what the
        other waits for would wait forever. It retries those with :meth:`begin` once it
        holds nothing.
        """
        if not self.window or not isinstance(message_id, str):
            return True
        with self._lock:
            if self._recent(message_id):
                return False
            if message_id in self._busy:
                return None
            self._busy[message_id] = threading.Event()
            return True

    def end(self, message_id: object) -> None:
        """The delivery claimed by :meth:`begin` is over (:meth:`add` it first if it worked)."""
        if not isinstance(message_id, str):
            return
        with self._lock:
            busy = self._busy.pop(message_id, None)
        if busy is not None:
            busy.set()

    def add(self, message_id: object) -> None:
        if not self.window or not isinstance(message_id, str):
            return
        with self._lock:
            now = self._clock()
            self._seen[message_id] = now
            self._seen.move_to_end(message_id)
            while self._seen:
                oldest_id, oldest = next(iter(self._seen.items()))
                if len(self._seen) <= self.capacity and now - oldest < self.window:
                    break
                del self._seen[oldest_id]

    def __len__(self) -> int:
        return len(self._seen)
