"""A dry run watches copies: it must never take a deletion from the live daemon's queue.

Notification listeners of one ``pool`` share one queue and RabbitMQ gives each message
to one of them, so a dry-run daemon on the live pool would take (and only log) every
other deletion. A dry run consumes from a queue of its own, ``<pool>-dry-run``, bound to
the same exchanges and topics: RabbitMQ puts a copy of every notification there, and the
live queue keeps them all.

A queue that nobody consumes keeps filling, so a dry-run daemon that stops cleanly
deletes its queue (unless another dry-run daemon still consumes from it). One killed
uncleanly cannot, so the queue carries its own limits (:func:`prepare`): RabbitMQ
deletes it after :data:`EXPIRES_MS` without a consumer, and keeps at most
:data:`MAX_LENGTH` copies meanwhile (the oldest go first). A dry run only logs: losing
old copies costs nothing.
"""

from __future__ import annotations

import logging

import amqp.exceptions
import kombu
from oslo_config import cfg

from k2hr3_osnl.rabbit import connection, seam

LOG = logging.getLogger(__name__)

SUFFIX = "-dry-run"
#: The pool a dry run uses when the configuration names none (the live daemon would
#: then consume nova's and neutron's shared '<topic>.info' queues).
DEFAULT_POOL = "k2hr3_osnl"
#: A dry run's queue without a consumer for an hour is deleted by RabbitMQ...
EXPIRES_MS = 3_600_000
#: ...and holds at most this many copies until then.
MAX_LENGTH = 10_000


def arguments() -> dict[str, int]:
    """The queue arguments a dry run's queue is declared with."""
    return {"x-expires": EXPIRES_MS, "x-max-length": MAX_LENGTH}


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


def prepare(conf: cfg.ConfigOpts) -> None:
    """Before consuming: the dry run's queue gets its expiry and length limit.

    A queue of that name left by an earlier release (or a killed dry run of one) has
    other arguments, and RabbitMQ refuses to declare it anew: it is deleted first if
    nobody consumes it. If a dry run still does, ours consumes it as it is. Never raises.
    """
    name = pool(conf)
    if not conf.k2hr3.dry_run or name is None:
        return
    try:
        fits = _fits(conf, name)
    except Exception as error:  # the broker is not there yet: the listener waits for it
        LOG.debug("dry run: queue %r not checked (%s)", name, error)
        fits = True
    if not fits:
        LOG.warning(
            "dry run: queue %r, consumed by another dry run, has no expiry or length "
            "limit: declared as it is",
            name,
        )
        return
    if not seam.add_queue_arguments(name, arguments()):
        LOG.warning(
            "dry run: oslo.messaging %s declares queues elsewhere: queue %r gets no expiry "
            "or length limit (delete it with 'rabbitmqctl delete_queue %s' after an unclean stop)",
            seam.version(),
            name,
            name,
        )


def _fits(conf: cfg.ConfigOpts, name: str) -> bool:
    """False only if ``name`` exists with other arguments and a consumer keeps it."""
    with _connection(conf) as connection:
        try:
            connection.channel().queue_declare(name, passive=True)
        except amqp.exceptions.NotFound:
            return True
        rabbit = conf.oslo_messaging_rabbit
        durable = rabbit.amqp_durable_queues or rabbit.rabbit_quorum_queue
        # What the driver adds of its own, so that a queue of ours compares equal.
        wanted: dict[str, object] = dict(arguments())
        if rabbit.rabbit_quorum_queue:
            wanted["x-queue-type"] = "quorum"
        if getattr(rabbit, "rabbit_ha_queues", False):
            wanted["x-ha-policy"] = "all"
        try:
            connection.channel().queue_declare(
                name, durable=durable, auto_delete=rabbit.amqp_auto_delete, arguments=wanted
            )
            return True
        except amqp.exceptions.PreconditionFailed:
            pass
        try:
            connection.channel().queue_delete(name, if_unused=True)
        except amqp.exceptions.PreconditionFailed:
            return False
        LOG.info("dry run: deleted queue %r, declared without expiry by an earlier run", name)
        return True


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
