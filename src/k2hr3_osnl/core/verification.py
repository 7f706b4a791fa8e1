"""The verification step: what the handler asks before it believes a deletion.

With ``[reconcile] verify_deletions``, each deletion decided from the bus is checked with
OpenStack between the decision and the delivery (:class:`~k2hr3_osnl.core.handler.Handler`
calls a :class:`Verifier` given to it at construction). The verifier answers a
:class:`Check` per deletion; what the handler then does with it is decided here, in one
place (:func:`action`), so that the policy is the same for every source.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from k2hr3_osnl.core.events import Delete

#: Reason prefix of a deletion parked because it could not be verified: what the
#: parked re-send recognises as a passing cause.
UNAVAILABLE = "verification unavailable"


class Verdict(enum.Enum):
    #: OpenStack shows it gone: send it.
    GONE = "gone"
    #: OpenStack still shows it (forged, misrouted, or a lagging replica): not now.
    EXISTS = "exists"
    #: It can never be verified (a port deletion without a usable port id): refuse it.
    REFUSED = "refused"
    #: Verification is broken until someone acts (401/403): never obeyed unverified.
    BROKEN = "broken"
    #: No answer (5xx, timeout, the verifier's breaker or deadline): the policy decides.
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Check:
    verdict: Verdict
    #: One line for the log: what was asked and what was answered.
    detail: str = ""


class Verifier(Protocol):
    """What the handler needs of a verifier (reconcile/verify.py's CloudVerifier)."""

    def verify(self, deletions: Sequence[Delete]) -> list[Check]:
        """One check per deletion, in order; never raises for OpenStack's faults."""
        ...


class Action(enum.Enum):
    SEND = "send"
    #: Acknowledged unsent; re-checked later (``EXISTS``) or never (``REFUSED``).
    REFUSE = "refuse"
    #: Parked with a reason starting with :data:`UNAVAILABLE`: not lost, not obeyed.
    PARK = "park"


def action(check: Check, park_unknown: bool) -> Action:
    """The verification policy: what a check means for the deletion."""
    if check.verdict is Verdict.GONE:
        return Action.SEND
    if check.verdict is Verdict.UNKNOWN:
        return Action.PARK if park_unknown else Action.SEND
    if check.verdict is Verdict.BROKEN:
        return Action.PARK
    return Action.REFUSE


class Breaker:
    """Whether to ask OpenStack now: after a round without answers, not until a backoff
    has passed (doubling up to ``max_interval``), so that a Keystone that never answers
    costs one bounded wait per backoff, not one per notification."""

    def __init__(
        self,
        min_interval: float = 1.0,
        max_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval = min_interval
        self.max_interval = max_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._interval = min_interval
        self._next = 0.0
        self.open = False

    def allow(self) -> bool:
        """True: ask (closed, or the one probe after the backoff); False: answer UNKNOWN."""
        with self._lock:
            if not self.open:
                return True
            now = self._clock()
            if now < self._next:
                return False
            # One probe per backoff: the next one only after another interval.
            self._next = now + self._interval
            return True

    def record(self, answered: bool) -> None:
        with self._lock:
            if answered:
                self.open = False
                self._interval = self.min_interval
                return
            self.open = True
            self._next = self._clock() + self._interval
            self._interval = min(self.max_interval, self._interval * 2)
