"""Logging set-up: the journal under systemd, a rotated file when ``log_file`` is set.

A log file is rotated daily in-process (as k2hr3_osnl 1.0.8 did) or, with
``log_rotation = external``, left to logrotate and reopened when it moves. With
``workers = N`` only the supervisor rotates: N processes each renaming the same file at
midnight would delete the day's log. Workers reopen the file when it moves.

Every record goes through two filters on each of our handlers, whatever logger it comes
from (ours, oslo.messaging's, kombu's...): :class:`SecretFilter` masks the password of
any ``scheme://user:password@`` URL, and :class:`FieldsFilter` adds the notification
being handled (message_id, event_type, ...) so that ``log_format = json`` can carry it.

oslo.log's options that operators carry over from other OpenStack services mean here
what they mean there: ``use_journal`` (journald's native protocol, with the priority and
the notification's fields), ``use_syslog`` (``/dev/log``, ``syslog_log_facility``) and
``log_config_append`` (a :func:`logging.config.fileConfig` file that decides handlers
and levels alone; the two filters are put on every handler it makes).
"""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import os
import re
import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import IO, Any, ClassVar

from k2hr3_osnl.core import logfields

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
#: The [DEFAULT] options :func:`setup_from` reads.
OPTIONS = (
    "debug_level",
    "libs_debug_level",
    "log_file",
    "log_format",
    "log_rotation",
    "use_journal",
    "use_syslog",
    "syslog_log_facility",
    "log_config_append",
)
#: Where syslog and journald listen; oslo.log uses the same.
SYSLOG_ADDRESS = "/dev/log"
JOURNAL_ADDRESS = "/run/systemd/journal/socket"
IDENTIFIER = "k2hr3-osnl"


class LogDestinationError(Exception):
    """A log destination that cannot be used; the message says which and why."""


#: The fields of one notification, for the edges that log about it (defined in the core,
#: whose handler sets them too).
fields = logfields.fields


class FieldsFilter(logging.Filter):
    """Copies the :func:`~k2hr3_osnl.core.logfields.fields` of the current thread onto
    each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logfields.current().items():
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


class JournalHandler(logging.Handler):
    """journald's native protocol: one datagram per record, its priority and fields."""

    def __init__(self, address: str = JOURNAL_ADDRESS) -> None:
        super().__init__()
        self.sock = _datagram(address)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {
                "MESSAGE": self.format(record),
                "PRIORITY": _JournalFormatter._PRIORITY.get(record.levelno, 6),
                "SYSLOG_IDENTIFIER": IDENTIFIER,
                "LOGGER_NAME": record.name,
            }
            for name in FIELDS:
                value = getattr(record, name, None)
                if value is not None:
                    fields[name.upper()] = value
            self.sock.send(b"".join(_journal_field(k, v) for k, v in fields.items()))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def _datagram(address: str) -> socket.socket:
    """A datagram socket connected to the local ``address``; OSError if nobody listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(address)
    except OSError:
        sock.close()
        raise
    return sock


def _journal_field(key: str, value: Any) -> bytes:
    data = str(value).encode("utf-8", "replace")
    if b"\n" in data:  # a traceback: length-prefixed, as the protocol wants
        return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return key.encode() + b"=" + data + b"\n"


def syslog_facility(name: str) -> int:
    """``LOG_LOCAL0`` (oslo.log's spelling) or ``local0``; ValueError otherwise."""
    key = name.lower().removeprefix("log_")
    try:
        return logging.handlers.SysLogHandler.facility_names[key]
    except KeyError:
        choices = ", ".join(sorted(logging.handlers.SysLogHandler.facility_names))
        raise ValueError(f"{name!r} is not a syslog facility ({choices})") from None


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
    return _screened(handler)


def _screened(handler: logging.Handler) -> logging.Handler:
    handler.addFilter(FieldsFilter())
    handler.addFilter(SecretFilter())
    return handler


def _extra_handlers(
    journal: bool, syslog: bool, facility: str, log_format: str
) -> list[logging.Handler]:
    """The journal and syslog handlers asked for; LogDestinationError if unusable."""
    found: list[logging.Handler] = []
    short = logging.Formatter("%(name)s: %(message)s") if log_format == "text" else None
    try:
        if journal:
            try:
                handler: logging.Handler = JournalHandler(JOURNAL_ADDRESS)
            except OSError as error:
                raise LogDestinationError(
                    f"cannot log to the journal ({JOURNAL_ADDRESS}): {error.strerror or error}"
                ) from None
            handler.setFormatter(short or _formatter(log_format))
            found.append(_screened(handler))
        if syslog:
            try:
                # SysLogHandler itself says nothing when /dev/log is missing (3.11),
                # and then drops every line: the operator must hear it now.
                _datagram(SYSLOG_ADDRESS).close()
                handler = logging.handlers.SysLogHandler(
                    SYSLOG_ADDRESS, facility=syslog_facility(facility)
                )
            except OSError as error:
                raise LogDestinationError(
                    f"cannot log to syslog ({SYSLOG_ADDRESS}): {error.strerror or error}"
                ) from None
            handler.ident = f"{IDENTIFIER}[{os.getpid()}]: "
            handler.setFormatter(short or _formatter(log_format))
            found.append(_screened(handler))
    except BaseException:
        for handler in found:
            handler.close()
        raise
    return found


def _from_file(path: str) -> None:
    """``log_config_append``: the file's handlers and levels, with our filters on each."""
    if not os.access(path, os.R_OK):
        raise LogDestinationError(f"log_config_append: cannot read {path}")
    try:
        logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as error:
        raise LogDestinationError(
            f"log_config_append: {path} is not a usable logging configuration "
            f"({type(error).__name__}: {error})"
        ) from None
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if not any(isinstance(f, SecretFilter) for f in handler.filters):
                _screened(handler)


def setup_from(conf: Any) -> None:
    """:func:`setup` with the ``[DEFAULT]`` logging options of a loaded configuration."""
    setup(
        conf.debug_level,
        conf.libs_debug_level,
        conf.log_file,
        conf.log_format,
        conf.log_rotation,
        journal=conf.use_journal,
        syslog=conf.use_syslog,
        facility=conf.syslog_log_facility,
        config_append=conf.log_config_append,
    )


def setup(
    debug_level: str,
    libs_debug_level: str,
    log_file: str | None,
    log_format: str = "text",
    rotation: str = "daily",
    *,
    journal: bool = False,
    syslog: bool = False,
    facility: str = "LOG_USER",
    config_append: str | None = None,
) -> None:
    """Replace the root logger's handlers with ours; call again to apply new settings.

    The new handlers are opened before the old ones are closed, so a log file that cannot
    be opened raises (OSError; LogDestinationError for the journal, syslog or a
    ``config_append`` file) and leaves logging as it was; a file that logrotate moved
    away is opened anew under its name.
    """
    if config_append:
        _from_file(config_append)  # it decides alone, as with oslo.log
        return
    check_format(log_format)
    ours, libs = level(debug_level), level(libs_debug_level)
    extra = _extra_handlers(journal, syslog, facility, log_format)
    try:
        handlers = [_handler(log_file, log_format, rotation)]
    except BaseException:
        for handler in extra:
            handler.close()
        raise
    if (
        journal
        and to_stream(log_file)
        and journal_stream(getattr(sys, STREAMS[log_file or STDERR]))
    ):
        handlers[0].close()  # the stream is the journal already: one line, not two
        handlers = []
    root = logging.getLogger()
    old = list(root.handlers)
    for handler in [*handlers, *extra]:
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
