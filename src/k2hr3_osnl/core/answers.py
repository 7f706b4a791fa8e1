"""What K2HR3's answers mean: the status policy, apart from the client that gets them."""

from __future__ import annotations

import email.utils
import enum
import math
from dataclasses import dataclass

#: The longest Retry-After honoured: a K2HR3 (or a proxy) asking for an hour must not
#: hold every deletion that long; the retry budget and parking take over instead.
MAX_RETRY_AFTER = 300.0


class Outcome(enum.Enum):
    DELETED = "deleted"
    #: Worth another try later: K2HR3's storage or server is in trouble, or unreachable.
    RETRY = "retry"
    #: Trying again will not help: the caller is not allowed, or the URL is wrong.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    status: int | None
    detail: str
    seconds: float
    #: Seconds K2HR3 asked us to wait (its ``Retry-After``), if it said.
    retry_after: float | None = None


def classify(status: int) -> Outcome:
    """The status policy: 204/200 done; 403, 408, 429, 5xx retry; other codes reject.

    400 means the caller is not allowed or K2HR3 is misconfigured, and 404 a wrong
    path: an operator must act, so hammering would only add noise.
    """
    if status in (200, 204):
        return Outcome.DELETED
    if status in (403, 408, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.REJECTED


def about_k2hr3(answer: Answer) -> bool:
    """A failure that describes K2HR3 as a whole, never the deletion that got it.

    408, 429, 5xx, timeouts and refused connections say K2HR3 is busy, limiting or
    broken: the same call succeeds later. Only a 403 (K2HR3 refusing this very cuk)
    can count against a deletion.
    """
    if answer.outcome is not Outcome.RETRY:
        return False
    return answer.status is None or answer.status in (408, 429) or answer.status >= 500


def slowed_down(answer: Answer) -> bool:
    """K2HR3 asked to be called less (429, or any answer with a ``Retry-After``)."""
    return answer.outcome is Outcome.RETRY and (
        answer.status == 429 or answer.retry_after is not None
    )


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now`` (Unix time): delta-seconds or an HTTP date.

    None for an absent or unreadable value; capped at :data:`MAX_RETRY_AFTER`, never
    negative (a date in the past means now).
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))
