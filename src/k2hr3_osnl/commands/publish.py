"""``k2hr3-osnl publish``: send saved notifications the way OpenStack does, to try it out.

It publishes through oslo.messaging's own Notifier, exactly as neutron and nova do, to
the exchange and topic each service would use, so an operator can watch a deletion go
through a running daemon without deleting a VM.
"""

from __future__ import annotations

import sys
from typing import TextIO

import oslo_messaging

from k2hr3_osnl import config
from k2hr3_osnl.commands import formats

#: Where each kind of event is published by OpenStack: (exchange, topic).
_ROUTES = (
    ("port.", ("neutron", "notifications")),
    ("compute.", ("nova", "notifications")),
    ("instance.", ("nova", "versioned_notifications")),
)


def route(event_type: str) -> tuple[str, str]:
    for prefix, where in _ROUTES:
        if event_type.startswith(prefix):
            return where
    return ("openstack", "notifications")


def publish(
    transport_url: str,
    paths: list[str],
    *,
    exchange: str | None = None,
    topic: str | None = None,
    driver: str = "messagingv2",
    out: TextIO = sys.stdout,
) -> int:
    notes = []
    for path in paths:
        with open(path, encoding="utf-8") as source:
            for document in formats.documents(source.read()):
                notes.append((path, formats.notification(document)))
    transports: dict[str, oslo_messaging.Transport] = {}
    try:
        for path, note in notes:
            where = route(str(note.event_type))
            ex, tp = exchange or where[0], topic or where[1]
            if ex not in transports:
                conf = config.new_conf()
                conf([], project=config.PROJECT, default_config_files=[], use_env=False)
                conf.set_override("control_exchange", ex)  # a notifier's exchange
                transports[ex] = oslo_messaging.get_notification_transport(conf, url=transport_url)
            notifier = oslo_messaging.Notifier(
                transports[ex],
                publisher_id=str(note.publisher_id or "k2hr3-osnl.publish"),
                driver=driver,
                topics=[tp],
            )
            notifier.info({}, str(note.event_type), note.payload)
            print(f"{path}: published {note.event_type} to exchange {ex!r} topic {tp!r}", file=out)
    finally:
        for transport in transports.values():
            transport.cleanup()
    return 0
