"""The reconciliation's rules, over every window, checkpoint and page hypothesis can think of."""

from __future__ import annotations

import datetime
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2hr3_osnl.core import reconciliation
from k2hr3_osnl.core.events import Delete, decide

times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)
#: Times a pass can start at by Nova's clock (after 2010: no Nova existed before).
nova_times = st.floats(min_value=reconciliation.EARLIEST + 10 * 86400, max_value=4_000_000_000)
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


@given(st.one_of(st.none(), nova_times), nova_times, spans, spans)
def test_the_window_covers_everything_since_the_checkpoint_minus_the_overlap(
    checkpoint: float | None, now: float, overlap: float, lookback: float
) -> None:
    since = reconciliation.window(checkpoint, now, overlap, lookback).since
    if checkpoint is None:
        assert since == max(reconciliation.EARLIEST, now - lookback)
    else:
        # Nothing after the checkpoint (or now, if the clock went back) is left out...
        assert since <= min(checkpoint, now) - overlap
        # ...and no more than the overlap before it is asked again.
        assert since >= min(checkpoint, now) - overlap - 1e-6


@given(st.one_of(st.none(), times), times, st.booleans())
def test_the_checkpoint_moves_only_when_settled_and_never_back(
    checkpoint: float | None, started: float, settled: bool
) -> None:
    moved = reconciliation.next_checkpoint(checkpoint, started, settled)
    if not settled:
        assert moved == checkpoint
    else:
        assert moved is not None
        assert moved >= started if checkpoint is None else moved >= checkpoint
        assert moved in (started, checkpoint)


@given(st.lists(servers, max_size=40))
def test_only_deleted_servers_with_a_uuid_become_deletions_once_each(page: list[object]) -> None:
    found = reconciliation.deletions(page)
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
    assert reconciliation.deletions(page) == [reconciliation.Found(c)]


@given(uuids)
def test_a_found_deletion_is_a_notification_the_handler_deletes_by_cuk_alone(cuk: str) -> None:
    message_id, event_type, _, payload = reconciliation.notification(reconciliation.Found(cuk))
    assert decide(event_type, payload, internal=True) == Delete(cuk)
    # Found again, it is the same message: a duplicate within the duplicate window.
    assert reconciliation.notification(reconciliation.Found(cuk))[0] == message_id


@given(st.floats(min_value=reconciliation.EARLIEST, max_value=4_000_000_000))
def test_since_round_trips_through_iso_8601(when: float) -> None:
    text = reconciliation.iso(when)
    assert text.endswith("Z")
    # Rounded down, never up: the window asked for is never later than meant.
    assert when - 1 < reconciliation.parse_since(text).resolve(now=0)[0] <= when


@pytest.mark.parametrize(
    ("text", "ago"), [("45s", 45), ("90m", 5400), ("12h", 43200), ("2d", 172800), ("30", 30)]
)
def test_since_as_a_duration(text: str, ago: float) -> None:
    now = 2_000_000_000  # a duration counts back from Nova's clock
    assert reconciliation.parse_since(text).resolve(now) == (now - ago, False)


def test_since_in_local_offset_and_bad_input() -> None:
    stamp = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC).timestamp()
    assert reconciliation.parse_since("2026-01-31T13:00:00+01:00").resolve(0) == (stamp, False)
    assert reconciliation.parse_since("2026-01-31T12:00:00").resolve(0) == (stamp, False)
    with pytest.raises(ValueError, match="neither an ISO 8601 time"):
        reconciliation.parse_since("yesterday")


any_floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@given(any_floats, nova_times, spans, spans)
def test_whatever_the_checkpoint_file_holds_the_window_is_a_date_nova_can_take(
    stored: float | None, now: float, overlap: float, lookback: float
) -> None:
    checkpoint, why = reconciliation.trusted(stored, now, overlap)
    if checkpoint is None:
        # Refused (with the reason for the one log line) or absent: a first start.
        assert bool(why) == (stored is not None)
    else:
        assert why == "" and reconciliation.EARLIEST <= checkpoint <= now + overlap
    since = reconciliation.window(checkpoint, now, overlap, lookback).since
    if checkpoint is None:
        assert since == max(reconciliation.EARLIEST, now - lookback)
    else:
        # Never later than Nova's now minus the overlap: a checkpoint ahead hides nothing.
        assert since <= now - overlap + 1e-6
    assert reconciliation.iso(since).endswith("Z")


@given(st.one_of(st.none(), nova_times), nova_times, st.booleans(), st.booleans())
def test_the_checkpoint_never_moves_past_a_pass_that_missed_a_cell(
    checkpoint: float | None, started: float, settled: bool, every_cell: bool
) -> None:
    moved = reconciliation.next_checkpoint(checkpoint, started, settled, every_cell)
    if not (settled and every_cell):
        assert moved == checkpoint


def test_a_cell_check_holds_the_checkpoint_only_for_what_it_saw_or_could_not_see_now() -> None:
    assert reconciliation.saw_every_cell(0, failed=False)
    assert not reconciliation.saw_every_cell(2, failed=False)
    assert not reconciliation.saw_every_cell(None, failed=True)  # a 5xx: ask again next pass
    assert reconciliation.saw_every_cell(None, failed=False)  # never able to tell: said, not held


@given(st.one_of(st.floats(min_value=0), st.just(float("inf"))), nova_times)
def test_since_never_reaches_before_any_nova(ago: float, now: float) -> None:
    since, moved = reconciliation.Since(ago=ago).resolve(now)
    assert reconciliation.EARLIEST <= since <= now
    assert moved == (now - ago < reconciliation.EARLIEST)
    assert reconciliation.iso(since).endswith("Z")


def test_only_a_pass_from_a_checkpoint_in_its_usual_window_counts_misses() -> None:
    usual = reconciliation.window(2_000_000_000, 2_000_000_600, 300, 86400)
    assert reconciliation.counts_as_missed(2_000_000_000, usual.since, usual)
    assert not reconciliation.counts_as_missed(None, usual.since, usual)  # first pass after install
    # --since 1d:
    assert not reconciliation.counts_as_missed(2_000_000_000, usual.since - 86400, usual)
