"""The daemon: build everything from the configuration, listen, stop cleanly.

This is the edge that talks to RabbitMQ (through oslo.messaging) and to the operating
system (signals). Everything it wires together is built by :func:`build`, so the tests
can run the very same listener on oslo.messaging's ``fake://`` transport.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import oslo_messaging
from oslo_config import cfg

from k2hr3_osnl import __version__, config
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observer, Observers
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.recheck import Rechecks
from k2hr3_osnl.core.verification import Verifier
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.observability import logs, metrics, server
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.openstack import session
from k2hr3_osnl.process import reload, signals
from k2hr3_osnl.process.lifecycle import Lifecycle
from k2hr3_osnl.process.resender import Resender
from k2hr3_osnl.rabbit import dryrun, liveness, refusals, seam
from k2hr3_osnl.rabbit.batching import GreedyBatchServer
from k2hr3_osnl.rabbit.dispatcher import PoisonSafeDispatcher
from k2hr3_osnl.rabbit.driverlog import BrokerLogWatch, UndecodableWatch
from k2hr3_osnl.rabbit.endpoint import NotificationEndpoint
from k2hr3_osnl.reconcile import wiring
from k2hr3_osnl.reconcile.recheck import Rechecker
from k2hr3_osnl.reconcile.reconciler import Reconciler
from k2hr3_osnl.reconcile.view import ViewTooNarrow

LOG = logging.getLogger(__name__)

#: Longest pause between probes of a failing K2HR3, whatever retry_interval_seconds says.
MAX_PROBE_INTERVAL = 60.0


@dataclass
class Daemon:
    conf: cfg.ConfigOpts
    handler: Handler
    endpoint: NotificationEndpoint
    transport: oslo_messaging.Transport
    targets: list[oslo_messaging.Target]
    listener: oslo_messaging.MessageHandlingServer
    health: Health | None = None
    metrics: metrics.Metrics | None = None
    http: server.MetricsServer | None = None
    reconciler: Reconciler | None = None
    rechecker: Rechecker | None = None
    resender: Resender | None = None


def make_client(conf: cfg.ConfigOpts) -> RoleClient:
    k = conf.k2hr3
    verify: bool | str = k.ca_file or True
    if k.allow_self_signed_cert:
        verify = False
    cert: str | tuple[str, str] | None = None
    if k.cert_file:
        cert = (k.cert_file, k.key_file) if k.key_file else k.cert_file
    return RoleClient(
        k.api_url,
        connect_timeout=k.connect_timeout_seconds,
        read_timeout=k.timeout_seconds,
        verify=verify,
        cert=cert,
        dry_run=k.dry_run,
        # One connection per deletion in flight, and at most the prefetch are.
        pool_size=conf.oslo_messaging_rabbit.rabbit_qos_prefetch_count or 1024,
    )


def make_handler(
    conf: cfg.ConfigOpts,
    client: RoleClient | None = None,
    verifier: Verifier | None = None,
    observer: Observer | None = None,
    breaker: CircuitBreaker | None = None,
    parking: ParkingLot | None = None,
) -> Handler:
    k = conf.k2hr3
    return Handler(
        client=client or make_client(conf),
        breaker=breaker or make_breaker(conf),
        parking=parking or ParkingLot(k.state_dir),
        recent=RecentDeliveries(k.duplicate_window_seconds),
        retry_budget=k.retry_budget_seconds,
        observer=observer,
        verifier=verifier,
        park_unverified=conf.reconcile.unverified == "park",
        # A dry run shares state_dir with a live daemon: it must not take its refusals.
        rechecks=Rechecks(k.state_dir) if verifier is not None and not k.dry_run else None,
    )


def make_breaker(conf: cfg.ConfigOpts) -> CircuitBreaker:
    return CircuitBreaker(max_interval=min(conf.k2hr3.retry_interval_seconds, MAX_PROBE_INTERVAL))


def apply_mutable(daemon: Daemon) -> None:
    """Push the options a SIGHUP may change into the running objects (see make_*)."""
    k = daemon.conf.k2hr3
    handler = daemon.handler
    client = handler.client
    # dry_run is not among them: it decides which queue the daemon consumes (dryrun.py).
    if client.timeout != (k.connect_timeout_seconds, k.timeout_seconds):
        # A new client rather than new attributes: its connection pool is built with the
        # timeouts. Calls in flight finish on the old one, which goes with its last user.
        handler.client = make_client(daemon.conf)
    handler.retry_budget = k.retry_budget_seconds
    handler.recent.window = k.duplicate_window_seconds
    breaker = handler.breaker
    breaker.max_interval = min(k.retry_interval_seconds, MAX_PROBE_INTERVAL)
    breaker.min_interval = min(breaker.min_interval, breaker.max_interval)


def make_filter(conf: cfg.ConfigOpts) -> oslo_messaging.NotificationFilter:
    n = conf.oslo_messaging_notifications
    return oslo_messaging.NotificationFilter(
        context=n.context,
        publisher_id=n.publisher_id,
        event_type=n.event_type,
        metadata=n.metadata,
        payload=n.payload,
    )


def build(
    conf: cfg.ConfigOpts,
    verifier: Verifier | None = None,
    cloud: session.Cloud | None = None,
) -> Daemon:
    """The daemon, each part built once, with everything it reports to.

    Health and metrics read the breaker and the parking lot, a reconciler reads what the
    handler delivers: those are built first, and the handler is made with all of them
    as its observer. ``cloud`` (the ``[service_credentials]`` session) adds the
    reconciler when ``[reconcile] enabled``.
    """
    n = conf.oslo_messaging_notifications
    breaker = make_breaker(conf)
    parking = ParkingLot(conf.k2hr3.state_dir)
    # /healthz sees the consumer as the watchdog does: poll thread alive, kombu connected
    # (the listener, below, is made last: it needs the handler, which reports to health).
    listener: GreedyBatchServer | None = None
    health = Health(
        breaker,
        parking,
        probe=lambda: liveness.check(listener),
        dry_run=conf.k2hr3.dry_run,
    )
    stats = metrics.Metrics(health)
    fed = wiring.deliveries(conf) if cloud is not None and wiring.reconciling(conf) else None
    observer = Observers((health, stats, *(fed.observers if fed else ())))
    handler = make_handler(
        conf, verifier=verifier, observer=observer, breaker=breaker, parking=parking
    )
    endpoint = NotificationEndpoint(handler, make_filter(conf))
    transport = oslo_messaging.get_notification_transport(conf, url=n.transport_url)
    targets = [
        oslo_messaging.Target(exchange=exchange, topic=topic)
        for exchange in n.exchange
        for topic in n.topic
    ]
    # get_batch_notification_listener(), with a dispatcher that cannot loop on a poison
    # message. A batch is what one hand-off to a worker thread and one round of K2HR3
    # calls carry: per message, that halves oslo.messaging's cost (docs/benchmarks.md).
    seam.let_redeliveries_through()
    seam.fail_over_one_host_at_a_time()
    listener = GreedyBatchServer(
        transport,
        targets,
        PoisonSafeDispatcher(endpoint, observer),
        executor="threading",
        # Requeueing is used only by a stopping daemon, for messages it did not finish.
        allow_requeue=True,
        pool=dryrun.pool(conf),
        batch_size=conf.batch_size,
        batch_timeout=conf.batch_timeout_seconds,
    )
    return Daemon(
        conf,
        handler,
        endpoint,
        transport,
        targets,
        listener,
        health,
        stats,
        reconciler=wiring.attach(conf, cloud, handler, fed) if cloud and fed else None,
        rechecker=wiring.rechecker(handler),
    )


def broker(conf: cfg.ConfigOpts) -> str:
    """``scheme://host:port[,host:port...] vhost 'v'`` of the transport URL: never user or
    password. The vhost is what an operator most often gets wrong, so it is always said."""
    url = urllib.parse.urlsplit(conf.oslo_messaging_notifications.transport_url or "")
    # Every node of a cluster, as oslo.messaging reads them: comma-separated user@host:port.
    where = ",".join(part.rpartition("@")[2] for part in url.netloc.split(",") if part)
    vhost = urllib.parse.unquote(url.path[1:]) or "/"
    return f"{url.scheme}://{where or '?'} vhost {vhost!r}"


def listening(daemon: Daemon) -> str:
    """The status line of a consuming daemon."""
    k = daemon.conf.k2hr3
    return (
        f"listening on {len(daemon.targets)} binding(s) of {broker(daemon.conf)}; "
        f"K2HR3 {logs.mask(k.api_url)}{' (dry run)' if k.dry_run else ''}"
    )


def describe(daemon: Daemon) -> str:
    pool = dryrun.pool(daemon.conf)
    bindings = ", ".join(f"{t.exchange}/{t.topic}" for t in daemon.targets)
    queue = f"pool queue {pool!r}" if pool else "shared queues '<topic>.info'"
    return (
        f"RabbitMQ {broker(daemon.conf)} [{bindings}] on {queue}; "
        f"K2HR3 {logs.mask(daemon.conf.k2hr3.api_url)}"
        f"{' (dry run)' if daemon.conf.k2hr3.dry_run else ''}"
    )


def run(
    conf: cfg.ConfigOpts,
    loader: Callable[[], cfg.ConfigOpts] | None = None,
    resend: bool = True,
) -> int:
    """Listen until SIGTERM or SIGINT, reload on SIGHUP, then stop cleanly.

    ``loader`` re-reads the configuration on SIGHUP (by default: the same files).
    ``resend``: this process sends parked deletions again (one per node: with
    ``workers = N``, the first). Returns the exit status.
    """
    cloud = wiring.cloud(conf)
    try:
        verifier = wiring.verifier(conf, cloud)
    except ViewTooNarrow as error:
        # One line, on the terminal and in the log: nothing was consumed yet.
        LOG.error("not starting: %s", error)
        if not logs.to_stream(conf.log_file):
            print(f"k2hr3-osnl: not starting: {error}", file=sys.stderr)
        return 2
    daemon = build(conf, verifier=verifier, cloud=cloud)
    BrokerLogWatch(daemon.handler.observer).install()
    UndecodableWatch(daemon.handler.observer).install()
    daemon.http = server.serve(
        conf.metrics.bind_address,
        conf.metrics.port,
        server.make_app(daemon.metrics.registry, daemon.health),
    )
    requests = signals.Requests()
    requests.install()
    lifecycle = Lifecycle(
        daemon.listener,
        daemon.handler,
        k2hr3_error=lambda: _k2hr3_error(daemon),
        reconcile_error=daemon.health.reconcile_error if daemon.health else lambda: None,
        reconcile_leader=daemon.health.reconcile_leader if daemon.health else lambda: False,
    )
    if daemon.reconciler is not None and daemon.metrics is not None:
        daemon.metrics.reconcile_interval.set(conf.reconcile.interval_seconds)
    # Under systemd's watchdog a hung daemon gets SIGABRT: dump every thread's stack first.
    if not faulthandler.is_enabled():
        faulthandler.enable()

    LOG.info("k2hr3-osnl %s starting: %s", __version__, describe(daemon))
    dryrun.announce(conf)
    dryrun.prepare(conf)
    lifecycle.connecting(broker(conf))
    # start() blocks while RabbitMQ is unreachable (the driver retries and logs), so it
    # runs aside and a signal can still stop a daemon that never connected.
    started = threading.Event()
    failed = threading.Event()

    def start() -> None:
        try:
            # A refusal (TLS, vhost, permission) is logged in one line and retried.
            if not refusals.start(daemon.listener, requests.stop, daemon.handler.observer):
                return
        except Exception as error:
            # One line for the operator; the stack for whoever debugs it.
            LOG.error("cannot start the listener: %s: %s", type(error).__name__, error)
            LOG.debug("cannot start the listener", exc_info=True)
            failed.set()
            requests.request_stop()
            return
        started.set()
        daemon.handler.observer.listening()
        LOG.info("listening")
        if daemon.reconciler is not None:
            daemon.reconciler.start(conf.reconcile.interval_seconds)
        if daemon.rechecker is not None:
            daemon.rechecker.start()
        if resend:
            # A dry run only counts the parked files: it must never send (and remove) them.
            daemon.resender = Resender(
                daemon.handler, daemon.handler.parking, send=not daemon.conf.k2hr3.dry_run
            )
            daemon.resender.start()
        requests.wake()

    threading.Thread(target=start, name="listener-start", daemon=True).start()
    while True:
        requests.wait(lifecycle.interval)
        if requests.stop.is_set():
            break
        if started.is_set():
            lifecycle.ready(listening(daemon))
        if requests.take_reload():
            lifecycle.reloading()
            reload.reload(daemon.conf, loader or _same_files(conf), lambda: apply_mutable(daemon))
            lifecycle.reloaded(listening(daemon))
        if started.is_set():
            lifecycle.tick()
    if requests.stop_signal:
        LOG.info("received %s, stopping", requests.stop_signal)
    lifecycle.stopping(daemon.conf.k2hr3.drain_seconds)
    if not started.is_set():
        if failed.is_set():
            _flush_and_exit(1)
        LOG.info("stopped before RabbitMQ could be reached")
        _flush_and_exit(0)
    return shutdown(daemon, daemon.conf.k2hr3.drain_seconds)


def _k2hr3_error(daemon: Daemon) -> str | None:
    if daemon.health is None:
        return None
    return daemon.health.status().details["k2hr3"]["last_error"]


def _same_files(conf: cfg.ConfigOpts) -> Callable[[], cfg.ConfigOpts]:
    return lambda: config.load(conf.config_file or (), conf.config_dir or ())


def shutdown(daemon: Daemon, drain_seconds: float) -> int:
    """Stop taking messages, let in-flight ones finish, hand the rest back to RabbitMQ."""
    daemon.handler.observer.stopping()
    if daemon.reconciler is not None:
        daemon.reconciler.stop()
    if daemon.rechecker is not None:
        daemon.rechecker.stop(0)
    if daemon.resender is not None:
        daemon.resender.stop()
    daemon.listener.stop()
    # Deliveries waiting for K2HR3 give up now and are requeued; calls already on the
    # wire finish (their HTTP timeouts bound them).
    daemon.handler.breaker.stop()
    waiter = threading.Thread(target=daemon.listener.wait, name="listener-wait", daemon=True)
    waiter.start()
    waiter.join(drain_seconds)
    if waiter.is_alive():
        LOG.warning(
            "in-flight deletions still running after %.0fs; leaving them "
            "unacknowledged for RabbitMQ to redeliver",
            drain_seconds,
        )
        _flush_and_exit(0)
    if daemon.reconciler is not None and not daemon.reconciler.join(drain_seconds):
        LOG.warning("the reconciliation pass did not end within %.0fs", drain_seconds)
    daemon.transport.cleanup()
    dryrun.remove_queue(daemon.conf)
    daemon.handler.client.close()
    if daemon.http is not None:
        daemon.http.close()
    LOG.info("stopped")
    return 0


def _flush_and_exit(status: int) -> None:
    # Worker threads may be blocked in K2HR3 or broker calls; the process must not wait
    # for them. Unacknowledged messages go back to the queue when the connection drops.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
