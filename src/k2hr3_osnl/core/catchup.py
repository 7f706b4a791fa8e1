"""Reconciliation's decisions, with no I/O: what to ask Nova, what to delete, when to move on.

Nova remembers deleted servers, so the daemon can ask it what the message bus never
carried. Three rules make that lose nothing:

- **The window.** A pass asks for servers changed since its checkpoint *minus an
  overlap*, so that a server Nova's database stamped a little before our clock said
  the last pass began (clock skew) is still seen. The first pass ever looks back
  ``initial_lookback`` seconds instead.
- **The choice.** Only servers whose status is ``DELETED`` become deletions:
  ``SOFT_DELETED`` ones can still be restored, and anything else is alive.
- **The checkpoint** becomes the time the pass began, only once every deletion it
  found was delivered or parked, and it never moves backwards.

The reconciler (:mod:`k2hr3_osnl.reconcile.reconciler`) does the I/O around these functions.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from k2hr3_osnl.core.events import utc_time

#: The status Nova gives a server that is gone for good (``deleted`` filter on).
DELETED = "DELETED"
#: A server deleted with ``reclaim_instance_interval`` set: restorable, so kept.
SOFT_DELETED = "SOFT_DELETED"
#: The synthetic notification a found deletion travels as, through the notification path.
EVENT_TYPE = "k2hr3_osnl.reconcile.server.deleted"
PUBLISHER_ID = "k2hr3_osnl.reconcile"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Window:
    """Ask Nova for servers changed at or after ``since`` (Unix time)."""

    since: float

    @property
    def changes_since(self) -> str:
        """``since`` as Nova's ``changes-since`` wants it: ISO 8601, UTC."""
        return iso(self.since)


def window(checkpoint: float | None, now: float, overlap: float, initial_lookback: float) -> Window:
    """Where a pass starting at ``now`` looks, given the last checkpoint (None: never)."""
    if checkpoint is None:
        return Window(now - initial_lookback)
    # A checkpoint from the future (a clock set back) must not hide what happens now.
    return Window(min(checkpoint, now) - overlap)


def next_checkpoint(checkpoint: float | None, started: float, settled: bool) -> float | None:
    """The checkpoint after a pass that began at ``started``.

    It moves only if everything the pass found was ``settled`` (delivered or parked),
    and never backwards.
    """
    if not settled:
        return checkpoint
    return started if checkpoint is None else max(checkpoint, started)


@dataclass(frozen=True, slots=True)
class Found:
    """One deleted server to remove from K2HR3, by cuk alone."""

    cuk: str
    #: Unix time Nova says it was deleted (``OS-SRV-USG:terminated_at``), if it says.
    terminated_at: float | None = None


def deletions(servers: Iterable[Any]) -> list[Found]:
    """The servers of one page of ``GET /servers/detail`` that are gone for good.

    Anything that is not a well-formed server with a UUID is left out: it cannot be
    acted on, and a bad entry must not stop the others.
    """
    found: list[Found] = []
    seen: set[str] = set()
    for server in servers:
        if not isinstance(server, Mapping) or server.get("status") != DELETED:
            continue
        cuk = server.get("id")
        if isinstance(cuk, str) and _UUID.fullmatch(cuk) and cuk not in seen:
            seen.add(cuk)
            found.append(Found(cuk, utc_time(server.get("OS-SRV-USG:terminated_at"))))
    return found


def notification(found: Found) -> tuple[str, str, str, dict[str, str]]:
    """``(message_id, event_type, publisher_id, payload)`` of a found deletion.

    The message_id is the same each time the server is found, so a server found again
    by the next pass's overlap is a duplicate within the duplicate window.
    """
    return f"reconcile-{found.cuk}", EVENT_TYPE, PUBLISHER_ID, {"uuid": found.cuk}


def iso(when: float) -> str:
    """Whole seconds, rounded down: asking from a little earlier loses nothing."""
    stamp = datetime.datetime.fromtimestamp(math.floor(when), datetime.UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_since(text: str, now: float) -> float:
    """``--since``: an ISO 8601 time (UTC unless it says) or a duration ago (``90m``).

    Raises ValueError with a message for the operator.
    """
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-01-31T12:00:00Z) "
            "nor a duration (45s, 90m, 12h, 2d)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()
