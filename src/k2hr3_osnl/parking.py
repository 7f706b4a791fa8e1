"""Where deletions go when they cannot be delivered now: a spool of JSON files.

A parked deletion is a stale IP still in a role, so it must outlive the daemon, the
broker and a reboot, and an operator must be able to read it with ``cat``. One file per
notification under ``<state_dir>/parked``, written atomically (temporary file, fsync,
rename), is the simplest thing with those properties; it does not depend on the broker
that may be the very thing failing.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


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
    path: Path | None = field(default=None, compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("path")
        return json.dumps(data, indent=1, sort_keys=True)


class ParkingLot:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(state_dir) / "parked"

    def park(self, item: Parked) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Time first so that a listing is in parking order; the random part keeps two
        # notifications without a message_id, parked in the same millisecond, apart.
        safe_id = _UNSAFE.sub("_", item.message_id)[:80]
        name = f"{int(item.parked_at * 1000):015d}-{safe_id}-{uuid.uuid4().hex[:8]}.json"
        target = self.directory / name
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(item.to_json())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        item.path = target
        return target

    def __iter__(self) -> Iterator[Parked]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                yield Parked(**data, path=path)
            except (OSError, ValueError, TypeError) as error:
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
