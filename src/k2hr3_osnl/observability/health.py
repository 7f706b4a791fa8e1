"""Is the daemon doing its job right now? The answer behind ``/healthz``.

Healthy means both ends work:

- **consuming**: the listener started, is not stopping, and its RabbitMQ connection is
  up (and, when the service gives a ``probe``, oslo.messaging's consumer thread is
  alive: the same check as systemd's watchdog);
- **K2HR3 reachable recently**: the last answer K2HR3 gave was not a retryable failure
  (refused, timed out, TLS error, 403, 408, 429, 5xx), or that failure is older than
  :data:`RECENT` seconds. While deletions wait for a failing K2HR3, the shared circuit
  breaker probes it at least every 60 s, so an ongoing outage always has a failure
  younger than that; once nothing is left to deliver (all parked, which the parked gauge
  and alert report), nobody knows any more, and health stops blaming K2HR3. The breaker
  state is part of the answer: it is open exactly while K2HR3 is failing.

K2HR3 is never called just to check health: deletions are the only traffic it sees.
"""

from __future__ import annotations

import datetime
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.types import Notification

LOG = logging.getLogger(__name__)

#: Seconds a retryable K2HR3 failure keeps the daemon unhealthy without a newer answer:
#: twice the longest pause between two probes of a failing K2HR3 (60 s).
RECENT = 120.0


class ProbeResult(Protocol):
    """What :func:`k2hr3_osnl.rabbit.liveness.check` answers about the consumer."""

    ok: bool
    connected: bool | None  # None: the driver does not let us see the connection
    reason: str


Probe = Callable[[], ProbeResult]


@dataclass(frozen=True)
class Status:
    """One look at the daemon; ``ok`` is what ``/healthz`` answers."""

    ok: bool
    reasons: list[str]
    consuming: bool
    broker_connected: bool
    broker_reconnects: int
    k2hr3_ok: bool
    breaker_open: bool
    parked: int
    details: dict[str, Any] = field(default_factory=dict)
    #: [k2hr3] dry_run: K2HR3 is never called, so it is neither ok nor failing.
    dry_run: bool = False
    #: False while a deletion K2HR3 rejects could not be parked (state_dir unwritable).
    parking_ok: bool = True
    #: Wrong, but not with the listener: reconciliation failing. Said, never a 503: a
    #: Keystone outage must not make anyone restart a daemon that consumes.
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        healthy = (
            "consuming, dry run: K2HR3 is not called"
            if self.dry_run
            else ("consuming, K2HR3 reachable")
        )
        reason = "; ".join(self.reasons) if self.reasons else healthy
        return {
            "status": "ok" if self.ok else "unavailable",
            "reason": "; ".join([reason, *self.warnings]),
            "dry_run": self.dry_run,
            "consuming": self.consuming,
            **self.details,
            "parked": self.parked,
        }


class Health(Observer):
    """Follows the daemon through the observer hooks; :meth:`status` judges it."""

    def __init__(
        self,
        breaker: CircuitBreaker | None = None,
        parking: ParkingLot | None = None,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.time,
        dry_run: bool = False,
    ) -> None:
        self.breaker = breaker
        self.dry_run = dry_run
        self.parking = parking
        self.probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._listening = False
        self._stopping = False
        self._broker_up = False
        self._broker_since: float | None = None
        self._broker_error: str | None = None
        self._reconnects = 0
        self._k2hr3_last_answer: float | None = None
        self._k2hr3_last_success: float | None = None
        self._k2hr3_failing_since: float | None = None
        self._k2hr3_error: str | None = None
        self._reconcile = _ReconcileState()

    # Observer hooks: called from the listener's and workers' threads.

    def listening(self) -> None:
        with self._lock:
            self._listening = True
            # start() returns only once connected and bound.
            self._broker_up = True
            self._broker_since = self._clock()
            self._broker_error = None

    def stopping(self) -> None:
        with self._lock:
            self._stopping = True

    def broker_lost(self, detail: str) -> None:
        with self._lock:
            if self._broker_up or self._broker_since is None:
                self._broker_since = self._clock()
            self._broker_up = False
            self._broker_error = detail

    def broker_back(self) -> None:
        with self._lock:
            self._reconnects += 1
            self._broker_up = True
            self._broker_since = self._clock()
            self._broker_error = None

    def answered(self, note: Notification, answer: Answer, attempt: int) -> None:
        if self.dry_run:
            return  # nothing was sent: K2HR3 said nothing, good or bad
        began = ended = None
        with self._lock:
            now = self._clock()
            self._k2hr3_last_answer = now
            if answer.status == 429:
                # K2HR3 works and limits the rate: the breaker keeps to it. Neither a
                # failure (no outage to say at warning) nor a delivery.
                return
            if answer.outcome is Outcome.RETRY:
                status = f"status {answer.status}" if answer.status is not None else "no answer"
                self._k2hr3_error = f"{status}: {answer.detail}" if answer.detail else status
                if self._k2hr3_failing_since is None:
                    self._k2hr3_failing_since = now
                    began = self._k2hr3_error
            else:
                if self._k2hr3_failing_since is not None:
                    ended = now - self._k2hr3_failing_since
                self._k2hr3_failing_since = None
                self._k2hr3_error = None
                self._k2hr3_last_success = now
        # The per-call lines are INFO; an outage's start and end are what `journalctl -p
        # warning` must show, once each.
        if began is not None:
            LOG.warning("K2HR3 failing (%s): deletions wait and are retried", began)
        if ended is not None:
            LOG.warning("K2HR3 works again after %.0fs of failures", ended)

    def reconciled(self, found: int) -> None:
        with self._lock:
            self._reconcile.worked(self._clock())

    def reconcile_failed(self, detail: str) -> None:
        with self._lock:
            self._reconcile.failed(self._clock(), detail)

    def reconcile_leading(self, leading: bool) -> None:
        with self._lock:
            self._reconcile.enabled = True
            self._reconcile.leader = leading

    def reconcile_leader(self) -> bool:
        """Whether this process runs the pool's passes now (its election's token)."""
        with self._lock:
            return bool(self._reconcile.leader)

    def reconcile_error(self) -> str | None:
        """``since ...: why`` while reconciliation fails, for systemd's status line."""
        with self._lock:
            return self._reconcile.problem()

    @property
    def reconnects(self) -> int:
        return self._reconnects

    def parked(self) -> int:
        """Parked deletions on disk now (not cached: ``replay --parked`` removes them)."""
        if self.parking is None:
            return 0
        try:
            return sum(1 for _ in self.parking.directory.glob("*.json"))
        except OSError:
            return 0

    def parking_problem(self) -> str | None:
        """Why a deletion could not be parked now, else None.

        A rejected deletion that cannot be parked is handed back to RabbitMQ and comes
        again, forever: that must not look healthy. Tried for real (a file created and
        removed where the next one would go): permissions, a read-only or full disk.
        """
        if self.parking is None:
            return None
        where = self.parking.directory
        while not where.exists() and where != where.parent:
            where = where.parent  # created on the first park: where that would happen
        if not where.is_dir():
            return f"cannot park deletions in {self.parking.directory} ({where} is not a directory)"
        try:
            fd, probe = tempfile.mkstemp(dir=where, prefix=".k2hr3-osnl-healthz-")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            why = error.strerror or type(error).__name__
            return f"cannot park deletions in {self.parking.directory} ({why}: {where})"
        return None

    def status(self) -> Status:
        probe = self.probe() if self.probe is not None else None
        breaker_open = bool(self.breaker is not None and self.breaker.is_open)
        parked = self.parked()
        parking_problem = self.parking_problem()
        with self._lock:
            now = self._clock()
            reasons: list[str] = []
            connected = self._broker_up
            if probe is not None and self._listening and probe.connected is not None:
                connected = probe.connected
            if self._stopping:
                reasons.append("stopping")
            elif not self._listening:
                reason = "not consuming yet"
                if self._broker_error:
                    reason += f": RabbitMQ unreachable since {_iso(self._broker_since)} "
                    reason += f"({self._broker_error})"
                reasons.append(reason)
            elif not connected:
                reason = f"RabbitMQ connection lost since {_iso(self._broker_since or now)}"
                if self._broker_error:
                    reason += f" ({self._broker_error})"
                reasons.append(reason)
            elif probe is not None and not probe.ok:
                reasons.append(probe.reason)
            consuming = self._listening and not self._stopping and not reasons

            failing = (
                self._k2hr3_failing_since is not None
                and self._k2hr3_last_answer is not None
                and now - self._k2hr3_last_answer < RECENT
            )
            if failing:
                reasons.append(
                    f"K2HR3 failing since {_iso(self._k2hr3_failing_since)} ({self._k2hr3_error})"
                )
            if parking_problem is not None:
                reasons.append(parking_problem)
            k2hr3_state = "failing" if failing else "ok"
            if self._k2hr3_last_answer is None:
                k2hr3_state = "not called yet"
            if self.dry_run:
                k2hr3_state = "dry run: not called"
            details = {
                "broker": {
                    "connected": connected,
                    "since": _iso(self._broker_since),
                    "reconnects": self._reconnects,
                    "last_error": self._broker_error,
                },
                "k2hr3": {
                    "state": k2hr3_state,
                    "breaker": "open" if breaker_open else "closed",
                    "failing_since": _iso(self._k2hr3_failing_since),
                    "last_error": self._k2hr3_error,
                    "last_success": _iso(self._k2hr3_last_success),
                },
            }
            if self._reconcile.enabled:
                details["reconcile"] = self._reconcile.to_json()
            reconcile_problem = self._reconcile.problem()
            return Status(
                ok=not reasons,
                warnings=[f"reconciliation failing {reconcile_problem}"]
                if reconcile_problem
                else [],
                reasons=reasons,
                consuming=consuming,
                broker_connected=connected,
                broker_reconnects=self._reconnects,
                k2hr3_ok=not failing,
                breaker_open=breaker_open,
                parked=parked,
                details=details,
                dry_run=self.dry_run,
                parking_ok=parking_problem is None,
            )


class _ReconcileState:
    """Reconciliation as the health sees it; enabled by its first report."""

    def __init__(self) -> None:
        self.enabled = False
        #: None: no election (this process reconciles alone); else holds the token.
        self.leader: bool | None = None
        self.last_success: float | None = None
        self.failing_since: float | None = None
        self.error: str | None = None

    def worked(self, now: float) -> None:
        self.enabled = True
        self.last_success = now
        self.failing_since = None
        self.error = None

    def failed(self, now: float, detail: str) -> None:
        self.enabled = True
        if self.failing_since is None:
            self.failing_since = now
        self.error = detail

    def problem(self) -> str | None:
        if self.failing_since is None:
            return None
        return f"since {_iso(self.failing_since)} ({self.error})"

    def to_json(self) -> dict[str, Any]:
        role = {None: "alone", True: "leader", False: "standby"}[self.leader]
        return {
            # leader: runs the pool's passes; standby: another process does.
            "role": role,
            "state": "failing" if self.failing_since is not None else "ok",
            "failing_since": _iso(self.failing_since),
            "last_error": self.error,
            "last_success": _iso(self.last_success),
        }


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
