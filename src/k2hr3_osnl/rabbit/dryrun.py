"""A dry run watches copies: it must never take a deletion from the live daemon's queue.

Notification listeners of one ``pool`` share one queue and RabbitMQ gives each message
to one of them, so a dry-run daemon on the live pool would take (and only log) every
other deletion. A dry run consumes from a queue of its own, ``<pool>-dry-run``, bound to
the same exchanges and topics: RabbitMQ puts a copy of every notification there, and the
live queue keeps them all.

A queue that nobody consumes keeps filling, so a dry-run daemon that stops cleanly
deletes its queue (unless another dry-run daemon still consumes from it).
"""

from __future__ import annotations

import logging

import kombu
from oslo_config import cfg

from k2hr3_osnl.rabbit import connection

LOG = logging.getLogger(__name__)

SUFFIX = "-dry-run"
#: The pool a dry run uses when the configuration names none (the live daemon would
#: then consume nova's and neutron's shared '<topic>.info' queues).
DEFAULT_POOL = "k2hr3_osnl"


def pool(conf: cfg.ConfigOpts) -> str | None:
    """The queue group this daemon consumes from."""
    live = conf.oslo_messaging_notifications.pool or None
    if not conf.k2hr3.dry_run:
        return live
    return f"{live or DEFAULT_POOL}{SUFFIX}"


def announce(conf: cfg.ConfigOpts) -> None:
    """Say at start what a dry run does, so nobody mistakes it for the live daemon."""
    if conf.k2hr3.dry_run:
        LOG.warning(
            "dry run: K2HR3 is not called; consuming copies of the notifications on queue "
            "%r, so the live pool %r loses nothing (the queue is deleted at a clean stop)",
            pool(conf),
            conf.oslo_messaging_notifications.pool or None,
        )


def remove_queue(conf: cfg.ConfigOpts) -> None:
    """Delete a stopped dry run's queue if no consumer is left on it; never raises."""
    name = pool(conf)
    if not conf.k2hr3.dry_run or name is None:
        return
    try:
        with _connection(conf) as connection:
            connection.default_channel.queue_delete(name, if_unused=True)
        LOG.info("dry run: deleted queue %r", name)
    except Exception as error:
        LOG.warning(
            "dry run: queue %r not deleted (%s); it keeps collecting copies until deleted "
            "with 'rabbitmqctl delete_queue %s'",
            name,
            error,
            name,
        )


def _connection(conf: cfg.ConfigOpts) -> kombu.Connection:
    """A kombu connection to the first broker of the transport URL, with its TLS."""
    return connection.connect(conf)
