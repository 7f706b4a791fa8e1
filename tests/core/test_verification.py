"""The verification policy and its breaker: pure rules, no OpenStack."""

from __future__ import annotations

import pytest

from k2hr3_osnl.core.verification import Action, Breaker, Check, Verdict, action


@pytest.mark.parametrize(
    ("verdict", "park_unknown", "expected"),
    [
        (Verdict.GONE, False, Action.SEND),
        (Verdict.GONE, True, Action.SEND),
        (Verdict.EXISTS, False, Action.REFUSE),
        (Verdict.REFUSED, False, Action.REFUSE),
        # Broken (401/403) never heals by itself: never obeyed unverified, whatever is set.
        (Verdict.BROKEN, False, Action.PARK),
        (Verdict.BROKEN, True, Action.PARK),
        (Verdict.UNKNOWN, False, Action.SEND),
        (Verdict.UNKNOWN, True, Action.PARK),
    ],
)
def test_what_each_answer_means(verdict: Verdict, park_unknown: bool, expected: Action) -> None:
    assert action(Check(verdict, "why"), park_unknown) is expected


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_after_a_round_without_answers_only_one_probe_per_backoff_then_closed_again() -> None:
    clock = Clock()
    breaker = Breaker(min_interval=1.0, max_interval=4.0, clock=clock)
    assert breaker.allow()
    breaker.record(answered=False)
    assert not breaker.allow()  # skipped: UNKNOWN at once, no lookup
    clock.now = 1.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # and only one
    breaker.record(answered=False)  # backoff doubles: 2 s
    clock.now = 2.9
    assert not breaker.allow()
    clock.now = 3.0
    assert breaker.allow()
    breaker.record(answered=False)
    breaker.record(answered=False)  # capped at max_interval
    clock.now += 3.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()
    breaker.record(answered=True)
    assert breaker.allow() and breaker.allow() and not breaker.open
