"""Reconciliation's decisions, with no I/O: what to ask Nova, what to delete, when to move on.

Nova remembers deleted servers, so the daemon can ask it what the message bus never
carried. These rules make that lose nothing, and cry wolf only when it happened:

- **The window.** A pass asks for servers changed since its checkpoint *minus an
  overlap*, so that a server Nova's database stamped a little before our clock said
  the last pass began (clock skew) is still seen. The first pass ever looks back
  ``initial_lookback`` seconds instead.
- **The choice.** Only servers whose status is ``DELETED`` become deletions:
  ``SOFT_DELETED`` ones can still be restored, and anything else is alive.
- **The checkpoint** becomes the time the pass began, only once every deletion it
  found was delivered or parked, and it never moves backwards.
- **A dry run never moves what a live run reads**: it keeps a checkpoint file of its
  own (:func:`checkpoint_file`), so going live after a rehearsal skips nothing.
- **Nova's clock decides, not ours.** ``now`` is the time Nova says it is (the ``Date``
  of its answer, or its services' heartbeats): a checkpoint later than that, or not a
  time at all, is said once and replaced by the first start's look-back
  (:func:`trusted`); the next checkpoint is Nova's time too, so a local clock a year
  ahead never hides a deletion.
- **A pass that could not see every cell** (a Nova cell down hides its servers) does
  not move the checkpoint: the next pass asks again from where this one began.
- **Missed means missed.** A deletion counts as one the bus lost only if the window it
  was found in began at a checkpoint (:func:`counts_as_missed`): the first pass looks
  back over a time when no listener existed.

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

#: The checkpoint a live reconciler reads and moves, in ``state_dir``...
CHECKPOINT_FILE = "reconcile-checkpoint.json"
#: ...and a dry run's own: a rehearsal that "delivered" nothing must not move the live one.
DRY_RUN_CHECKPOINT_FILE = "reconcile-checkpoint-dry-run.json"

#: 2010-01-01T00:00:00Z: no Nova existed before. A checkpoint or ``--since`` earlier is
#: not a time anyone meant (and 0 or -1e300 is no date Nova can take).
EARLIEST = 1262304000.0

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
    """Where a pass starting at ``now`` looks, given the last checkpoint (None: never).

    Never before :data:`EARLIEST`: an ``initial_lookback_seconds`` or an overlap of a
    million years asks from 2010, not from a date Nova (or Python) cannot take.
    """
    if checkpoint is None:
        return Window(max(EARLIEST, now - initial_lookback))
    # A checkpoint from the future (a clock set back) must not hide what happens now.
    return Window(max(EARLIEST, min(checkpoint, now) - overlap))


def trusted(checkpoint: float | None, now: float, overlap: float) -> tuple[float | None, str]:
    """The checkpoint a pass may start from, judged by Nova's clock ``now``, and why not.

    A checkpoint a little ahead of ``now`` (within the overlap: Nova's API nodes and
    ours are never exactly in step) is kept; one further ahead was written by a clock
    that was wrong, and trusting it would look back only the overlap for as long as it
    stays ahead. Such a value, NaN, infinity or a time before any Nova is replaced by
    the first start's look-back (``None``), with the reason for the one log line.
    """
    if checkpoint is None:
        return None, ""
    if not math.isfinite(checkpoint):
        return None, f"{checkpoint!r} is not a time"
    if checkpoint < EARLIEST:
        return None, f"{checkpoint!r} is before {iso(EARLIEST)}"
    if checkpoint > now + overlap:
        return None, f"{_shown(checkpoint)} is later than Nova's clock ({iso(now)})"
    return checkpoint, ""


def counts_as_missed(checkpoint: float | None, since: float, usual: Window) -> bool:
    """Whether what a pass from ``since`` finds, and no notification deleted, was lost.

    Only in the usual window after a checkpoint: the first pass after install (or after
    a checkpoint that could not be trusted) looks back over a time when no listener may
    have existed, and calling all of that "missed" would fire the bus-loss alert on day
    one; a ``--since`` further back finds what earlier passes already dealt with.
    """
    return checkpoint is not None and since >= usual.since


def saw_every_cell(unknown: int | None, failed: bool) -> bool:
    """Whether a pass may count its listing as complete, from Nova's list of computes.

    ``unknown``: nova-compute services Nova listed as UNKNOWN (a cell is down), None if
    it could not say; ``failed``: it could not say this time only (a 5xx). A Nova that
    can never say (too old for 2.69, a policy refusing the list) must not hold the
    checkpoint forever: that pass counts as complete, and the operator is told.
    """
    if unknown is None:
        return not failed
    return unknown == 0


def checkpoint_file(dry_run: bool) -> str:
    """The checkpoint file of a live run or of a dry run: never the same one."""
    return DRY_RUN_CHECKPOINT_FILE if dry_run else CHECKPOINT_FILE


def next_checkpoint(
    checkpoint: float | None, started: float, settled: bool, every_cell: bool = True
) -> float | None:
    """The checkpoint after a pass that began at ``started`` (Nova's clock).

    It moves only if everything the pass found was ``settled`` (delivered or parked)
    and the listing saw ``every_cell`` of Nova, and never backwards.
    """
    if not settled or not every_cell:
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


@dataclass(frozen=True, slots=True)
class Since:
    """``--since`` as given: a time (``at``) or a duration before Nova's now (``ago``)."""

    at: float | None = None
    ago: float | None = None

    def resolve(self, now: float) -> tuple[float, bool]:
        """The time to ask from, given Nova's ``now``, and whether it was moved forward.

        Nothing is older than :data:`EARLIEST`: ``1000000d`` asks from then, and says so.
        """
        wanted = now - self.ago if self.ago is not None else self.at
        if wanted is None or not math.isfinite(wanted) or wanted < EARLIEST:
            return EARLIEST, True
        return wanted, False


def _shown(when: float) -> str:
    """ISO 8601 where a date can say it (up to year 9999), the number otherwise."""
    try:
        return iso(when)
    except (OverflowError, ValueError, OSError):
        return repr(when)


def parse_since(text: str) -> Since:
    """``--since``: an ISO 8601 time (UTC unless it says) or a duration ago (``90m``).

    A duration counts back from Nova's clock, not ours (:meth:`Since.resolve`).
    Raises ValueError with a message for the operator.
    """
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return Since(ago=float(match.group(1)) * _UNIT[match.group(2)])
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2026-01-31T12:00:00Z) "
            "nor a duration (45s, 90m, 12h, 2d)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return Since(at=stamp.timestamp())
