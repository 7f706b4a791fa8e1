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


class RecentIds:
    def __init__(
        self,
        window_seconds: float,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, message_id: object) -> bool:
        if not self.window or not isinstance(message_id, str):
            return False
        with self._lock:
            added = self._seen.get(message_id)
            return added is not None and self._clock() - added < self.window

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
