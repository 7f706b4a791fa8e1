"""The notification a log line is about, for whoever formats the line.

The handler knows which notification it is settling (message_id, event_type, cuk...);
the log formatters in ``observability/logs.py`` put those fields on each line. The core
may not import the edges, so the fields travel down here, in a context variable the
formatters read: one per thread, and per asyncio task.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

_fields: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "k2hr3_osnl_log_fields", default=None
)


@contextlib.contextmanager
def fields(**values: Any) -> Iterator[None]:
    """Attach ``values`` to every record logged by this thread inside the block."""
    token = _fields.set({**(_fields.get() or {}), **values})
    try:
        yield
    finally:
        _fields.reset(token)


def current() -> Mapping[str, Any]:
    """The fields of the block the caller is in (empty outside any)."""
    return _fields.get() or {}
