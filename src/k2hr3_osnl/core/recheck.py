"""A verification refusal is not final: re-checked after about 1, 5 and 15 minutes.

Nova or Neutron may still show a server or port for a while after the notification
(a read replica lagging, a notification racing the commit). A deletion refused because
it still exists is held on disk under ``<state_dir>/recheck`` (so it survives a restart),
checked again on :data:`SCHEDULE`, sent once OpenStack shows it gone, and dropped,
counted and logged as refused only after the last check.

The held files are :class:`~k2hr3_osnl.core.parking.Parked` records in a directory of
their own: ``first_seen`` is the first refusal, ``attempts`` the re-checks done.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from k2hr3_osnl.core.events import Delete
from k2hr3_osnl.core.parking import Parked, ParkingLot
from k2hr3_osnl.core.types import Notification

#: Seconds after the first refusal at which it is checked again; after the last, dropped.
SCHEDULE = (60.0, 300.0, 900.0)

DIRECTORY = "recheck"


def next_check(first_refused: float, checks_done: int) -> float | None:
    """When to check again (Unix time), or None: the last check is done, drop it."""
    if checks_done >= len(SCHEDULE):
        return None
    return first_refused + SCHEDULE[checks_done]


class Rechecks(ParkingLot):
    """The held refusals: a parking lot of their own, never re-sent by ``replay --parked``."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        super().__init__(state_dir)
        self.directory = Path(state_dir) / DIRECTORY
        self.clean_stale()

    def hold(self, note: Notification, delete: Delete, why: str) -> Path:
        """Hold a refused deletion for its checks; raises OSError if the disk does not take it."""
        return self.park(
            Parked(
                message_id=str(note.message_id),
                event_type=str(note.event_type),
                publisher_id=str(note.publisher_id),
                payload=note.payload,
                reason=why,
                attempts=0,
                first_seen=time.time(),
                cuk=delete.cuk,
                ips=list(delete.ips),
            )
        )

    def due(self, now: float) -> list[Parked]:
        """The held refusals whose next check is due (or that are past their last)."""
        found = []
        for item in self:
            when = next_check(item.first_seen, item.attempts)
            if when is None or when <= now:
                found.append(item)
        return found

    def checked(self, item: Parked) -> Parked:
        """Record one more check of ``item``: written anew, then the old file removed."""
        again = Parked(
            message_id=item.message_id,
            event_type=item.event_type,
            publisher_id=item.publisher_id,
            payload=item.payload,
            reason=item.reason,
            attempts=item.attempts + 1,
            first_seen=item.first_seen,
            cuk=item.cuk,
            ips=list(item.ips),
        )
        self.park(again)
        self.remove(item)
        return again
