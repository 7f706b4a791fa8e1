"""What happens to notifications, a batch at a time, from decision to acknowledgement.

The rule that makes the daemon lose nothing: every notification ends as exactly one of
delivered (K2HR3 answered 2xx), parked (a durable file), unusable (invalid, ignored or a
duplicate: logged and counted) or handed back to RabbitMQ. Only the first three are
acknowledged (:func:`acknowledges`, the one place that says so). A stopping daemon hands
back what it did not finish; so does a batch in which something of ours failed, or whose
parking failed, after a pause so that nothing loops fast on the broker.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from k2hr3_osnl.core.answers import Answer, Outcome, about_k2hr3, slowed_down
from k2hr3_osnl.core.breaker import CircuitBreaker, Turn
from k2hr3_osnl.core.delivered import deleted_whole
from k2hr3_osnl.core.events import Delete, Ignore, Proof, decide
from k2hr3_osnl.core.logfields import fields
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.parking import Cause, Parked, ParkingLot, cause_for
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.recheck import SCHEDULE, Rechecks
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.core.verification import UNAVAILABLE, Action, Verdict, Verifier, action

LOG = logging.getLogger(__name__)

#: Seconds to pause before handing back a batch that could not be settled (a disk that
#: will not take a parked file, a bug of ours), so that it does not loop fast on the broker.
PARK_FAILURE_PAUSE = 5.0

#: Times K2HR3 may fail one deletion (403) while it accepts others before that deletion
#: is parked, and the least time those failures must span: a bad cuk must not hold a
#: worker thread for the whole budget, and a K2HR3 hiccup of a few seconds, or one that
#: limits its rate, must never park anything. Failures that describe K2HR3 as a whole
#: (408, 429, 5xx, timeouts) never count (:func:`about_k2hr3`).
ITEM_STRIKES = 8
STRIKE_SPAN = 600.0


_DUPLICATE = "already delivered within the duplicate window"
_HANDED_BACK = "handed back to RabbitMQ: the daemon is stopping"
_STILL_BUSY = "handed back to RabbitMQ: another copy is still being delivered"


@dataclass(slots=True, eq=False)
class _Item:
    """One notification of a batch on its way to a result."""

    note: Notification
    delete: Delete | None = None
    attempts: int = 0
    answer: Answer | None = None
    result: Result | None = None
    first_seen: float | None = None
    #: This batch holds this deletion's claim in the duplicate window.
    claimed: bool = False
    #: Parking failed: the batch pauses before it is handed back.
    unparkable: bool = False
    #: Failures (403) while K2HR3 accepted other deletions: this one fails on its own.
    strikes: int = 0
    #: Clock time of its first strike: strikes must span STRIKE_SPAN to park it.
    first_strike: float | None = None
    #: Failures of any kind while K2HR3 accepted others: spaces its own retries.
    alone: int = 0
    #: Re-sent from the parking lot: never parked again, it already is (its file
    #: stays); ``parked_as`` says with what cause and reason it would be parked.
    resending: bool = False
    parked_as: tuple[str, str] | None = None
    #: The breaker's success count when this was last sent.
    successes_seen: int = 0
    #: Clock time before which it is not sent again (its own backoff).
    due: float = 0.0

    @property
    def key(self) -> str | None:
        """Its entry in the duplicate window: the message_id *and* the deletion, so that
        a publisher reusing a message_id for another deletion never has it skipped."""
        message_id, delete = self.note.message_id, self.delete
        if not isinstance(message_id, str) or delete is None:
            return None
        return "\x00".join((message_id, delete.cuk, *delete.ips))

    def fields(self) -> dict[str, Any]:
        note = self.note
        return {
            "message_id": note.message_id,
            "event_type": note.event_type,
            "publisher_id": note.publisher_id,
        }


class Client(Protocol):
    """What the handler needs of a K2HR3 client (k2hr3/client.py's RoleClient)."""

    dry_run: bool

    def delete_many(
        self,
        calls: Sequence[tuple[str, tuple[str, ...]]],
        fields: Sequence[Mapping[str, Any]] = (),
    ) -> list[Answer]: ...

    def close(self) -> None: ...


class Handler:
    def __init__(
        self,
        client: Client,
        breaker: CircuitBreaker,
        parking: ParkingLot,
        recent: RecentDeliveries,
        retry_budget: float,
        clock: Callable[[], float] = time.monotonic,
        observer: Observer | None = None,
        verifier: Verifier | None = None,
        park_unverified: bool = False,
        rechecks: Rechecks | None = None,
        strikes: int = ITEM_STRIKES,
        strike_span: float = STRIKE_SPAN,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.parking = parking
        self.recent = recent
        self.retry_budget = retry_budget
        self._clock = clock
        #: Told what happens, for metrics and health; does nothing by default.
        self.observer = observer or Observer()
        #: verify_deletions: asked between the decision and the delivery (None: off).
        self.verifier = verifier
        #: A deletion OpenStack could not answer for is parked rather than sent.
        self.park_unverified = park_unverified
        #: Where a deletion refused because OpenStack still shows it waits to be checked
        #: again (None: the refusal is final).
        self.rechecks = rechecks
        self.strikes = strikes
        self.strike_span = strike_span

    def handle(self, note: Notification) -> Result:
        return self.handle_batch([note])[0]

    def handle_batch(self, notes: Sequence[Notification]) -> list[Result]:
        """Settle every notification of a batch; their K2HR3 calls go out together.

        Returns one result per notification, in order, once all are settled: the
        listener acknowledges a batch when this returns. It does not raise: should
        something of ours fail, what is not settled yet comes back REQUEUED.
        """
        return [item.result or Result.REQUEUED for item in self._handle([_Item(n) for n in notes])]

    def resend(
        self, notes: Sequence[Notification], budget: float
    ) -> list[tuple[Result, tuple[str, str] | None]]:
        """Deliver parked deletions again, for at most ``budget`` seconds.

        The same way as any notification (breaker, duplicate window, metrics, log
        lines) except that nothing is parked: each comes back with its result and, if it
        would have been parked, ``(cause, reason)``; its file is the caller's to keep.
        """
        start = self._clock()
        items = [
            _Item(
                Notification(
                    n.message_id,
                    n.event_type,
                    n.publisher_id,
                    n.payload,
                    received=start - self.retry_budget + budget,
                    internal=n.internal,
                ),
                resending=True,
            )
            for n in notes
        ]
        return [(item.result or Result.REQUEUED, item.parked_as) for item in self._handle(items)]

    def _handle(self, items: list[_Item]) -> list[_Item]:
        failed = False
        try:
            self._settle(items)
        except Exception:
            failed = True
            unsettled = sum(1 for item in items if item.result is None)
            LOG.exception(
                "handling a batch of %d failed; %d handed back to RabbitMQ", len(items), unsettled
            )
        finally:
            for item in items:
                self.observer.handled(item.note, item.result)
                if (cuk := deleted_whole(item.delete, item.result)) is not None:
                    self.observer.forgot(cuk)
        if failed or any(item.unparkable for item in items):
            self.breaker.pause(PARK_FAILURE_PAUSE)
        return items

    def _settle(self, items: list[_Item]) -> None:
        for item in items:
            self.observer.handling(item.note)
            # Every line logged about it says which notification it is about.
            with fields(**item.fields()):
                self._triage(item, self.recent.try_begin)
        self._deliver_claimed([item for item in items if item.delete and item.claimed])
        # Copies of a message that was being delivered (by another batch, or earlier in
        # this one): one at a time, holding no other claim while waiting, so two batches
        # cannot wait for each other; K2HR3 is called only if that delivery failed.
        for item in items:
            if item.delete and item.result is None and not item.claimed:
                with fields(**item.fields()):
                    self._claim_waiting(item)
                self._deliver_claimed([item] if item.claimed else [])

    def _deliver_claimed(self, items: list[_Item]) -> None:
        if not items:
            return
        try:
            sending = self._verify(items)
            if sending:
                self._deliver(sending)
        finally:
            for item in items:
                self.recent.end(item.key)

    def _verify(self, items: list[_Item]) -> list[_Item]:
        """The verification step: settles what must not be sent now, returns the rest.

        The daemon's own deletions (Nova listed the server as deleted, or a re-check
        just verified it) and deletions whose source needs no proof are not asked about.
        """
        verifier = self.verifier
        asked = [
            item
            for item in items
            if verifier is not None and not item.note.internal and _proof(item) is not None
        ]
        if verifier is None or not asked:
            return items
        checks = verifier.verify([_delete(item) for item in asked])
        for item, check in zip(asked, checks, strict=True):
            proof = _proof(item)
            assert proof is not None
            self.observer.verified(proof.target, check.verdict.value)
            todo = action(check, self.park_unverified)
            with fields(**item.fields()):
                if todo is Action.PARK and self.client.dry_run:
                    # A dry run shares state_dir with the live daemon: it parks nothing.
                    item.result = Result.INVALID
                    self._report(item, f"dry run: would park it ({UNAVAILABLE}: {check.detail})")
                elif todo is Action.PARK:
                    item.result = self._park(item, f"{UNAVAILABLE}: {check.detail}")
                elif todo is Action.REFUSE and check.verdict is Verdict.EXISTS and self.rechecks:
                    item.result = self._hold(item, check.detail)
                elif todo is Action.REFUSE:
                    item.result = Result.INVALID
                    self._report(item, check.detail)
        return [item for item in items if item.result is None]

    def _hold(self, item: _Item, why: str) -> Result:
        """Refused for now: acknowledged, and held on disk to be checked again."""
        assert self.rechecks is not None
        try:
            self.rechecks.hold(item.note, _delete(item), why)
        except Exception as error:
            # Holding it is what keeps it; without that, hand it back, slowly.
            LOG.critical(
                "message_id=%s cannot be held (%s), requeueing", item.note.message_id, error
            )
            item.unparkable = True
            return Result.REQUEUED
        item.result = Result.INVALID
        self._report(item, f"{why}; checked again in {SCHEDULE[0]:.0f}s")
        return item.result

    def _triage(self, item: _Item, begin: Callable[[object], bool | None]) -> None:
        """Decide; settle at once what needs no call, or claim the delivery."""
        note = item.note
        try:
            decision = decide(note.event_type, note.payload, internal=note.internal)
        except Exception as error:
            # A bug of ours: keep the deletion for an operator rather than drop it.
            LOG.exception("message_id=%s failed", note.message_id)
            item.result = self._park(item, f"internal error: {error!r}", Cause.OPERATOR)
            return
        if isinstance(decision, Delete):
            item.delete = decision
            self._claim(item, begin)
            return
        item.result = Result.IGNORED if isinstance(decision, Ignore) else Result.INVALID
        self._report(item, decision.reason)

    def _claim(self, item: _Item, begin: Callable[[object], bool | None]) -> None:
        """``begin`` says True (ours to deliver), False (delivered) or None (busy)."""
        claimed = begin(item.key)
        if claimed is False:
            item.result = Result.DUPLICATE
            self._report(item, _DUPLICATE)
        item.claimed = bool(claimed)

    def _claim_waiting(self, item: _Item) -> None:
        """Wait for the copy being delivered, no longer than a message's budget."""
        self._claim(item, lambda key: self.recent.begin(key, self.retry_budget))
        if item.result is None and not item.claimed:
            item.result = Result.REQUEUED
            self._report(item, _STILL_BUSY)

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
            item.successes_seen = self.breaker.successes
        now = self._clock()
        deadline = min(item.note.received or now for item in items) + self.retry_budget
        pending = items
        while pending:
            # A deletion that K2HR3 fails on its own waits out its own backoff first.
            wait = min(item.due for item in pending) - self._clock()
            if wait > 0:
                self.breaker.pause(wait)
            turn = self.breaker.wait_turn(deadline)
            if turn is Turn.GIVE_UP:
                self._give_up(pending, stopping=self._clock() < deadline)
                return
            now = self._clock()
            ready = [item for item in pending if item.due <= now]
            # While K2HR3 is failing, one deletion probes; the rest follow it.
            sending = ready[:1] if turn is Turn.PROBE else ready
            if turn is Turn.CALL:
                # At the rate K2HR3 asked for, if it asked: the rest wait their turn.
                sending = sending[: self.breaker.admit(len(sending))]
                if not sending:
                    if self._clock() >= deadline:
                        # Waited its whole budget for a turn: parked, K2HR3 is busy.
                        self._give_up(pending, stopping=False)
                        return
                    self.breaker.pause(max(self.breaker.next_window(), 0.001))
                    continue
            again = self._attempt(turn, sending)
            pending = [item for item in pending if item.result is None]
            if again and self._clock() >= deadline:
                # The breaker is closed (K2HR3 accepts others), yet these still fail.
                self._give_up(again, stopping=False)
                pending = [item for item in pending if item.result is None]

    def _give_up(self, items: list[_Item], stopping: bool) -> None:
        for item in items:
            with fields(**item.fields()):
                if stopping:
                    item.result = Result.REQUEUED
                    self._report(item, _HANDED_BACK)
                else:
                    # One that K2HR3 refused on its own, or refused to the end with
                    # a 403, is a strike case (hourly, then an operator); anything else
                    # ran out during trouble of K2HR3's, which passes by itself.
                    refused = item.answer is not None and not about_k2hr3(item.answer)
                    cause = Cause.STRIKES if item.strikes or refused else Cause.OUTAGE
                    why = f"retry budget spent: {_describe(item.answer)}"
                    item.result = self._park(item, why, cause)

    def _attempt(self, turn: Turn, items: list[_Item]) -> list[_Item]:
        """One call for each of ``items``, together; returns those to try again."""
        answers: list[Answer] | None = None
        hold: float | None = None
        accepted = 0
        try:
            for item in items:
                item.attempts += 1
            answers = self.client.delete_many(
                [_call(item.delete) for item in items],
                [{**item.fields(), "attempt": item.attempts} for item in items],
            )
            hold = _hold(answers, self.breaker.max_interval)
            accepted = sum(1 for a in answers if a.outcome is not Outcome.RETRY)
        finally:
            # Report even when a bug of ours raised: a probe that never reports keeps
            # every other delivery waiting on the breaker until its budget is spent.
            self.breaker.record(turn, _verdict(items, answers), hold, accepted)
        again: list[_Item] = []
        for item, answer in zip(items, answers, strict=True):
            item.answer = answer
            self.observer.answered(item.note, answer, item.attempts)
            if answer.outcome is Outcome.DELETED:
                self.recent.add(item.key)
                item.result = Result.DELETED
            elif answer.outcome is Outcome.REJECTED:
                with fields(**item.fields()):
                    why = f"K2HR3 rejected it: {_describe(answer)}"
                    item.result = self._park(item, why, Cause.OPERATOR)
            elif self._strike(item, answer):
                with fields(**item.fields()):
                    why = (
                        f"K2HR3 failed it {item.strikes} times in "
                        f"{self._clock() - (item.first_strike or 0):.0f}s while accepting "
                        f"other deletions: {_describe(answer)}"
                    )
                    item.result = self._park(item, why, Cause.STRIKES)
            else:
                again.append(item)
        return again

    def _strike(self, item: _Item, answer: Answer) -> bool:
        """Count a failure of ``item``; True once it has failed on its own long enough.

        A failure while K2HR3 accepted something else is the deletion's alone: it then
        waits out a backoff of its own (the breaker, which no longer hears about it,
        will not space its retries), unless K2HR3 asked everyone to slow down, which
        the breaker's hold already paces. Only a failure that does not describe K2HR3
        as a whole is a strike, and strikes park it only once there are enough of them
        over long enough.
        """
        now = self._clock()
        successes = self.breaker.successes
        alone = successes > item.successes_seen and not slowed_down(answer)
        item.successes_seen = successes
        if alone:
            item.alone += 1
            if not about_k2hr3(answer):
                item.strikes += 1
                if item.first_strike is None:
                    item.first_strike = now
        if item.alone and not slowed_down(answer):
            cap = self.breaker.max_interval
            if item.strikes:
                # Strikes spread over the span: no faster than the span allows.
                cap = max(cap, self.strike_span / max(1, self.strikes))
            backoff = min(cap, self.breaker.min_interval * 2 ** min(item.alone, 30))
            item.due = now + backoff * random.uniform(0.8, 1.0)
        return (
            item.strikes >= self.strikes
            and item.first_strike is not None
            and now - item.first_strike >= self.strike_span
        )

    def _park(self, item: _Item, reason: str, cause: str | None = None) -> Result:
        """Keep it on disk with why (``cause``: what may send it again, see parking)."""
        note = item.note
        cause = cause or cause_for(reason)
        if item.resending:
            item.parked_as = (cause, reason)
            return Result.PARKED
        parked = Parked(
            message_id=str(note.message_id),
            event_type=str(note.event_type),
            publisher_id=str(note.publisher_id),
            payload=note.payload,
            reason=reason,
            attempts=item.attempts,
            first_seen=item.first_seen or time.time(),
            cuk=item.delete.cuk if item.delete else None,
            ips=list(item.delete.ips) if item.delete else [],
            cause=cause,
        )
        try:
            path = self.parking.park(parked)
        except Exception as error:
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
            "message_id=%s parked in %s (%s): %s",
            note.message_id,
            path,
            cause,
            reason,
            extra={"outcome": Result.PARKED.value, "attempt": item.attempts, "cause": cause},
        )
        return Result.PARKED


def _delete(item: _Item) -> Delete:
    assert item.delete is not None, "only claimed deliveries are verified"
    return item.delete


def _proof(item: _Item) -> Proof | None:
    return item.delete.proof if item.delete is not None else None


def _call(delete: Delete | None) -> tuple[str, tuple[str, ...]]:
    assert delete is not None, "only claimed deliveries are sent"
    return delete.cuk, delete.ips


def _verdict(items: list[_Item], answers: list[Answer] | None) -> bool | None:
    """What a round of calls says of K2HR3 as a whole, for the breaker.

    Anything accepted: it works. Only deletions that already failed alone while K2HR3
    accepted others: nothing. Otherwise (every call failed, or a bug of ours): failing.
    """
    if answers is not None and any(a.outcome is not Outcome.RETRY for a in answers):
        return True
    if answers is not None and all(item.alone for item in items):
        return None
    return False


def _hold(answers: list[Answer], interval: float) -> float | None:
    """How long K2HR3 asked everyone to wait: its longest ``Retry-After``, or for a 429
    that gave none, the breaker's interval; None when it did not ask."""
    waits = [a.retry_after or interval for a in answers if slowed_down(a)]
    return max(waits) if waits else None


def _describe(answer: Answer | None) -> str:
    if answer is None:
        return "never called"
    status = f"status {answer.status}" if answer.status is not None else "no answer"
    return f"{status} {answer.detail}".strip()
