"""Where deletions go when they cannot be delivered now: a spool of JSON files.

A parked deletion is a stale IP still in a role, so it must outlive the daemon, the
broker and a reboot, and an operator must be able to read it with ``cat``. One file per
notification under ``<state_dir>/parked``, written atomically (temporary file, fsync,
rename), is the simplest thing with those properties; it does not depend on the broker
that may be the very thing failing.

Parking is the last resort, so it must not fail on content: a payload that JSON cannot
hold is kept as text, and the deletion itself (cuk and IPs) is kept beside it, so that
``replay --parked`` can still send it.

Each file says its ``cause``, which decides what sends it again (``core/resend.py``):
an operator (``operator``: K2HR3 said 400 or 404), K2HR3 working again (``outage``),
verification working again (``verification-unavailable``), or a slow schedule
(``strikes``: K2HR3 kept refusing that cuk alone). Files written before causes existed
have none: :func:`cause_of` reads it from their reason.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_TMP = ".tmp-"
#: A temporary file this old was left by a crash mid-write, not by a write under way.
STALE_TMP_SECONDS = 3600.0


class Cause:
    """Why a deletion is parked, as written in its file."""

    OPERATOR = "operator"
    OUTAGE = "outage"
    STRIKES = "strikes"
    VERIFICATION = "verification-unavailable"
    ALL = (OPERATOR, OUTAGE, STRIKES, VERIFICATION)


def cause_for(reason: str) -> str:
    """The cause a reason text stands for (files without one, and parkings that name
    none). Anything unknown waits for an operator: the safe side."""
    text = reason.lower()
    if text.startswith("verification unavailable"):
        return Cause.VERIFICATION
    if text.startswith("retry budget spent"):
        return Cause.OUTAGE
    if text.startswith("k2hr3 failed it"):
        return Cause.STRIKES
    return Cause.OPERATOR


@dataclass
class Parked:
    """A deletion waiting for an operator (or ``replay --parked``)."""

    message_id: str
    event_type: str
    publisher_id: str
    payload: Any
    reason: str
    attempts: int
    first_seen: float
    parked_at: float = field(default_factory=time.time)
    #: The deletion decided from the payload, if one was: what replay sends.
    cuk: str | None = None
    ips: list[str] = field(default_factory=list)
    #: What may send it again (:class:`Cause`); None in files older than causes.
    cause: str | None = None
    #: Times it was sent again from here, and when last (Unix time).
    resends: int = 0
    last_resend: float | None = None
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> str:
        """Never fails on content: what JSON cannot hold is written as its ``repr``."""
        data = asdict(self)
        data.pop("path")
        return json.dumps(data, indent=1, sort_keys=True, default=repr)


_FIELDS = frozenset(f.name for f in fields(Parked)) - {"path"}


def cause_of(item: Parked) -> str:
    """Its cause: the one written in its file if known, else read from its reason."""
    if item.cause in Cause.ALL:
        return item.cause
    return cause_for(str(item.reason))


class ParkingLot:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(state_dir) / "parked"
        #: Unreadable files already reported: the re-sender reads the lot every few
        #: seconds, and one damaged file must not fill the log.
        self._reported: set[tuple[Path, float]] = set()
        self.clean_stale()

    def park(self, item: Parked) -> Path:
        """Write ``item`` durably; raises OSError only when the disk does not take it."""
        self._ensure_directory()
        # Time first so that a listing is in parking order; the random part keeps two
        # notifications without a message_id, parked in the same millisecond, apart.
        safe_id = _UNSAFE.sub("_", item.message_id)[:80]
        name = f"{int(item.parked_at * 1000):015d}-{safe_id}-{uuid.uuid4().hex[:8]}.json"
        return self._write(item, self.directory / name)

    def rewrite(self, item: Parked) -> Path:
        """Replace ``item``'s file with its new state (cause, resends), atomically: a
        crash leaves the old file or the new one, never neither."""
        assert item.path is not None, "only a file read from the lot can be rewritten"
        return self._write(item, item.path)

    def _write(self, item: Parked, target: Path) -> Path:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=_TMP)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(item.to_json())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        item.path = target
        try:
            _fsync_dir(self.directory)
        except OSError as error:
            # The file is there under its name: parking it again would make two. Only
            # the rename's survival of a power cut is in doubt now.
            LOG.warning("parked %s, but syncing %s failed: %s", target, self.directory, error)
        return target

    def _ensure_directory(self) -> None:
        if self.directory.is_dir():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # A new directory's own entry must reach the disk, or a power cut loses it and
        # every file parked in it.
        _fsync_dir(self.directory.parent)

    def clean_stale(self, now: float | None = None) -> int:
        """Remove temporary files left by a crash mid-write; returns how many."""
        if not self.directory.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - STALE_TMP_SECONDS
        removed = 0
        for path in self.directory.glob(f"{_TMP}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        if removed:
            LOG.info("removed %d unfinished parking file(s) from %s", removed, self.directory)
        return removed

    def __iter__(self) -> Iterator[Parked]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                # Fields a later release may add are left out, not a reason to fail.
                known = {k: v for k, v in data.items() if k in _FIELDS}
                yield Parked(**known, path=path)
            except (OSError, ValueError, TypeError, AttributeError) as error:
                try:
                    key = (path, path.stat().st_mtime)
                except OSError:
                    continue  # removed meanwhile (replay --parked in another process)
                if key not in self._reported:
                    self._reported.add(key)
                    LOG.error("unreadable parked file %s: %s", path, error)

    def remove(self, item: Parked) -> None:
        if item.path is not None:
            item.path.unlink(missing_ok=True)

    def count(self) -> int:
        """Read from disk each time: ``replay --parked`` empties it from another process."""
        if not self.directory.is_dir():
            return 0
        return sum(1 for _ in self.directory.glob("*.json"))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
