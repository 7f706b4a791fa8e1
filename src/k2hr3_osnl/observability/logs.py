"""Logging set-up: the journal under systemd, a rotated file when ``log_file`` is set.

A log file is rotated daily in-process (as k2hr3_osnl 1.0.8 did) or, with
``log_rotation = external``, left to logrotate and reopened when it moves. With
``workers = N`` only the supervisor rotates: N processes each renaming the same file at
midnight would delete the day's log. Workers reopen the file when it moves.

Every record goes through two filters on our one handler, whatever logger it comes
from (ours, oslo.messaging's, kombu's...): :class:`SecretFilter` masks the password of
any ``scheme://user:password@`` URL, and :class:`FieldsFilter` adds the notification
being handled (message_id, event_type, ...) so that ``log_format = json`` can carry it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.handlers
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from typing import IO, Any, ClassVar

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "notset": logging.NOTSET,
}
#: Loggers of the libraries underneath, governed by ``libs_debug_level``.
LIBRARIES = (
    "oslo_messaging",
    "oslo.messaging",
    "oslo_config",
    "kombu",
    "amqp",
    "urllib3",
    "aiohttp",
    "stevedore",
    "requests",
    "keystoneauth",
)
STDERR = "sys.stderr"
#: ``log_file`` values that name one of our standard streams rather than a file.
#: ``sys.stdout`` is in k2hr3_osnl 1.0.8's generic sample (1.0.8 opened a file of that
#: name in its working directory; under systemd both streams reach the journal).
STREAMS = {STDERR: "stderr", "sys.stdout": "stdout"}
#: The named formats; any other ``log_format`` is a ``%``-style logging format string,
#: as k2hr3_osnl 1.0.8's generic sample carried it.
FORMATS = ("text", "json")
ROTATIONS = ("daily", "external")
#: False in a worker process: another process (the supervisor) rotates the file.
_may_rotate = True
#: What a JSON line may carry besides time, level, logger and message, when known.
FIELDS = (
    "message_id",
    "event_type",
    "publisher_id",
    "cuk",
    "ips",
    "outcome",
    "status",
    "attempt",
    "duration",
)
_TEXT = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"

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


class FieldsFilter(logging.Filter):
    """Copies the :func:`fields` of the current thread onto each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_fields.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


#: ``scheme://user:password@`` (and ``,user:password@`` of the next host in a multi-host
#: transport URL): the user stays, the password goes.
_URL_PASSWORD = re.compile(r"((?:\w://|,)[^:/?#@\s'\",]*):[^@\s'\"/]+@")


def mask(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1:***@", text)


class SecretFilter(logging.Filter):
    """A safety net: no URL password reaches a log line, whichever library logs it.

    oslo.messaging and kombu log transport URLs with the password replaced, but a stray
    ``repr`` or exception text at debug level is one refactoring away.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as error:
            # A log call whose arguments do not fit its format: a filter that raised
            # would take the caller down with it. The line is kept, and says so.
            message = f"{record.msg} {record.args!r} (malformed log call: {error})"
            record.msg, record.args = message, None
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


class _JournalFormatter(logging.Formatter):
    """``<N>`` priority prefixes that journald turns into levels; it adds the time itself."""

    _PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self._PRIORITY.get(record.levelno, 6)}>"
        return prefix + self.inner.format(record).replace("\n", "\n" + prefix)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; a traceback stays inside its line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _isotime(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = round(value, 6) if isinstance(value, float) else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


def _isotime(created: float) -> str:
    local = time.localtime(created)
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{millis:03d}" + _offset(local)


def _offset(local: time.struct_time) -> str:
    minutes = (local.tm_gmtoff or 0) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def level(name: str) -> int:
    value = _LEVELS[name.lower()]
    # "notset" means everything: as debug.
    return logging.DEBUG if value == logging.NOTSET else value


def to_stream(log_file: str | None) -> bool:
    """True when ``log_file`` means a standard stream (the terminal, or the journal)."""
    return not log_file or log_file in STREAMS


def check_format(log_format: str) -> str:
    """``log_format`` itself, or ValueError: a named format or a usable format string.

    A format string is tried on a plain record, so that a field no record carries
    (``%(bogus)s``) is refused at start, not as a traceback on every line.
    """
    if log_format in FORMATS:
        return log_format
    problem = f"{log_format!r} is neither text, json nor a logging format string"
    try:
        formatter = logging.Formatter(log_format, validate=True)
        formatter.format(logging.LogRecord("k2hr3_osnl", logging.INFO, "", 0, "m", None, None))
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{problem} ({error})") from None
    return log_format


def journal_stream(stream: IO[str] = sys.stderr, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``stream`` is systemd's journal stream, as ``$JOURNAL_STREAM`` says.

    The variable is inherited by children whose stderr may go elsewhere, so systemd asks
    to compare its ``device:inode`` with the stream itself.
    """
    expected = environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(_TEXT if log_format == "text" else log_format)


def _handler(log_file: str | None, log_format: str, rotation: str) -> logging.Handler:
    handler: logging.Handler
    formatter = _formatter(log_format)
    if log_file and not to_stream(log_file):
        if rotation == "daily" and _may_rotate:
            # The same rotation as k2hr3_osnl 1.0.8: daily, a month kept.
            handler = logging.handlers.TimedRotatingFileHandler(
                log_file, when="midnight", backupCount=31, encoding="utf-8"
            )
        else:
            # Reopened under its name whenever someone else moved it.
            handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
    else:
        stream = getattr(sys, STREAMS[log_file or STDERR])
        handler = logging.StreamHandler(stream)
        if journal_stream(stream):
            if log_format == "text":
                # journald stamps the time and the pid itself. A format string the
                # operator wrote is kept as written.
                formatter = logging.Formatter("%(name)s: %(message)s")
            formatter = _JournalFormatter(formatter)
    handler.setFormatter(formatter)
    handler.addFilter(FieldsFilter())
    handler.addFilter(SecretFilter())
    return handler


def setup(
    debug_level: str,
    libs_debug_level: str,
    log_file: str | None,
    log_format: str = "text",
    rotation: str = "daily",
) -> None:
    """Replace the root logger's handlers with ours; call again to apply new settings.

    The new handler is opened before the old one is closed, so a log file that cannot
    be opened raises (OSError) and leaves logging as it was; a file that logrotate moved
    away is opened anew under its name.
    """
    check_format(log_format)
    ours, libs = level(debug_level), level(libs_debug_level)
    handler = _handler(log_file, log_format, rotation)
    root = logging.getLogger()
    old = list(root.handlers)
    root.addHandler(handler)
    for previous in old:
        root.removeHandler(previous)
        previous.close()
    # Any logger we do not list inherits from the root: the libraries' level.
    root.setLevel(libs)
    logging.getLogger("k2hr3_osnl").setLevel(ours)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(libs)


def leave_rotation_to_parent() -> None:
    """In a worker: never rotate the log file, reopen it when the supervisor does."""
    global _may_rotate
    _may_rotate = False
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, logging.handlers.TimedRotatingFileHandler):
            new = logging.handlers.WatchedFileHandler(old.baseFilename, encoding="utf-8")
            new.setFormatter(old.formatter)
            for screen in old.filters:
                new.addFilter(screen)
            root.addHandler(new)
            root.removeHandler(old)
            old.close()


def rotate_if_due() -> None:
    """Rotate a daily log at midnight even if this process logs nothing then."""
    for handler in logging.getLogger().handlers:
        rotating = isinstance(handler, logging.handlers.TimedRotatingFileHandler)
        if rotating and time.time() >= handler.rolloverAt:
            handler.acquire()
            try:
                handler.doRollover()
            finally:
                handler.release()


def open_streams() -> list[IO[str]]:
    """The files our handlers write to, for python-daemon to keep open when detaching."""
    return [
        stream
        for handler in logging.getLogger().handlers
        if (stream := getattr(handler, "stream", None)) is not None
    ]
