"""A bounded memory of deliveries already made, to skip duplicate deliveries.

RabbitMQ delivers at least once: after a reconnect, a message whose K2HR3 call already
succeeded can come back. Deletes are idempotent, so this is only about not calling K2HR3
twice; a bounded window keeps memory flat however long the daemon runs. A delivery is
keyed by its message_id *and* its deletion (the handler's ``key``), so a publisher
reusing a message_id for another deletion is never skipped. Publishers choose
message_ids, so a long key is remembered by its digest: an entry costs the same
whatever a publisher sends.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

#: Each remembered delivery costs about 200 bytes (the key, its time, the ordered dict's
#: links): 20,000 of them are 4 MB. Duplicates come within seconds (a redelivery after a
#: reconnect is at most one prefetch, 128, per consumer; a publisher's retry is
#: immediate), which 20,000 covers many times over even while a backlog drains at
#: 1,800/s; 100,000 made RSS grow by 21 MB over a long drain (docs/benchmarks-history.md).
DEFAULT_CAPACITY = 20_000

#: A key longer than this is remembered by a 16-byte digest.
LONGEST_KEPT = 64


def _key(delivery: str) -> str | bytes:
    if len(delivery) <= LONGEST_KEPT:
        return delivery
    return hashlib.blake2b(delivery.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class RecentDeliveries:
    """The deliveries made within ``window_seconds`` (at most ``capacity``), and those
    under way now."""

    def __init__(
        self,
        window_seconds: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str | bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        #: Deliveries a worker is making right now, and the event that says each ended.
        self._busy: dict[str | bytes, threading.Event] = {}

    def __contains__(self, delivery: object) -> bool:
        if not self.window or not isinstance(delivery, str):
            return False
        with self._lock:
            return self._recent(_key(delivery))

    def _recent(self, key: str | bytes) -> bool:
        added = self._seen.get(key)
        return added is not None and self._clock() - added < self.window

    def begin(self, delivery: object, timeout: float | None = None) -> bool | None:
        """Claim ``delivery`` (its key); False if it was delivered within the window.

        Two copies of one message can arrive together (a publisher's retry, a redelivery
        racing the original): the second waits here for the first to end, and only
        calls K2HR3 itself if the first did not deliver. None if the first is still
        under way after ``timeout`` seconds. Pair a True with :meth:`end`.
        """
        if not self.window or not isinstance(delivery, str):
            return True
        key = _key(delivery)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._recent(key):
                    return False
                busy = self._busy.get(key)
                if busy is None:
                    self._busy[key] = threading.Event()
                    return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            busy.wait(left)

    def try_begin(self, delivery: object) -> bool | None:
        """:meth:`begin` without waiting: None if a delivery of it is under way now.

        A batch claims all its deliveries before it sends any, so it must not wait for a
        copy that another batch (or itself) holds: two batches each holding what the
        other waits for would wait forever. It retries those with :meth:`begin` once it
        holds nothing.
        """
        if not self.window or not isinstance(delivery, str):
            return True
        key = _key(delivery)
        with self._lock:
            if self._recent(key):
                return False
            if key in self._busy:
                return None
            self._busy[key] = threading.Event()
            return True

    def end(self, delivery: object) -> None:
        """The delivery claimed by :meth:`begin` is over (:meth:`add` it first if it worked)."""
        if not isinstance(delivery, str):
            return
        with self._lock:
            busy = self._busy.pop(_key(delivery), None)
        if busy is not None:
            busy.set()

    def add(self, delivery: object) -> None:
        if not self.window or not isinstance(delivery, str):
            return
        key = _key(delivery)
        with self._lock:
            now = self._clock()
            self._seen[key] = now
            self._seen.move_to_end(key)
            while self._seen:
                oldest_id, oldest = next(iter(self._seen.items()))
                if len(self._seen) <= self.capacity and now - oldest < self.window:
                    break
                del self._seen[oldest_id]

    def __len__(self) -> int:
        return len(self._seen)
