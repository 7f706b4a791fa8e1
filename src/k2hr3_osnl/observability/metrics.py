"""Prometheus metrics: what the daemon counts, and the states it reports at each scrape.

Every metric lives in a registry of its own (never prometheus_client's global one), so a
process, or a test, can hold several daemons. Counters are fed by the observer hooks
the handler calls; gauges that describe a state (consuming, parked, breaker) are read
from :class:`~k2hr3_osnl.observability.health.Health` at scrape time, so ``/metrics``
and ``/healthz`` never disagree.

:mod:`k2hr3_osnl.observability.server` serves them on ``/metrics``, beside ``/healthz``.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any

import prometheus_client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from k2hr3_osnl import __version__
from k2hr3_osnl.core import resend
from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.events import DELETION_EVENT_TYPES, PROOF_TARGETS
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.parking import Cause
from k2hr3_osnl.core.reconciliation import EVENT_TYPE as RECONCILED_EVENT
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.core.verification import Verdict
from k2hr3_osnl.observability.health import Health

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
        self._parking_metrics(r)
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
            "verify_deletions checks, by target (server, port) and outcome (gone: sent; "
            "exists: not sent, checked again later; dropped: still there at the last "
            "check; refused: a port deletion without a usable "
            "port id; broken: 401/403, parked; unknown: no answer, sent or parked as "
            "[reconcile] unverified says).",
            ["target", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_cells_down = Gauge(
            "reconcile_unknown_compute_services",
            "nova-compute services Nova listed as UNKNOWN at the last pass: a cell is down, "
            "its deleted servers are missing from the listing and the checkpoint waits.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_cell_checks = Counter(
            "reconcile_cell_checks",
            "Down-cell checks of reconciliation passes, by outcome (all_up; cell_down: the "
            "checkpoint stayed; unknown: Nova could not tell, the pass went on).",
            ["outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_leader = Gauge(
            "reconcile_leader",
            "1 while this process holds its pool's reconciler token and so runs the "
            "passes for the fleet ([reconcile] leader_election); 0 otherwise.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_interval = Gauge(
            "reconcile_interval_seconds",
            "[reconcile] interval_seconds of this process (0: reconciliation off), so "
            "an alert can tell a fleet that stopped passing.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconcile_abandoned_passes = Counter(
            "reconcile_abandoned_passes",
            "Passes this process stopped because it lost the pool's token (the broker "
            "vanished): each may have overlapped the next holder's pass.",
            namespace=NAMESPACE,
            registry=r,
        )
        self._reconcile_failing = False
        for outcome in ("ok", "failed"):
            self.reconcile_passes.labels(outcome)
        for outcome in ("all_up", "cell_down", "unknown"):
            self.reconcile_cell_checks.labels(outcome)
        for target in PROOF_TARGETS:
            for outcome in (*(verdict.value for verdict in Verdict), "dropped"):
                self.verifications.labels(target, outcome)

    def _parking_metrics(self, r: CollectorRegistry) -> None:
        self.parked_by_cause = Gauge(
            "parked_by_cause",
            "Parked deletions by cause, as last counted by the re-sender: operator (400, "
            "404: needs an operator), outage and verification-unavailable (re-sent once "
            "K2HR3 or verification works again), strikes (re-sent hourly for a day).",
            ["cause"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.resends = Counter(
            "parked_resends",
            "Parked deletions sent again by themselves, by cause and outcome (delivered: "
            "file removed; failed: kept; gave_up: kept, now for an operator).",
            ["cause", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        for cause in Cause.ALL:
            self.parked_by_cause.labels(cause)
            for outcome in (resend.DELIVERED, resend.FAILED, resend.GAVE_UP):
                self.resends.labels(cause, outcome)

    def parked_causes(self, counts: Mapping[str, int]) -> None:
        for cause, count in counts.items():
            self.parked_by_cause.labels(cause).set(count)

    def resent(self, cause: str, outcome: str) -> None:
        self.resends.labels(cause, outcome).inc()

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

    def reconcile_cells(self, unknown: int | None) -> None:
        self.reconcile_cells_down.set(unknown or 0)
        outcome = "unknown" if unknown is None else "cell_down" if unknown else "all_up"
        self.reconcile_cell_checks.labels(outcome).inc()

    def reconcile_leading(self, leading: bool) -> None:
        self.reconcile_leader.set(1 if leading else 0)

    def reconcile_abandoned(self) -> None:
        self.reconcile_abandoned_passes.inc()

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
        if answer.outcome is Outcome.DELETED and status != "dry_run":
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
            ("dry_run", "1 when [k2hr3] dry_run is on: K2HR3 is never called.", status.dry_run),
            (
                "parking_writable",
                "0 while a deletion K2HR3 rejects could not be parked in <state_dir>/parked.",
                status.parking_ok,
            ),
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


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
