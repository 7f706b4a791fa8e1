"""Which cuks left K2HR3 whole, recently: so reconciliation does not delete them twice.

The duplicate window (:mod:`k2hr3_osnl.core.recent`) knows message_ids, but a server that
reconciliation finds in Nova was deleted by a notification with another message_id, or
by an earlier pass. This memory is fed by the handler's observer hook ``forgot``: every deletion by
cuk alone (an instance deletion, never a port's) that K2HR3 accepted is remembered for
``window`` seconds, at most ``capacity`` of them (about 150 bytes each).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from k2hr3_osnl.core.events import Delete
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.types import Result

#: More than a pass over 10,000 deleted servers finds, at 7.5 MB at most.
DEFAULT_CAPACITY = 50_000


def deleted_whole(delete: Delete | None, result: Result | None) -> str | None:
    """The cuk K2HR3 just lost whole (an instance deletion it accepted), else None.

    The handler asks this of the decision it acted on: nothing is parsed again.
    """
    if result is Result.DELETED and delete is not None and not delete.ips:
        return delete.cuk
    return None


class DeletedCuks(Observer):
    def __init__(
        self,
        window: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.base_window = window
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def forgot(self, cuk: str) -> None:
        self.add(cuk)

    def add(self, cuk: str) -> None:
        with self._lock:
            now = self._clock()
            self._seen[cuk] = now
            self._seen.move_to_end(cuk)
            while self._seen:
                oldest_cuk, oldest = next(iter(self._seen.items()))
                if len(self._seen) <= self.capacity and now - oldest < self.window:
                    break
                del self._seen[oldest_cuk]

    def cover(self, seconds: float) -> None:
        """Remember at least ``seconds`` back: what a pass asks Nova about, twice over.

        While a down cell holds the checkpoint, each pass asks from further back; a cuk
        a notification deleted within that window must still cost no call and count as
        no miss, so the memory stretches with the window and shrinks back after it.
        """
        self.window = max(self.base_window, seconds)

    def __contains__(self, cuk: object) -> bool:
        with self._lock:
            added = self._seen.get(cuk) if isinstance(cuk, str) else None
            return added is not None and self._clock() - added < self.window

    def __len__(self) -> int:
        return len(self._seen)
