"""Parked deletions that go back out by themselves, and those that never do.

The rules (``core/resend.py``) are pure and checked alone; the re-sender
(``process/resender.py``) runs them with the real handler, parking lot and a local
K2HR3 stand-in, one round at a time at a chosen clock.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from support.k2hr3_standin import FakeK2HR3
from support.samples import sample

from k2hr3_osnl.core import resend
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.parking import Cause, Parked, ParkingLot, cause_of
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.types import Result
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.observability import metrics
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.process.resender import Resender

NEUTRON = sample("neutron/k2hr3_osnl__notifications_neutron.json")
TICK = 5.0


def cuk_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def parked(i: int, cause: str | None, reason: str = "", **changes: object) -> Parked:
    payload = copy.deepcopy(NEUTRON["payload"])
    payload["port"]["device_id"] = cuk_of(i)
    fields: dict[str, object] = {
        "message_id": f"m-{i}",
        "event_type": "port.delete.end",
        "publisher_id": NEUTRON["publisher_id"],
        "payload": payload,
        "reason": reason or "retry budget spent: no answer connection failed",
        "attempts": 5,
        "first_seen": 1_700_000_000.0,
        "parked_at": 1_700_000_000.0,
        "cuk": cuk_of(i),
        "ips": ["172.16.0.1", "2001:db8::6"],
        "cause": cause,
    }
    fields.update(changes)
    return Parked(**fields)  # type: ignore[arg-type]


class Recorder(Observer):
    def __init__(self) -> None:
        self.resends: list[tuple[str, str]] = []
        self.counts: dict[str, int] = {}

    def resent(self, cause: str, outcome: str) -> None:
        self.resends.append((cause, outcome))

    def parked_causes(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)


@pytest.fixture
def lot(tmp_path: Path) -> ParkingLot:
    return ParkingLot(tmp_path)


@pytest.fixture
def handler(k2hr3: FakeK2HR3, lot: ParkingLot) -> Iterator[Handler]:
    made = Handler(
        client=RoleClient(k2hr3.url, connect_timeout=1, read_timeout=2),
        breaker=CircuitBreaker(max_interval=0.2),
        parking=lot,
        recent=RecentDeliveries(600),
        retry_budget=60,
        observer=Recorder(),
    )
    yield made
    made.breaker.stop()
    made.client.close()


def resender(handler: Handler, send: bool = True) -> Resender:
    return Resender(handler, handler.parking, send=send, tick=TICK, budget=1.0)


T0 = 1_700_000_000.0


# --- the rules ------------------------------------------------------------------------


def test_what_needs_an_operator_is_never_due() -> None:
    assert resend.due_at(parked(1, Cause.OPERATOR), TICK) is None
    assert resend.due_at(parked(1, None, "K2HR3 rejected it: status 400"), TICK) is None


def test_a_strike_deletion_is_due_hourly_for_a_day_then_never() -> None:
    item = parked(1, Cause.STRIKES)
    assert resend.due_at(item, TICK) == T0 + 3600
    later = parked(1, Cause.STRIKES, resends=5, last_resend=T0 + 5 * 3600)
    assert resend.due_at(later, TICK) == T0 + 6 * 3600
    assert resend.due_at(parked(1, Cause.STRIKES, resends=24), TICK) is None


def test_the_24th_failed_hourly_try_leaves_it_to_an_operator() -> None:
    item = parked(1, Cause.STRIKES, "K2HR3 failed it 8 times", resends=23)
    verdict = resend.after(item, Result.PARKED, ("strikes", "K2HR3 failed it 8 times"), T0)
    assert (verdict.outcome, verdict.remove, verdict.item.cause) == ("gave_up", False, "operator")
    assert "needs an operator" in verdict.item.reason


@given(
    causes=st.lists(st.sampled_from([*Cause.ALL, None, "junk"]), max_size=12),
    resends=st.integers(0, 40),
    offset=st.floats(-10, 10 * 86400),
)
def test_a_plan_never_sends_what_needs_an_operator_and_probes_with_one(
    causes: list[str | None], resends: int, offset: float
) -> None:
    items = [
        parked(i, cause, "K2HR3 rejected it: 404" if cause is None else "", resends=resends)
        for i, cause in enumerate(causes)
    ]
    todo = resend.plan(items, T0 + offset, TICK)
    sent = [*([todo.probe] if todo.probe else []), *todo.follow, *todo.due]
    assert all(cause_of(item) != Cause.OPERATOR for item in sent)
    assert all(cause_of(item) == Cause.STRIKES for item in todo.due)
    assert len({id(item) for item in sent}) == len(sent)
    if todo.probe is None:
        assert todo.follow == []


@pytest.mark.parametrize("result", [Result.DELETED, Result.DUPLICATE])
def test_only_a_delivery_removes_the_file(result: Result) -> None:
    assert resend.after(parked(1, Cause.OUTAGE), result, None, T0).remove


@pytest.mark.parametrize("result", [Result.PARKED, Result.REQUEUED, Result.INVALID, Result.IGNORED])
def test_anything_else_keeps_it(result: Result) -> None:
    as_parked = ("outage", "retry budget spent: 503") if result is Result.PARKED else None
    verdict = resend.after(parked(1, Cause.OUTAGE), result, as_parked, T0)
    assert not verdict.remove and verdict.item.resends == 1 and verdict.item.last_resend == T0


# --- the re-sender against a local K2HR3 ----------------------------------------------


def test_an_outage_parking_goes_out_once_k2hr3_is_back(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    """Parked when the budget ran out during an outage: tried again by itself, kept
    while K2HR3 is still down, delivered and removed once it is back, with the others
    of a passing cause following the probe."""
    for i in range(3):
        lot.park(parked(i, Cause.OUTAGE))
    lot.park(parked(9, None, "verification unavailable: Nova answered 403"))
    k2hr3.stop()
    resender(handler).run_once(now=T0 + TICK)
    assert lot.count() == 4
    (probe,) = [item for item in lot if item.resends]
    assert probe.resends == 1 and probe.cause == "outage"
    k2hr3.start()
    resender(handler).run_once(now=T0 + 2 * TICK)
    assert lot.count() == 0
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == [cuk_of(i) for i in (0, 1, 2, 9)]
    recorder = handler.observer
    assert isinstance(recorder, Recorder)
    assert recorder.resends.count(("outage", "failed")) == 1
    assert recorder.resends.count(("outage", "delivered")) == 3
    assert recorder.resends.count(("verification-unavailable", "delivered")) == 1


def test_a_parked_deletion_reconciliation_found_goes_out_as_the_daemon_s_own(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    """Reconciliation's own event type is refused from the bus; a file the daemon parked
    itself is not the bus: sent again, it is delivered, not found invalid."""
    gone = cuk_of(7)
    lot.park(
        parked(
            7,
            Cause.OUTAGE,
            event_type="k2hr3_osnl.reconcile.server.deleted",
            payload={"uuid": gone},
            ips=[],
        )
    )
    resender(handler).run_once(now=T0 + TICK)
    assert lot.count() == 0
    assert k2hr3.deleted() == [(gone, None)]


def test_what_needs_an_operator_stays_and_is_counted(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    lot.park(parked(1, Cause.OPERATOR, "K2HR3 rejected it: status 400"))
    lot.park(parked(2, None, "K2HR3 rejected it: status 404"))
    resender(handler).run_once(now=T0 + 10 * 86400)
    assert k2hr3.requests == 0 and lot.count() == 2
    recorder = handler.observer
    assert isinstance(recorder, Recorder)
    assert recorder.counts == {
        "operator": 2,
        "outage": 0,
        "strikes": 0,
        "verification-unavailable": 0,
    }


def test_a_strike_deletion_waits_its_hour(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    k2hr3.status_for[cuk_of(1)] = 403
    lot.park(parked(1, Cause.STRIKES, "K2HR3 failed it 8 times in 600s: status 403"))
    resender(handler).run_once(now=T0 + 3599)
    assert k2hr3.requests == 0
    resender(handler).run_once(now=T0 + 3600)
    assert k2hr3.requests >= 1
    (item,) = list(lot)
    assert (item.cause, item.resends, item.last_resend) == ("strikes", 1, T0 + 3600)
    del k2hr3.status_for[cuk_of(1)]
    resender(handler).run_once(now=T0 + 7200)
    assert lot.count() == 0 and k2hr3.deleted() == [(cuk_of(1), ("172.16.0.1", "2001:db8::6"))]


def test_a_passing_cause_that_now_gets_400_becomes_an_operators(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    k2hr3.status = 400
    lot.park(parked(1, Cause.OUTAGE))
    resender(handler).run_once(now=T0 + TICK)
    (item,) = list(lot)
    assert item.cause == "operator" and "400" in item.reason
    assert lot.count() == 1


def test_a_dry_run_never_sends_parked_deletions(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler, caplog: pytest.LogCaptureFixture
) -> None:
    """A dry-run client "delivers" everything without sending: re-sending would remove
    a live daemon's parked files for nothing."""
    lot.park(parked(1, Cause.OUTAGE))
    lot.park(parked(2, Cause.STRIKES))
    dry = resender(handler, send=False)
    dry.run_once(now=T0 + 86400)
    dry.run_once(now=T0 + 2 * 86400)
    assert k2hr3.requests == 0 and lot.count() == 2
    lines = [r.getMessage() for r in caplog.records if "dry run: never re-sent" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("2 parked deletion(s)")


def test_the_loop_runs_rounds_until_stopped(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    lot.park(parked(1, Cause.OUTAGE, parked_at=time.time() - 60))
    loop = Resender(handler, lot, tick=0.1, budget=1.0)
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while lot.count() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop()
    assert loop.join(5)
    assert lot.count() == 0 and len(k2hr3.deleted()) == 1


def test_resends_and_causes_are_in_the_metrics(
    k2hr3: FakeK2HR3, lot: ParkingLot, handler: Handler
) -> None:
    stats = metrics.Metrics(Health(handler.breaker, lot))
    handler.observer = stats  # the metrics alone, for this test
    lot.park(parked(1, Cause.OUTAGE))
    lot.park(parked(2, Cause.OPERATOR, "K2HR3 rejected it: status 400"))
    resender(handler).run_once(now=T0 + TICK)
    text = generate_latest(stats.registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    resends = "k2hr3_osnl_parked_resends_total"
    assert samples[(resends, (("cause", "outage"), ("outcome", "delivered")))] == 1
    assert samples[(resends, (("cause", "operator"), ("outcome", "delivered")))] == 0
    by_cause = "k2hr3_osnl_parked_by_cause"
    assert samples[(by_cause, (("cause", "operator"),))] == 1
    assert samples[(by_cause, (("cause", "outage"),))] == 1  # counted before it went out
