"""What the rabbit driver says in its log, read because it says it nowhere else.

oslo.messaging's rabbit driver has no callbacks for a lost or regained connection, nor
for a body it cannot decode: it logs them, with messages that have read the same for a
decade (unlike the private objects behind them). These filters on the driver's loggers
read those lines and tell the observer; :mod:`k2hr3_osnl.observability.health` judges
what they report.
"""

from __future__ import annotations

import logging

from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.rabbit import refusals, seam

LOG = logging.getLogger(__name__)


class BrokerLogWatch(logging.Filter):
    """Tells an observer when oslo.messaging's rabbit driver loses or regains RabbitMQ.

    oslo.messaging has no connection callbacks; its rabbit driver logs each event, from
    the thread that handles it, with a fixed message: the errback of kombu's retry loop
    (``Connection failed:`` at start, ``AMQP server on ... is unreachable`` or ``...
    closed the connection`` later) and kombu's ``on_revive`` callback (``Reconnected to
    AMQP server``). These lines have read the same for a decade, unlike the private
    objects behind them, so this filter on the driver's logger reads them.

    The reconnection line is INFO, below the default ``libs_debug_level`` (warn), and a
    record below its logger's level is never even made. So the driver's logger is set to
    DEBUG, and this filter passes on only the records that the level configured for
    ``oslo_messaging`` would have let through (read at each record, so a reload that
    changes the level applies at once): the log looks exactly as before.
    """

    #: oslo.log names the driver's logger with a dot; plain logging would use the module.
    LOGGERS = seam.RABBIT_DRIVER_LOGGERS
    _LOST = ("Connection failed:", "is unreachable", "closed the connection")
    _BACK = "Reconnected to AMQP server"

    def __init__(self, observer: Observer) -> None:
        super().__init__()
        self.observer = observer
        self._loggers = [logging.getLogger(name) for name in self.LOGGERS]
        self._said: set[str] = set()

    def install(self) -> BrokerLogWatch:
        for logger in self._loggers:
            logger.addFilter(self)
            logger.setLevel(logging.DEBUG)
        return self

    def uninstall(self) -> None:
        for logger in self._loggers:
            logger.removeFilter(self)
            logger.setLevel(logging.NOTSET)

    def filter(self, record: logging.LogRecord) -> bool:
        template = str(record.msg)
        if self._BACK in template:
            self._said.clear()
            self.observer.broker_back()
        elif record.levelno >= logging.ERROR and any(m in template for m in self._LOST):
            detail = _error_text(record)
            hint = refusals.explain(detail)
            if hint is not None and hint not in self._said:
                # The driver repeats its own line at each retry (and TLS 1.3 alternates
                # two of them): each explanation once, until connected again.
                self._said.add(hint)
                LOG.error("RabbitMQ refused k2hr3-osnl: %s", hint)
            self.observer.broker_lost(hint or detail)
        parent = logging.getLogger(record.name).parent
        return parent is None or record.levelno >= parent.getEffectiveLevel()


def _error_text(record: logging.LogRecord) -> str:
    args = record.args
    if isinstance(args, dict):
        return str(args.get("err_str", "")) or "connection failed"
    if isinstance(args, tuple) and args:
        return str(args[0])
    return "connection failed"


class UndecodableWatch(logging.Filter):
    """One warning line, and a count, for a body the rabbit driver cannot even decode.

    Not JSON, not UTF-8, nested too deep: the driver fails before any dispatcher runs,
    logs ``Failed to process message ... skipping it.`` with a full traceback at ERROR,
    and rejects the message (RabbitMQ drops it, or dead-letters it if the queue has a
    dead-letter exchange). Nothing is lost that could have been acted on; the operator
    only needs to know it happened, in one line.
    """

    LOGGERS = seam.RABBIT_DRIVER_LOGGERS
    _SKIPPED = "Failed to process message"

    def __init__(self, observer: Observer) -> None:
        super().__init__()
        self.observer = observer

    def install(self) -> UndecodableWatch:
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def filter(self, record: logging.LogRecord) -> bool:
        if self._SKIPPED in str(record.msg) and record.exc_info:
            error = record.exc_info[1]
            reason = f"not a readable message ({type(error).__name__}: {str(error)[:200]})"
            record.msg, record.args = "invalid message rejected: %s", (reason,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            self.observer.unreadable(reason)
        return True
