"""When parked deletions go out again by themselves, and what becomes of their files.

A cause that passes (K2HR3 down for longer than the retry budget; verification
unavailable) must not wait for a human: one parked deletion probes, spaced by a backoff
of its own, and once one is delivered the others of a passing cause follow at once. A
cuk that K2HR3 refused on its own (``strikes``) is tried hourly for a day, then waits for
an operator. What needs an operator (400, 404) is never sent from here.

The acknowledgement rule holds for files too: a file is removed only once its deletion
was delivered (or found delivered already); anything else keeps it, with its new cause
and count written in it. Pure: the loop that applies this is ``process/resender.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from k2hr3_osnl.core.parking import Cause, Parked, cause_of
from k2hr3_osnl.core.types import Result

#: Causes that pass by themselves: their deletions go out once things work again.
PASSING = frozenset({Cause.OUTAGE, Cause.VERIFICATION})
#: A ``strikes`` deletion: tried this often, this many times, then left to an operator.
STRIKE_EVERY = 3600.0
STRIKE_TRIES = 24
#: The longest pause between two probes with the same passing deletion.
PASSING_BACKOFF_MAX = 300.0

#: What a re-send did, for metrics: delivered (file removed), failed (kept), gave_up
#: (kept, now for an operator).
DELIVERED, FAILED, GAVE_UP = "delivered", "failed", "gave_up"


def due_at(item: Parked, tick: float) -> float | None:
    """Unix time at which ``item`` may be sent again by itself; None: never."""
    cause = cause_of(item)
    since = item.last_resend if item.last_resend is not None else item.parked_at
    if cause in PASSING:
        return since + min(PASSING_BACKOFF_MAX, tick * 2 ** min(item.resends, 30))
    if cause == Cause.STRIKES and item.resends < STRIKE_TRIES:
        return since + STRIKE_EVERY
    return None


@dataclass
class Plan:
    """One round: ``probe`` first; ``follow`` only if the probe was delivered; ``due``
    (strike deletions whose hour has come) whatever the probe did."""

    probe: Parked | None = None
    follow: list[Parked] = field(default_factory=list)
    due: list[Parked] = field(default_factory=list)


def plan(items: Iterable[Parked], now: float, tick: float) -> Plan:
    """What to send in the round at ``now``."""
    passing: list[tuple[float, Parked]] = []
    result = Plan()
    for item in items:
        when = due_at(item, tick)
        if when is None:
            continue
        if cause_of(item) in PASSING:
            passing.append((when, item))
        elif when <= now:
            result.due.append(item)
    passing.sort(key=lambda pair: pair[0])
    if passing and passing[0][0] <= now:
        result.probe = passing[0][1]
        # Once the probe is delivered, whatever kept the others parked has passed.
        result.follow = [item for _, item in passing[1:]]
    return result


@dataclass(frozen=True)
class Verdict:
    """What to do with a file after its re-send: remove it, or keep ``item`` (rewritten)."""

    outcome: str
    remove: bool
    item: Parked
    #: A line for the log: what happened.
    why: str


def after(item: Parked, result: Result, parked_as: tuple[str, str] | None, now: float) -> Verdict:
    """The file's fate after a re-send that ended in ``result``."""
    cause = cause_of(item)
    if result in (Result.DELETED, Result.DUPLICATE):
        return Verdict(DELIVERED, True, item, f"delivered ({result.value})")
    if parked_as is not None:
        new_cause, reason = parked_as
    elif result in (Result.INVALID, Result.IGNORED):
        new_cause, reason = Cause.OPERATOR, f"re-sent and found {result.value}: see the log"
    else:
        # Handed back (the daemon stops): nothing learnt, the same cause.
        new_cause, reason = cause, item.reason
    if cause == Cause.STRIKES and new_cause == Cause.OUTAGE:
        # One short try cannot tell a cuk that K2HR3 refuses from K2HR3 being down: the
        # hourly schedule, not a passing cause, decides what becomes of it.
        new_cause = Cause.STRIKES
    kept = replace(item, cause=new_cause, reason=reason, resends=item.resends + 1, last_resend=now)
    if new_cause == Cause.STRIKES and kept.resends >= STRIKE_TRIES:
        kept = replace(
            kept,
            cause=Cause.OPERATOR,
            reason=f"{reason}; re-sent every {STRIKE_EVERY / 3600:g}h {STRIKE_TRIES} times "
            "without success: needs an operator",
        )
        return Verdict(GAVE_UP, False, kept, kept.reason)
    outcome = GAVE_UP if new_cause == Cause.OPERATOR and cause != Cause.OPERATOR else FAILED
    return Verdict(outcome, False, kept, f"still parked ({new_cause}): {reason}")
