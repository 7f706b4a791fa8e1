"""What happens to notifications, a batch at a time, from decision to acknowledgement.

The rule that makes the daemon lose nothing: a notification is acknowledged only once
its deletion reached K2HR3, or it was found unusable, or it was parked on disk. Only a
stopping daemon hands a message back to RabbitMQ, so nothing can loop on the broker.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from k2hr3_osnl import logs
from k2hr3_osnl.breaker import CircuitBreaker, Turn
from k2hr3_osnl.events import Delete, Ignore, decide
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
    #: time.monotonic() when the listener took it from RabbitMQ, if known: its retry
    #: budget counts from then, however long it waited for a free worker thread.
    received: float | None = None


class Result(enum.Enum):
    """What became of a notification; every value but REQUEUED means acknowledge it."""

    DELETED = "deleted"
    IGNORED = "ignored"
    INVALID = "invalid"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    #: Only while stopping: RabbitMQ gets it back and delivers it again later.
    REQUEUED = "requeued"


_DUPLICATE = "already delivered within the duplicate window"
_HANDED_BACK = "handed back to RabbitMQ: the daemon is stopping"


@dataclass(slots=True, eq=False)
class _Item:
    """One notification of a batch on its way to a result."""

    note: Notification
    delete: Delete | None = None
    attempts: int = 0
    answer: Answer | None = None
    result: Result | None = None
    first_seen: float | None = None
    #: This batch holds the message_id's claim in the duplicate window.
    claimed: bool = False
    #: Parking failed: the batch pauses before it is handed back.
    unparkable: bool = False

    def fields(self) -> dict[str, Any]:
        note = self.note
        return {
            "message_id": note.message_id,
            "event_type": note.event_type,
            "publisher_id": note.publisher_id,
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
        return self.handle_batch([note])[0]

    def handle_batch(self, notes: Sequence[Notification]) -> list[Result]:
        """Settle every notification of a batch; their K2HR3 calls go out together.

        Returns one result per notification, in order, once all are settled: the
        listener acknowledges a batch when this returns.
        """
        items = [_Item(note) for note in notes]
        try:
            for item in items:
                self.observer.handling(item.note)
                # Every line logged about it says which notification it is about.
                with logs.fields(**item.fields()):
                    self._triage(item, self.recent.try_begin)
            self._deliver_claimed([item for item in items if item.delete and item.claimed])
            # Copies of a message that was being delivered (by another batch, or earlier
            # in this one): now that this batch holds no claim, wait for that delivery,
            # and call K2HR3 only if it did not deliver.
            waiting = [i for i in items if i.delete and i.result is None and not i.claimed]
            for item in waiting:
                with logs.fields(**item.fields()):
                    self._claim(item, self.recent.begin)
            self._deliver_claimed([item for item in waiting if item.claimed])
            if any(item.unparkable for item in items):
                time.sleep(PARK_FAILURE_PAUSE)
            return [item.result or Result.REQUEUED for item in items]
        finally:
            for item in items:
                self.observer.handled(item.note, item.result)

    def _deliver_claimed(self, items: list[_Item]) -> None:
        if not items:
            return
        try:
            self._deliver(items)
        finally:
            for item in items:
                self.recent.end(item.note.message_id)

    def _triage(self, item: _Item, begin: Callable[[object], bool | None]) -> None:
        """Decide; settle at once what needs no call, or claim the delivery."""
        note = item.note
        try:
            decision = decide(note.event_type, note.payload)
        except Exception as error:
            # A bug of ours: keep the deletion for an operator rather than drop it.
            LOG.exception("message_id=%s failed", note.message_id)
            item.result = self._park(item, f"internal error: {error!r}")
            return
        if isinstance(decision, Delete):
            item.delete = decision
            self._claim(item, begin)
            return
        item.result = Result.IGNORED if isinstance(decision, Ignore) else Result.INVALID
        self._report(item, decision.reason)

    def _claim(self, item: _Item, begin: Callable[[object], bool | None]) -> None:
        claimed = begin(item.note.message_id)
        if claimed is False:
            item.result = Result.DUPLICATE
            self._report(item, _DUPLICATE)
        item.claimed = bool(claimed)

    def _report(self, item: _Item, why: str) -> None:
        """The log line of an outcome that has no line of its own (a call, a parking)."""
        assert item.result is not None
        LOG.log(
            logging.WARNING if item.result is Result.INVALID else logging.DEBUG,
            "message_id=%s event_type=%s %s: %s",
            item.note.message_id,
            item.note.event_type,
            item.result.value,
            why,
            extra={"outcome": item.result.value},
        )

    def _deliver(self, items: list[_Item]) -> None:
        """Call K2HR3 until each answered for good, the budget is spent, or we stop."""
        first_seen = time.time()
        for item in items:
            item.first_seen = first_seen
        now = self._clock()
        deadline = min(item.note.received or now for item in items) + self.retry_budget
        pending = items
        try:
            while pending:
                turn = self.breaker.wait_turn(deadline)
                if turn is Turn.GIVE_UP:
                    stopping = self._clock() < deadline
                    for item in pending:
                        with logs.fields(**item.fields()):
                            if stopping:
                                item.result = Result.REQUEUED
                                self._report(item, _HANDED_BACK)
                            else:
                                why = f"retry budget spent: {_describe(item.answer)}"
                                item.result = self._park(item, why)
                    return
                # While K2HR3 is failing, one deletion probes; the rest follow it.
                sending = pending[:1] if turn is Turn.PROBE else pending
                pending = self._attempt(turn, sending) + pending[len(sending) :]
        except Exception as error:
            LOG.exception("delivering %d deletions failed", len(items))
            for item in items:
                if item.result is None:
                    item.result = self._park(item, f"internal error: {error!r}")

    def _attempt(self, turn: Turn, items: list[_Item]) -> list[_Item]:
        """One call for each of ``items``, together; returns those to try again."""
        answers: list[Answer] | None = None
        try:
            for item in items:
                item.attempts += 1
            answers = self.client.delete_many(
                [_call(item.delete) for item in items],
                [{**item.fields(), "attempt": item.attempts} for item in items],
            )
        finally:
            # Report even when a bug of ours raised: a probe that never reports keeps
            # every other delivery waiting on the breaker until its budget is spent.
            ok = answers is not None and all(a.outcome is not Outcome.RETRY for a in answers)
            self.breaker.record(turn, ok)
        again: list[_Item] = []
        for item, answer in zip(items, answers, strict=True):
            item.answer = answer
            self.observer.answered(item.note, answer, item.attempts)
            if answer.outcome is Outcome.DELETED:
                self.recent.add(item.note.message_id)
                item.result = Result.DELETED
            elif answer.outcome is Outcome.REJECTED:
                with logs.fields(**item.fields()):
                    item.result = self._park(item, f"K2HR3 rejected it: {_describe(answer)}")
            else:
                again.append(item)
        return again

    def _park(self, item: _Item, reason: str) -> Result:
        note = item.note
        parked = Parked(
            message_id=str(note.message_id),
            event_type=str(note.event_type),
            publisher_id=str(note.publisher_id),
            payload=note.payload,
            reason=reason,
            attempts=item.attempts,
            first_seen=item.first_seen or time.time(),
        )
        try:
            path = self.parking.park(parked)
        except OSError as error:
            # Dropping it would leave a stale IP behind; hand it back, slowly, instead.
            LOG.critical(
                "message_id=%s cannot be parked (%s), requeueing: %s",
                note.message_id,
                error,
                reason,
            )
            item.unparkable = True
            return Result.REQUEUED
        LOG.error(
            "message_id=%s parked in %s: %s",
            note.message_id,
            path,
            reason,
            extra={"outcome": Result.PARKED.value, "attempt": item.attempts},
        )
        return Result.PARKED


def _call(delete: Delete | None) -> tuple[str, tuple[str, ...]]:
    assert delete is not None, "only claimed deliveries are sent"
    return delete.cuk, delete.ips


def _describe(answer: Answer | None) -> str:
    if answer is None:
        return "never called"
    status = f"status {answer.status}" if answer.status is not None else "no answer"
    return f"{status} {answer.detail}".strip()
