"""What happens to one notification, from decision to acknowledgement.

The rule that makes the daemon lose nothing: a notification is acknowledged only once
its deletion reached K2HR3, or it was found unusable, or it was parked on disk. Only a
stopping daemon hands a message back to RabbitMQ, so nothing can loop on the broker.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k2hr3_osnl import logs
from k2hr3_osnl.breaker import CircuitBreaker, Turn
from k2hr3_osnl.events import Decision, Delete, Ignore, Invalid, decide
from k2hr3_osnl.k2hr3 import Answer, Outcome, RoleClient
from k2hr3_osnl.observer import Observer
from k2hr3_osnl.parking import Parked, ParkingLot
from k2hr3_osnl.recent import RecentIds

LOG = logging.getLogger(__name__)

#: Seconds to pause before requeueing a message that could not be parked, so that a
#: full or read-only disk does not turn into a hot loop on the broker.
PARK_FAILURE_PAUSE = 5.0


@dataclass(frozen=True, slots=True)
class Notification:
    message_id: Any
    event_type: Any
    publisher_id: Any
    payload: Any


class Result(enum.Enum):
    """What became of a notification; every value but REQUEUED means acknowledge it."""

    DELETED = "deleted"
    IGNORED = "ignored"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    #: Only while stopping: RabbitMQ gets it back and delivers it again later.
    REQUEUED = "requeued"


_WHY = {
    Result.DELETED: None,
    Result.PARKED: None,
    Result.DUPLICATE: "already delivered within the duplicate window",
    Result.REQUEUED: "handed back to RabbitMQ: the daemon is stopping",
}


class Handler:
    def __init__(
        self,
        client: RoleClient,
        breaker: CircuitBreaker,
        parking: ParkingLot,
        recent: RecentIds,
        retry_budget: float,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.parking = parking
        self.recent = recent
        self.retry_budget = retry_budget
        self._clock = clock
        #: Told what happens, for metrics and health; does nothing by default.
        self.observer = observer or Observer()

    def handle(self, note: Notification) -> Result:
        self.observer.handling(note)
        result: Result | None = None
        try:
            # Every line logged while handling it says which notification it is about.
            with logs.fields(
                message_id=note.message_id,
                event_type=note.event_type,
                publisher_id=note.publisher_id,
            ):
                result = self._handle(note)
            return result
        finally:
            self.observer.handled(note, result)

    def _handle(self, note: Notification) -> Result:
        decision = decide(note.event_type, note.payload)
        try:
            result = self._act(note, decision)
        except Exception as error:
            # A bug of ours: keep the deletion for an operator rather than drop it.
            LOG.exception("message_id=%s failed", note.message_id)
            return self._park(note, f"internal error: {error!r}", 0, time.time())
        # DELETED and PARKED have their own lines (the K2HR3 call, the parking place).
        why = _WHY.get(result) or getattr(decision, "reason", None)
        if why is not None:
            LOG.log(
                logging.WARNING if result is Result.INVALID else logging.DEBUG,
                "message_id=%s event_type=%s %s: %s",
                note.message_id,
                note.event_type,
                result.value,
                why,
                extra={"outcome": result.value},
            )
        return result

    def _act(self, note: Notification, decision: Decision) -> Result:
        if isinstance(decision, Ignore):
            return Result.IGNORED
        if isinstance(decision, Invalid):
            return Result.INVALID
        if not self.recent.begin(note.message_id):
            return Result.DUPLICATE
        try:
            return self.deliver(note, decision)
        finally:
            self.recent.end(note.message_id)

    def deliver(self, note: Notification, delete: Delete) -> Result:
        """Call K2HR3 until it answers for good, the budget is spent, or we stop."""
        first_seen = time.time()
        deadline = self._clock() + self.retry_budget
        attempts = 0
        answer: Answer | None = None
        while True:
            turn = self.breaker.wait_turn(deadline)
            if turn is Turn.GIVE_UP:
                if self._clock() < deadline:
                    return Result.REQUEUED
                return self._park(
                    note, f"retry budget spent: {_describe(answer)}", attempts, first_seen
                )
            attempts += 1
            answer = None
            try:
                with logs.fields(attempt=attempts):
                    answer = self.client.delete(delete.cuk, delete.ips)
                self.observer.answered(note, answer, attempts)
            finally:
                # Report even when a bug of ours raised: a probe that never reports keeps
                # every other delivery waiting on the breaker until its budget is spent.
                ok = answer is not None and answer.outcome is not Outcome.RETRY
                self.breaker.record(turn, ok)
            if answer.outcome is Outcome.DELETED:
                self.recent.add(note.message_id)
                return Result.DELETED
            if answer.outcome is Outcome.REJECTED:
                return self._park(
                    note, f"K2HR3 rejected it: {_describe(answer)}", attempts, first_seen
                )

    def _park(self, note: Notification, reason: str, attempts: int, first_seen: float) -> Result:
        item = Parked(
            message_id=str(note.message_id),
            event_type=str(note.event_type),
            publisher_id=str(note.publisher_id),
            payload=note.payload,
            reason=reason,
            attempts=attempts,
            first_seen=first_seen,
        )
        try:
            path = self.parking.park(item)
        except OSError as error:
            # Dropping it would leave a stale IP behind; hand it back, slowly, instead.
            LOG.critical(
                "message_id=%s cannot be parked (%s), requeueing: %s",
                note.message_id,
                error,
                reason,
            )
            time.sleep(PARK_FAILURE_PAUSE)
            return Result.REQUEUED
        LOG.error(
            "message_id=%s parked in %s: %s",
            note.message_id,
            path,
            reason,
            extra={"outcome": Result.PARKED.value, "attempt": attempts},
        )
        return Result.PARKED


def _describe(answer: Answer | None) -> str:
    if answer is None:
        return "never called"
    status = f"status {answer.status}" if answer.status is not None else "no answer"
    return f"{status} {answer.detail}".strip()
