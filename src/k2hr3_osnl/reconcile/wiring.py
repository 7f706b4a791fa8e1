"""What ``[service_credentials]`` adds to a daemon: verification and reconciliation.

Without ``auth_type`` nothing here happens and the daemon is exactly the listener.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from oslo_config import cfg

from k2hr3_osnl.core.delivered import DeletedCuks
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.openstack import session
from k2hr3_osnl.rabbit import connection, dryrun
from k2hr3_osnl.rabbit.election import HEARTBEAT, SUFFIX, Companion, Election, identity
from k2hr3_osnl.rabbit.shared import SUFFIX as DELIVERED
from k2hr3_osnl.rabbit.shared import SharedDeliveries
from k2hr3_osnl.reconcile.recheck import Rechecker
from k2hr3_osnl.reconcile.reconciler import Checkpoint, Reconciler
from k2hr3_osnl.reconcile.verify import CloudVerifier
from k2hr3_osnl.reconcile.view import check_view

LOG = logging.getLogger(__name__)


def memory_window(conf: cfg.ConfigOpts) -> float:
    """How long a cuk deleted whole is remembered: the duplicate window, or longer.

    A pass finds again what the previous one found in its overlap, up to an interval
    and an overlap later; those must not cost a call or count as missed.
    """
    r = conf.reconcile
    return max(conf.k2hr3.duplicate_window_seconds, 2 * (r.interval_seconds + r.overlap_seconds))


@dataclass(frozen=True)
class Deliveries:
    """What a reconciler must hear from the handler before it is built: the cuks
    deleted whole here and, with an election, by every other process of the pool."""

    memory: DeletedCuks
    shared: SharedDeliveries | None = None

    @property
    def observers(self) -> tuple[Observer, ...]:
        return (self.memory,) if self.shared is None else (self.memory, self.shared)


def reconciling(conf: cfg.ConfigOpts) -> bool:
    """``[reconcile] enabled`` with an account to ask Nova with."""
    return bool(session.configured(conf) and conf.reconcile.enabled)


def elects(conf: cfg.ConfigOpts) -> bool:
    """Whether this process takes part in the pool's election (never a dry run)."""
    return bool(conf.reconcile.leader_election and not conf.k2hr3.dry_run)


def deliveries(conf: cfg.ConfigOpts, elect: bool | None = None) -> Deliveries:
    """The memory a reconciler reads, for the handler to feed from its first message."""
    memory = DeletedCuks(memory_window(conf))
    if not (elects(conf) if elect is None else elect):
        return Deliveries(memory)
    # What every other process of the pool deleted counts as delivered here too.
    shared = SharedDeliveries(
        f"{pool_of(conf)}{DELIVERED}", memory, identity(), durable=durable(conf)
    )
    return Deliveries(memory, shared)


def make_reconciler(
    conf: cfg.ConfigOpts, cloud: session.Cloud, handler: Handler, fed: Deliveries
) -> Reconciler:
    """A reconciler reading what ``handler`` feeds ``fed``; with ``fed.shared``, one that
    runs passes only while it holds the pool's token."""
    r = conf.reconcile
    checkpoint = Checkpoint(conf.k2hr3.state_dir, dry_run=conf.k2hr3.dry_run)
    leadership = None
    if fed.shared is not None:
        leadership = election(conf, handler.observer, checkpoint, (fed.shared,))
    return Reconciler(
        cloud,
        handler,
        fed.memory,
        checkpoint,
        overlap=r.overlap_seconds,
        initial_lookback=r.initial_lookback_seconds,
        page_size=r.page_size,
        leadership=leadership,
    )


def pool_of(conf: cfg.ConfigOpts) -> str:
    return conf.oslo_messaging_notifications.pool or dryrun.DEFAULT_POOL


def quorum(conf: cfg.ConfigOpts) -> bool:
    return bool(getattr(conf.oslo_messaging_rabbit, "rabbit_quorum_queue", False))


def durable(conf: cfg.ConfigOpts) -> bool:
    """Declared as the pool queue is: what the operator chose for the broker's restarts."""
    return quorum(conf) or bool(conf.oslo_messaging_rabbit.amqp_durable_queues)


def election(
    conf: cfg.ConfigOpts,
    observer: Observer,
    checkpoint: Checkpoint,
    companions: tuple[Companion, ...] = (),
) -> Election:
    """The pool's reconciler election, on the listener's broker and queue settings."""
    return Election(
        lambda index: connection.connect(conf, index, heartbeat=HEARTBEAT),
        f"{pool_of(conf)}{SUFFIX}",
        hosts=connection.hosts(conf),
        queue_arguments={"x-queue-type": "quorum"} if quorum(conf) else None,
        durable=durable(conf),
        companions=companions,
        # A token minted anew (first start, a broker that lost it) starts from this
        # node's own record of its last finished pass.
        seed=checkpoint.load,
        observer=observer,
    )


def cloud(conf: cfg.ConfigOpts) -> session.Cloud | None:
    """The one OpenStack session of the daemon, if ``[service_credentials]`` has an account."""
    return session.connect(conf) if session.configured(conf) else None


def verifier(conf: cfg.ConfigOpts, cloud: session.Cloud | None) -> CloudVerifier | None:
    """The handler's verification step, as configured, once the account has proven it
    sees every project (raises :class:`~k2hr3_osnl.reconcile.view.ViewTooNarrow`)."""
    if cloud is None or not conf.reconcile.verify_deletions:
        return None
    proven = check_view(cloud)
    LOG.info("verifying deletions with Nova and Neutron before sending them")
    return CloudVerifier(cloud, view_proven=proven)


def rechecker(handler: Handler) -> Rechecker | None:
    """What checks refused deletions again, if the handler holds them."""
    if handler.verifier is None or handler.rechecks is None:
        return None
    return Rechecker(handler.rechecks, handler.verifier, handler)


def attach(
    conf: cfg.ConfigOpts, cloud: session.Cloud, handler: Handler, fed: Deliveries
) -> Reconciler:
    """The daemon's reconciler (see :func:`reconciling`), said in the log."""
    r = conf.reconcile
    if fed.shared is not None:
        LOG.info(
            "reconciling with Nova every %.0fs while this process holds the pool's token "
            "(queue %r), from the fleet's checkpoint",
            r.interval_seconds,
            f"{pool_of(conf)}{SUFFIX}",
        )
    else:
        LOG.info(
            "reconciling with Nova at start and every %.0fs (checkpoint in %s)",
            r.interval_seconds,
            Checkpoint(conf.k2hr3.state_dir, dry_run=conf.k2hr3.dry_run).path,
        )
    return make_reconciler(conf, cloud, handler, fed)
