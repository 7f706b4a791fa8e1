"""Prometheus metrics, and one small HTTP server for ``/metrics`` and ``/healthz``.

Every metric lives in a registry of its own (never prometheus_client's global one), so a
process, or a test, can hold several daemons. Counters are fed by the observer hooks
the handler calls; gauges that describe a state (consuming, parked, breaker) are read
from :class:`~k2hr3_osnl.observability.health.Health` at scrape time, so ``/metrics``
and ``/healthz`` never disagree.

The server is prometheus_client's WSGI app behind the standard library's threaded
``wsgiref`` server, with ``/healthz`` beside it. It is optional by design: a port
already in use is logged as a warning, and the daemon consumes anyway.
"""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from k2hr3_osnl import __version__
from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.catchup import EVENT_TYPE as RECONCILED_EVENT
from k2hr3_osnl.core.events import DELETION_EVENT_TYPES
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observer, Observers
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.observability.health import Health, Probe

LOG = logging.getLogger(__name__)

NAMESPACE = "k2hr3_osnl"
#: K2HR3 answers in milliseconds when healthy and may take the whole read timeout (30 s
#: by default) when not.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: From a deletion to K2HR3 forgetting its addresses: seconds on the notification path,
#: up to a day when reconciliation finds what the bus lost (initial_lookback_seconds).
EXPOSURE_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
    21600, 86400,
)  # fmt: skip
#: The exposure histogram's ``source`` label of a deletion reconciliation found.
RECONCILED = "reconciliation"
#: Any event type other than the deletions is counted under this label, so that a broad
#: ``event_type`` filter cannot grow the number of series without bound.
OTHER = "other"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def event_label(event_type: Any) -> str:
    return event_type if event_type in DELETION_EVENT_TYPES else OTHER


def status_label(answer: Answer) -> str:
    if answer.status is not None:
        return str(answer.status)
    # No HTTP answer: a dry run, or refused, timed out, TLS failure...
    return "dry_run" if answer.outcome is Outcome.DELETED else "no_answer"


def _disable_created_series() -> None:
    """prometheus-client's ``disable_created_metrics()`` (0.17), or on 0.16 (Debian 12)
    the module flag that function sets."""
    disable = getattr(prometheus_client, "disable_created_metrics", None)
    if disable is not None:
        disable()
    else:
        prometheus_client.metrics._use_created = False


class Metrics(Observer):
    """The daemon's metrics, in :attr:`registry`; an observer for the handler."""

    def __init__(self, health: Health, registry: CollectorRegistry | None = None) -> None:
        self.health = health
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # A "_created" twin of every counter series doubles the output for nothing
        # Prometheus reads from the text format (this is process-wide, and meant so).
        _disable_created_series()
        r = self.registry
        self.notifications = Counter(
            "notifications",
            "Notifications that reached the listener, by event type and outcome "
            "(deleted, ignored, invalid, duplicate, parked, requeued; error if the "
            "handler failed).",
            ["event_type", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.retries = Counter(
            "notification_retries",
            "K2HR3 attempts beyond the first one for a notification.",
            ["event_type"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.requests = Counter(
            "k2hr3_requests",
            "K2HR3 delete calls, by HTTP status (no_answer: refused, timed out or TLS "
            "error; dry_run: not sent) and outcome (deleted, retry, rejected).",
            ["status", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.latency = Histogram(
            "k2hr3_request_duration_seconds",
            "Time K2HR3 delete calls took, answered or not (dry runs excluded).",
            buckets=LATENCY_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self.exposure = Histogram(
            "deletion_exposure_seconds",
            "From a deletion (the notification's own timestamp; for source="
            "reconciliation, the server's OS-SRV-USG:terminated_at) to K2HR3's 2xx: how "
            "long the deleted VM's addresses kept their access. Negative (a publisher's "
            "clock ahead of ours) counts as 0.",
            ["source"],
            buckets=EXPOSURE_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        for source in ("notification", RECONCILED):
            self.exposure.labels(source)
        self.in_flight = Gauge(
            "notifications_in_flight",
            "Notifications being handled now, including those waiting for K2HR3.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.last_success = Gauge(
            "last_success_timestamp_seconds",
            "Unix time of the last deletion K2HR3 accepted (0: none yet).",
            namespace=NAMESPACE,
            registry=r,
        )
        self._reconcile_metrics(r)
        Info(
            "build",
            "Version of k2hr3-osnl and of what it runs on.",
            namespace=NAMESPACE,
            registry=r,
        ).info(
            {
                "version": __version__,
                "python_version": platform.python_version(),
                "oslo_messaging_version": _version_of("oslo.messaging"),
            }
        )
        r.register(_StateCollector(health))
        prometheus_client.ProcessCollector(registry=r)
        prometheus_client.PlatformCollector(registry=r)
        prometheus_client.GCCollector(registry=r)
        # Every series an alert may use exists from the start, at 0.
        for event_type in (*sorted(DELETION_EVENT_TYPES), OTHER):
            self.retries.labels(event_type)
            for result in Result:
                self.notifications.labels(event_type, result.value)

    def _reconcile_metrics(self, r: CollectorRegistry) -> None:
        self.reconcile_passes = Counter(
            "reconcile_passes",
            "Reconciliation passes, by outcome (ok; failed: Keystone or Nova did not answer).",
            ["outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_found = Counter(
            "reconcile_found",
            "Deleted servers reconciliation found in Nova (each pass counts its own).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.missed = Counter(
            "reconcile_missed",
            "Deleted servers that no notification had deleted from K2HR3 when "
            "reconciliation found them: deletions the message bus lost.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_last_success = Gauge(
            "reconcile_last_success_timestamp_seconds",
            "Unix time of the last reconciliation pass that asked Nova successfully (0: none yet).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_failing_since = Gauge(
            "reconcile_failing_since_timestamp_seconds",
            "Unix time of the first failed pass of the current failure streak (0: working).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.verifications = Counter(
            "verifications",
            "verify_deletions lookups, by target (server, port) and outcome (gone: deleted; "
            "exists: refused; unknown: no answer, deleted anyway).",
            ["target", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._reconcile_failing = False
        for outcome in ("ok", "failed"):
            self.reconcile_passes.labels(outcome)
        for target in ("server", "port"):
            for outcome in ("gone", "exists", "unknown"):
                self.verifications.labels(target, outcome)

    def reconcile_missed(self, cuk: str) -> None:
        self.missed.inc()

    def reconciled(self, found: int) -> None:
        self.reconcile_passes.labels("ok").inc()
        self.reconcile_found.inc(found)
        self.reconcile_last_success.set(time.time())
        self.reconcile_failing_since.set(0)
        self._reconcile_failing = False

    def reconcile_failed(self, detail: str) -> None:
        self.reconcile_passes.labels("failed").inc()
        if not self._reconcile_failing:
            self._reconcile_failing = True
            self.reconcile_failing_since.set(time.time())

    def verified(self, target: str, outcome: str) -> None:
        self.verifications.labels(target, outcome).inc()

    def handling(self, note: Notification) -> None:
        self.in_flight.inc()

    def handled(self, note: Notification, result: Result | None) -> None:
        self.in_flight.dec()
        outcome = result.value if result is not None else "error"
        self.notifications.labels(event_label(note.event_type), outcome).inc()

    def unreadable(self, reason: str) -> None:
        self.notifications.labels(OTHER, Result.INVALID.value).inc()

    def answered(self, note: Notification, answer: Answer, attempt: int) -> None:
        status = status_label(answer)
        self.requests.labels(status, answer.outcome.value).inc()
        if status != "dry_run":
            self.latency.observe(answer.seconds)
        if attempt > 1:
            self.retries.labels(event_label(note.event_type)).inc()
        if answer.outcome is Outcome.DELETED:
            now = time.time()
            self.last_success.set(now)
            if note.happened is not None and answer.status is not None:
                source = RECONCILED if note.event_type == RECONCILED_EVENT else "notification"
                self.exposure.labels(source).observe(max(0.0, now - note.happened))


class _StateCollector(Collector):
    """States read from :class:`Health` at each scrape."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[Any]:
        status = self.health.status()
        gauges = (
            ("up", "1 when /healthz answers 200: consuming and K2HR3 reachable.", status.ok),
            ("consuming", "1 while the listener consumes from RabbitMQ.", status.consuming),
            (
                "broker_connected",
                "1 while the connection to RabbitMQ is up.",
                status.broker_connected,
            ),
            (
                "k2hr3_up",
                "0 while K2HR3's last answer, less than 120 s ago, was a retryable failure.",
                status.k2hr3_ok,
            ),
            ("breaker_open", "1 while the circuit breaker holds K2HR3 calls.", status.breaker_open),
        )
        for name, documentation, value in gauges:
            yield GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, value=float(value))
        yield GaugeMetricFamily(
            f"{NAMESPACE}_parked",
            "Deletions parked in <state_dir>/parked, waiting for 'k2hr3-osnl replay --parked'.",
            value=status.parked,
        )
        yield CounterMetricFamily(
            f"{NAMESPACE}_broker_reconnects",
            "Times the rabbit driver reconnected to RabbitMQ.",
            value=status.broker_reconnects,
        )


def make_app(registry: CollectorRegistry, health: Health) -> WSGIApp:
    """``/metrics`` (and ``/``) from the registry, ``/healthz`` from ``health``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/"):
            return metrics_app(environ, start_response)
        if path == "/healthz":
            status = health.status()
            body = json.dumps(status.to_json(), indent=1).encode() + b"\n"
            start_response(
                "200 OK" if status.ok else "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


#: Connections served at once; more are closed at once. A scraper and a health check
#: need one each: this bounds the threads that slow or hostile clients can hold.
MAX_CONNECTIONS = 16
#: The longest one connection may last, however slowly its client sends.
CONNECTION_SECONDS = 30.0


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Connections over the limit are accepted and closed at once, not left to wait
    # for a SYN retry in a listen backlog of 5.
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            LOG.debug("metrics http: %d connections already, closing one", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Each read has the handler's timeout; this ends a client that trickles bytes.
        cut = threading.Timer(CONNECTION_SECONDS, _cut, (request,))
        cut.daemon = True
        cut.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cut.cancel()
            self._slots.release()


def _cut(request: socket.socket) -> None:
    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_RDWR)


class _Handler(WSGIRequestHandler):
    #: A client that stops talking does not keep a thread forever.
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("metrics http: %s %s", self.address_string(), format % args)


class MetricsServer:
    """The running HTTP server; :meth:`close` stops it.

    Its thread sleeps in ``select`` until a client connects or :meth:`close` wakes it:
    ``serve_forever`` would wake every poll interval to look for a shutdown request,
    most of an idle daemon's CPU (docs/benchmarks.md, issue 21).
    """

    def __init__(self, server: WSGIServer) -> None:
        self.server = server
        self._wake_read, self._wake_write = socket.socketpair()
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.server, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._closing.is_set():
                ready = selector.select()
                if self._closing.is_set():
                    break
                if any(key.fileobj is self.server for key, _ in ready):
                    # socketserver's own step of serve_forever: accept, then a thread.
                    self.server._handle_request_noblock()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=10)
        self.server.server_close()
        self._wake_read.close()
        self._wake_write.close()


def serve(address: str | None, port: int | None, app: WSGIApp) -> MetricsServer | None:
    """Listen on ``address:port``; None when turned off (empty address or port 0) or
    when the port cannot be had, which is a warning, never a reason to stop."""
    if not address or not port:
        LOG.info("metrics and /healthz turned off ([metrics] bind_address or port empty)")
        return None
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsHTTPServer", (_Server,), {"address_family": family})
        server = make_server(address, port, app, server_class, _Handler)
    except (OSError, UnicodeError) as error:
        LOG.warning(
            "metrics and /healthz not served: cannot listen on %s:%s (%s); "
            "consuming anyway. Set [metrics] port to a free port, or 0 to turn them off.",
            address,
            port,
            getattr(error, "strerror", None) or error,
        )
        return None
    running = MetricsServer(server)
    shown = f"[{address}]" if ":" in address else address
    LOG.info("metrics on http://%s:%d/metrics, health on /healthz", shown, running.port)
    return running


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def instrument(handler: Handler, probe: Probe | None = None) -> tuple[Health, Metrics]:
    """Give ``handler`` a :class:`Health` and a :class:`Metrics` to report to."""
    health = Health(handler.breaker, handler.parking, probe=probe)
    metrics = Metrics(health)
    handler.observer = Observers((handler.observer, health, metrics))
    return health, metrics
