"""The token's rules, without a broker: what it carries, how two merge, when a pass is due."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from k2hr3_osnl.core.leadership import Token, decode, due, probe


def test_a_token_survives_its_own_encoding() -> None:
    token = Token(checkpoint=1_700_000_000.5, passed_at=1_700_000_100.0, holder="gw1:42")
    assert decode(token.encode()) == token


def test_a_probe_names_its_sender_and_is_no_token() -> None:
    assert decode(probe("gw2:7")) == "gw2:7"


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_anything_else_on_the_queue_is_neither_and_never_raises(body: bytes | str) -> None:
    assert decode(body) is None or isinstance(decode(body), Token | str)


def test_absurd_times_in_a_token_mean_unknown() -> None:
    for value in ("NaN", "-1", '"soon"', "true", "1e400"):
        body = f'{{"kind": "k2hr3-osnl-reconcile-token", "checkpoint": {value}}}'
        found = decode(body)
        assert isinstance(found, Token) and found.checkpoint is None, value


def test_two_tokens_merge_into_the_later_of_each_time() -> None:
    a = Token(checkpoint=100.0, passed_at=None, holder="a")
    b = Token(checkpoint=None, passed_at=50.0, holder="b")
    assert a.merged(b) == Token(100.0, 50.0, "a")
    assert a.merged(Token(checkpoint=200.0)).checkpoint == 200.0


def test_an_unfinished_pass_moves_no_checkpoint_but_counts_as_a_pass() -> None:
    token = Token(checkpoint=100.0, passed_at=10.0, holder="a")
    assert token.after_pass(300.0, None, "b") == Token(100.0, 300.0, "b")
    assert token.after_pass(300.0, 250.0, "b") == Token(250.0, 300.0, "b")
    # Never backwards, whoever writes.
    assert token.after_pass(300.0, 50.0, "b").checkpoint == 100.0


@given(st.floats(0, 1e10), st.floats(1, 1e6), st.floats(-1e6, 1e6))
def test_a_pass_is_due_once_an_interval_went_by_or_the_clock_was_absurd(
    passed: float, interval: float, elapsed: float
) -> None:
    token = Token(passed_at=passed)
    expected = elapsed >= interval or elapsed < -interval
    assert due(token, passed + elapsed, interval) == expected or math.isclose(
        abs(elapsed), interval
    )
    assert due(Token(), passed, interval)
