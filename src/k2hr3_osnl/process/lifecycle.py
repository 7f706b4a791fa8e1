"""What the daemon tells systemd as it goes: connecting, ready, healthy, reloading, stopping.

The service loop calls one method per event and :meth:`Lifecycle.tick` every
:attr:`Lifecycle.interval` seconds; this class turns them into ``STATUS=`` lines (sent
only when they change) and into ``WATCHDOG=1``, which is sent only while
:func:`k2hr3_osnl.rabbit.liveness.check` says the listener really consumes. K2HR3 failing does
not stop the watchdog: a restart would not fix K2HR3, and the deletions wait in the
breaker or the parking lot meanwhile; it shows in the status line instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.process import systemd
from k2hr3_osnl.rabbit import liveness

LOG = logging.getLogger(__name__)

#: Seconds the way out may take beyond its two drains (closing connections, the queue).
STOP_MARGIN = 10.0
#: How often the health is looked at when systemd's watchdog does not ask for more.
DEFAULT_INTERVAL = 5.0


class Lifecycle:
    def __init__(
        self,
        listener: Any,
        handler: Handler,
        notifier: systemd.Notifier | None = None,
        k2hr3_error: Callable[[], str | None] = lambda: None,
        reconcile_error: Callable[[], str | None] = lambda: None,
        reconcile_leader: Callable[[], bool] = lambda: False,
    ) -> None:
        self.listener = listener
        self.handler = handler
        self.notifier = notifier or systemd.Notifier()
        #: The last K2HR3 failure, for the status line while the breaker is open.
        self.k2hr3_error = k2hr3_error
        #: Reconciliation failing (``since ...: why``), added to the status line.
        self.reconcile_error = reconcile_error
        #: This process runs the pool's reconciliation passes (its token), said in STATUS.
        self.reconcile_leader = reconcile_leader
        watchdog = systemd.watchdog_interval()
        self.watchdog = watchdog is not None and self.notifier.enabled
        self.interval = min(watchdog, DEFAULT_INTERVAL) if watchdog else DEFAULT_INTERVAL
        self.is_ready = False
        self._reloading = False
        self._listening = ""
        self._status = ""
        self._healthy: bool | None = None

    def _set_status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.notifier.status(text)

    def connecting(self, broker: str) -> None:
        self._set_status(f"connecting to RabbitMQ {broker}")

    def ready(self, listening: str) -> None:
        """The listener consumes: ``READY=1``, once (again after a reload)."""
        if self.is_ready:
            return
        self.is_ready = True
        self._listening = listening
        self._status = listening
        self.notifier.ready(listening)

    def reloading(self) -> None:
        """``RELOADING=1``, if systemd was told we are ready (else it is still starting)."""
        self._reloading = self.is_ready
        if self._reloading:
            self.is_ready = False
            self._status = "reloading"
            self.notifier.reloading()

    def reloaded(self, listening: str) -> None:
        """``READY=1`` again, whether the new configuration was taken or rejected."""
        if self._reloading:
            self._reloading = False
            self.ready(listening)

    def stopping(self, drain_seconds: float) -> None:
        # The way out waits for in-flight deletions, then for a reconciliation pass, each
        # up to drain_seconds: TimeoutStopSec= bounds the stop, not the watchdog.
        self.notifier.stopping(
            f"stopping: finishing in-flight deletions (at most {drain_seconds:.0f}s)",
            watchdog_seconds=2 * drain_seconds + STOP_MARGIN if self.watchdog else None,
        )

    def tick(self) -> liveness.Liveness:
        """Look at the health: ``WATCHDOG=1`` if it is good, a status line that says it."""
        health = liveness.check(self.listener)
        if health.ok != self._healthy:
            if not health.ok:
                LOG.warning("listener unhealthy, not feeding the watchdog: %s", health.reason)
            elif self._healthy is not None:
                LOG.info("listener healthy again: %s", health.reason)
            self._healthy = health.ok
        if not health.ok:
            self._set_status(health.reason)
            return health
        if self.handler.breaker.is_open:
            parked = self.handler.parking.count()
            text = f"K2HR3 failing: {self.k2hr3_error() or 'deletions wait and are retried'}"
            text += f"; {parked} parked" if parked else ""
        else:
            text = self._listening
        if self.reconcile_leader():
            text += "; reconciling for the pool"
        reconcile = self.reconcile_error()
        self._set_status(f"{text}; reconciliation failing {reconcile}" if reconcile else text)
        if self.watchdog:
            self.notifier.watchdog()
        return health
