"""``k2hr3-osnl publish``: send saved notifications the way OpenStack does, to try it out.

It publishes through oslo.messaging's own Notifier, exactly as neutron and nova do, to
the exchange and topic each service would use, with the configuration's
``[oslo_messaging_rabbit]`` (TLS, durable or quorum queues), so an operator can watch a
deletion go through a running daemon without deleting a VM.

oslo.messaging's Notifier never raises: a send that fails is a traceback in its log and
nothing else. So the notifier's logger is watched while each notification is sent; a
failure is one line that says why, and the exit status says something was not published.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import oslo_messaging
from oslo_config import cfg

from k2hr3_osnl.commands import formats
from k2hr3_osnl.core import events
from k2hr3_osnl.observability import logs
from k2hr3_osnl.rabbit import refusals

#: Where an event no source knows goes.
_ELSEWHERE = events.Route("openstack", "notifications", "k2hr3-osnl.publish")
#: The loggers oslo.messaging's Notifier reports a failed send on.
_NOTIFIER_LOGGERS = ("oslo_messaging.notify.messaging", "oslo_messaging.notify.notifier")
#: Attempts to reach the broker per notification: a broker that is down is a failure
#: the operator hears about, not a command that hangs.
RETRY = 1


def route(event_type: str) -> tuple[str, str]:
    exchange, topic, _ = _route(event_type)
    return exchange, topic


def _route(event_type: str) -> tuple[str, str, str]:
    """Where OpenStack publishes it (``core/events.py``'s sources), and the publisher_id
    that service would send, for a sample that has none: the daemon's publisher_id
    filter would drop any other without a word."""
    where = events.route_of(event_type) or _ELSEWHERE
    return where.exchange, where.topic, where.publisher_id


class _Failures(logging.Handler):
    """Collects what the notifier logs at ERROR while one notification is sent."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        self.errors.append(str(error) if error is not None else record.getMessage())


@contextmanager
def _watched() -> Iterator[_Failures]:
    """The notifier's failures, instead of its tracebacks on the terminal."""
    failures = _Failures()
    loggers = [logging.getLogger(name) for name in _NOTIFIER_LOGGERS]
    saved = [(logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(failures)
        logger.propagate = False
        logger.setLevel(logging.ERROR)
    try:
        yield failures
    finally:
        for logger, (propagate, level) in zip(loggers, saved, strict=True):
            logger.removeHandler(failures)
            logger.propagate = propagate
            logger.setLevel(level)


def publish(
    conf: cfg.ConfigOpts,
    paths: list[str],
    *,
    exchange: str | None = None,
    topic: str | None = None,
    driver: str = "messagingv2",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Publish every notification of ``paths``; 0 when each one was published."""
    notes = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as source:
                for document in formats.documents(source.read()):
                    notes.append((path, formats.notification(document)))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            print(f"k2hr3-osnl: {path}: cannot read it: {error}", file=err)
            return 2
    url = conf.oslo_messaging_notifications.transport_url
    transports: dict[str, oslo_messaging.Transport] = {}
    failed = 0
    try:
        for path, note in notes:
            ex, tp, publisher = _route(str(note.event_type))
            ex, tp = exchange or ex, topic or tp
            if ex not in transports:
                # A notifier publishes to the transport's default exchange.
                conf.set_override("control_exchange", ex)
                transports[ex] = oslo_messaging.get_notification_transport(conf, url=url)
                conf.clear_override("control_exchange")
            said = ""
            if not note.publisher_id:
                said = f" (the sample has no publisher_id: sent as {publisher!r})"
            notifier = oslo_messaging.Notifier(
                transports[ex],
                publisher_id=str(note.publisher_id or publisher),
                driver=driver,
                topics=[tp],
                retry=RETRY,
            )
            with _watched() as failures:
                notifier.info({}, str(note.event_type), note.payload)
            if failures.errors:
                failed += 1
                why = failures.errors[-1]
                line = refusals.explain(why) or f"RabbitMQ: {why.strip().splitlines()[0]}"
                print(f"k2hr3-osnl: {path}: not published: {logs.mask(line)}", file=err)
                continue
            print(
                f"{path}: published {note.event_type} to exchange {ex!r} topic {tp!r}{said}",
                file=out,
            )
    finally:
        for transport in transports.values():
            transport.cleanup()
    return 1 if failed else 0
