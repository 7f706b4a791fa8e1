"""The reconciliation's rules, over every window, checkpoint and page hypothesis can think of."""

from __future__ import annotations

import datetime
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2hr3_osnl.core import catchup
from k2hr3_osnl.core.events import Delete, decide

times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)
spans = st.floats(min_value=0, max_value=10 * 86400, allow_nan=False)
statuses = st.sampled_from(["ACTIVE", "DELETED", "SOFT_DELETED", "ERROR", "SHELVED", None, 3])
uuids = st.uuids().map(str)
servers = st.one_of(
    st.fixed_dictionaries(
        {"id": st.one_of(uuids, st.text(max_size=5), st.none()), "status": statuses}
    ),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)


@given(st.one_of(st.none(), times), times, spans, spans)
def test_the_window_covers_everything_since_the_checkpoint_minus_the_overlap(
    checkpoint: float | None, now: float, overlap: float, lookback: float
) -> None:
    since = catchup.window(checkpoint, now, overlap, lookback).since
    if checkpoint is None:
        assert since == now - lookback
    else:
        # Nothing after the checkpoint (or now, if the clock went back) is left out...
        assert since <= min(checkpoint, now) - overlap
        # ...and no more than the overlap before it is asked again.
        assert since >= min(checkpoint, now) - overlap - 1e-6


@given(st.one_of(st.none(), times), times, st.booleans())
def test_the_checkpoint_moves_only_when_settled_and_never_back(
    checkpoint: float | None, started: float, settled: bool
) -> None:
    moved = catchup.next_checkpoint(checkpoint, started, settled)
    if not settled:
        assert moved == checkpoint
    else:
        assert moved is not None
        assert moved >= started if checkpoint is None else moved >= checkpoint
        assert moved in (started, checkpoint)


@given(st.lists(servers, max_size=40))
def test_only_deleted_servers_with_a_uuid_become_deletions_once_each(page: list[object]) -> None:
    found = catchup.deletions(page)
    cuks = [f.cuk for f in found]
    assert len(cuks) == len(set(cuks))
    expected = []
    for server in page:
        if isinstance(server, dict) and server.get("status") == "DELETED":
            ident = server.get("id")
            try:
                uuid.UUID(ident)
                well_formed = len(ident) == 36
            except (TypeError, ValueError, AttributeError):
                well_formed = False
            if well_formed and ident not in expected:
                expected.append(ident)
    assert cuks == expected


def test_soft_deleted_and_active_servers_are_never_deletions() -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    page = [
        {"id": a, "status": "SOFT_DELETED"},
        {"id": b, "status": "ACTIVE"},
        {"id": c, "status": "DELETED"},
    ]
    assert catchup.deletions(page) == [catchup.Found(c)]


@given(uuids)
def test_a_found_deletion_is_a_notification_the_handler_deletes_by_cuk_alone(cuk: str) -> None:
    message_id, event_type, _, payload = catchup.notification(catchup.Found(cuk))
    assert decide(event_type, payload) == Delete(cuk)
    # Found again, it is the same message: a duplicate within the duplicate window.
    assert catchup.notification(catchup.Found(cuk))[0] == message_id


@given(st.floats(min_value=catchup.EARLIEST, max_value=4_000_000_000))
def test_since_round_trips_through_iso_8601(when: float) -> None:
    text = catchup.iso(when)
    assert text.endswith("Z")
    # Rounded down, never up: the window asked for is never later than meant.
    assert when - 1 < catchup.parse_since(text).resolve(now=0)[0] <= when


@pytest.mark.parametrize(
    ("text", "ago"), [("45s", 45), ("90m", 5400), ("12h", 43200), ("2d", 172800), ("30", 30)]
)
def test_since_as_a_duration(text: str, ago: float) -> None:
    now = 2_000_000_000  # a duration counts back from Nova's clock
    assert catchup.parse_since(text).resolve(now) == (now - ago, False)


def test_since_in_local_offset_and_bad_input() -> None:
    stamp = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC).timestamp()
    assert catchup.parse_since("2026-01-31T13:00:00+01:00").resolve(0) == (stamp, False)
    assert catchup.parse_since("2026-01-31T12:00:00").resolve(0) == (stamp, False)
    with pytest.raises(ValueError, match="neither an ISO 8601 time"):
        catchup.parse_since("yesterday")
