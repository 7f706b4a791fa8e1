"""What K2HR3's answers mean: the status policy, apart from the client that gets them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
