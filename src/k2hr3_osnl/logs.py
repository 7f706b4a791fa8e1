"""Logging set-up: the journal under systemd, a rotated file when ``log_file`` is set."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import ClassVar

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
    "stevedore",
    "requests",
)
STDERR = "sys.stderr"


class _JournalFormatter(logging.Formatter):
    """``<N>`` priority prefixes that journald turns into levels; it adds the time itself."""

    _PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self._PRIORITY.get(record.levelno, 6)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def level(name: str) -> int:
    return _LEVELS[name.lower()]


def setup(debug_level: str, libs_debug_level: str, log_file: str | None) -> None:
    """Replace any handlers on the root logger with ours."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if log_file and log_file != STDERR:
        # The same rotation as k2hr3_osnl 1.0.8: daily, a month kept.
        handler = logging.handlers.TimedRotatingFileHandler(
            log_file, when="midnight", backupCount=31, encoding="utf-8"
        )
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s")
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        if os.environ.get("JOURNAL_STREAM"):
            handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s %(message)s")
            )
    root.addHandler(handler)
    root.setLevel(
        logging.DEBUG
        if level(debug_level) == logging.NOTSET
        else min(level(debug_level), level(libs_debug_level))
    )
    logging.getLogger("k2hr3_osnl").setLevel(level(debug_level))
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(level(libs_debug_level))
