"""Refused deletions checked again when due (:mod:`k2hr3_osnl.core.recheck` says when)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from k2hr3_osnl.core.events import Delete, decide
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import Parked
from k2hr3_osnl.core.recheck import Rechecks, next_check
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.core.verification import Verdict, Verifier
from k2hr3_osnl.reconcile.verify import CloudVerifier
from k2hr3_osnl.reconcile.view import prove_later

LOG = logging.getLogger(__name__)

#: Seconds between looks at the refusals held for another check.
RECHECK_INTERVAL = 10.0
#: The outcome counted when a refusal is final (k2hr3_osnl_verifications_total).
DROPPED = "dropped"


class Rechecker:
    """Checks the held refusals (:mod:`k2hr3_osnl.core.recheck`) again when they are due.

    Gone now: handed to the handler as the daemon's own notification (not verified
    again). Still there at the last check: dropped, counted and logged as refused. No
    answer: left as it is, for the next look.
    """

    def __init__(
        self,
        rechecks: Rechecks,
        verifier: Verifier,
        handler: Handler,
        interval: float = RECHECK_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rechecks = rechecks
        self.verifier = verifier
        self.handler = handler
        self.interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recheck", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if isinstance(self.verifier, CloudVerifier) and not self.verifier.view_proven:
                    prove_later(self.verifier)
                self.run_once()
            except Exception:  # a bug of ours: the files stay, the next look tries again
                LOG.exception("re-checking refused deletions failed")
            self._stop.wait(self.interval)

    def run_once(self) -> None:
        for item in self.rechecks.due(self._clock()):
            if self._stop.is_set():
                return
            self._recheck(item)

    def _recheck(self, item: Parked) -> None:
        decision = decide(item.event_type, item.payload)
        if not isinstance(decision, Delete) or decision.proof is None:
            LOG.warning("%s: not a deletion to verify (edited?): removed", item.path)
            self.rechecks.remove(item)
            return
        target = decision.proof.target
        observer = self.handler.observer
        (check,) = self.verifier.verify([decision])
        if check.verdict is Verdict.GONE:
            observer.verified(target, check.verdict.value)
            note = Notification(
                item.message_id,
                item.event_type,
                item.publisher_id,
                item.payload,
                received=time.monotonic(),
                internal=True,
            )
            LOG.info(
                "message_id=%s re-checked: %s (first refused %.0fs ago): sending it",
                item.message_id,
                check.detail,
                self._clock() - item.first_seen,
            )
            if self.handler.handle_batch([note])[0] is not Result.REQUEUED:
                self.rechecks.remove(item)
        elif check.verdict in (Verdict.EXISTS, Verdict.REFUSED):
            if next_check(item.first_seen, item.attempts + 1) is not None:
                observer.verified(target, check.verdict.value)
                self.rechecks.checked(item)
                return
            observer.verified(target, DROPPED)
            LOG.warning(
                "message_id=%s event_type=%s %s: refused for good after %d checks over "
                "%.0f minutes: %s",
                item.message_id,
                item.event_type,
                Result.INVALID.value,
                item.attempts + 1,
                (self._clock() - item.first_seen) / 60,
                check.detail,
                extra={"outcome": Result.INVALID.value},
            )
            self.rechecks.remove(item)  # after the line: whoever sees it gone can read why
        # No answer: left as it is; the next look asks again.
