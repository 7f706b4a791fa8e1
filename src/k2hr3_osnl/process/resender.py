"""The thread that sends parked deletions again by themselves (rules: ``core/resend.py``).

Every ``tick`` seconds it reads the parking lot, counts it by cause for the metrics, and
sends what the rules say is due through the handler: the same breaker, duplicate window,
log line and metrics as a notification, never a second parked file. A dry-run daemon
only counts: it never sends, so it can never remove a live daemon's parked file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence

from k2hr3_osnl.core import resend
from k2hr3_osnl.core.events import made_by_us
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import Cause, Parked, ParkingLot, cause_of
from k2hr3_osnl.core.types import Notification

LOG = logging.getLogger(__name__)

#: Seconds between two looks at the parking lot.
TICK_SECONDS = 5.0
#: The longest a batch of re-sends may wait for K2HR3 once a probe got through. A probe,
#: and an hourly ``strikes`` try, gets about one attempt (:meth:`Resender._one_try`):
#: the next round tries again.
BUDGET_SECONDS = 30.0
#: Deletions sent together, as a batch from RabbitMQ would be.
BATCH = 32


class Resender:
    def __init__(
        self,
        handler: Handler,
        parking: ParkingLot,
        *,
        send: bool = True,
        tick: float = TICK_SECONDS,
        budget: float = BUDGET_SECONDS,
    ) -> None:
        self.handler = handler
        self.parking = parking
        self.send = send
        self.tick = tick
        self.budget = budget
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._told_dry_run = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="resender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_once()
            except Exception:
                # A bug of ours must not end re-sending for good; the files stay.
                LOG.exception("re-sending parked deletions failed; trying again later")

    def run_once(self, now: float | None = None) -> None:
        """One round: count the lot by cause, then send what is due."""
        now = time.time() if now is None else now
        items = list(self.parking)
        counts = Counter(cause_of(item) for item in items)
        self.handler.observer.parked_causes({cause: counts[cause] for cause in Cause.ALL})
        if not self.send:
            waiting = sum(counts[c] for c in resend.PASSING) + counts[Cause.STRIKES]
            if waiting and not self._told_dry_run:
                self._told_dry_run = True
                LOG.warning(
                    "%d parked deletion(s) in %s would be re-sent; dry run: never re-sent",
                    waiting,
                    self.parking.directory,
                )
            return
        todo = resend.plan(items, now, self.tick)
        probed = todo.probe is not None and self._send([todo.probe], now, self._one_try())
        if probed and todo.follow:
            LOG.info("K2HR3 works again: re-sending %d parked deletion(s)", len(todo.follow))
            for start in range(0, len(todo.follow), BATCH):
                if self._stop.is_set():
                    return
                self._send(todo.follow[start : start + BATCH], now, self.budget)
        for start in range(0, len(todo.due), BATCH):
            if self._stop.is_set():
                return
            self._send(todo.due[start : start + BATCH], now, self._one_try())

    def _one_try(self) -> float:
        """Long enough for one turn at the shared breaker, even while K2HR3 is failing
        (it lets a probe out at least every ``max_interval``), not for a retry loop."""
        return 2 * self.handler.breaker.max_interval

    def _send(self, items: Sequence[Parked], now: float, budget: float) -> bool:
        """Send ``items`` together, retrying for ``budget`` seconds (0: one attempt);
        True if any was delivered."""
        notes = [
            # A parked deletion of reconciliation's own is the daemon's, not the bus's.
            Notification(
                item.message_id,
                item.event_type,
                item.publisher_id,
                item.payload,
                internal=made_by_us(item.event_type),
            )
            for item in items
        ]
        delivered = False
        for item, (result, parked_as) in zip(
            items, self.handler.resend(notes, budget), strict=True
        ):
            cause = cause_of(item)
            verdict = resend.after(item, result, parked_as, now)
            try:
                if verdict.remove:
                    self.parking.remove(item)
                else:
                    self.parking.rewrite(verdict.item)
            except OSError as error:
                LOG.error("parked deletion %s: cannot update its file: %s", item.path, error)
            self.handler.observer.resent(cause, verdict.outcome)
            delivered |= verdict.remove
            LOG.log(
                logging.ERROR if verdict.outcome == resend.GAVE_UP else logging.INFO,
                "parked deletion %s (%s, re-sent %d time(s)) message_id=%s cuk=%s: %s",
                item.path,
                cause,
                item.resends + 1,
                item.message_id,
                item.cuk,
                verdict.why if not verdict.remove else f"{verdict.why}; file removed",
                extra={"cause": cause, "outcome": verdict.outcome},
            )
        return delivered
