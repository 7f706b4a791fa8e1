"""One notification from decision to acknowledgement, against a real local K2HR3.

The Handler runs with the real RoleClient, CircuitBreaker, ParkingLot and RecentDeliveries; only
K2HR3 is a stand-in (a real HTTP server that fails on command).
"""

from __future__ import annotations

import copy
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.k2hr3_standin import FakeK2HR3
from support.samples import sample
from support.waiting import wait_until

from k2hr3_osnl.core import handler as handler_module
from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.breaker import CircuitBreaker, Turn
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.k2hr3.client import RoleClient

NEUTRON_CUK = "12345678-1234-5678-1234-567812345678"
NEUTRON_IPS = ("172.16.0.1", "2001:db8::6")
PROBE_INTERVAL = 0.2


NEUTRON = sample("neutron/k2hr3_osnl__notifications_neutron.json")
LEGACY = sample("wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json")


def port_delete(message_id: str = "m-1", cuk: str = NEUTRON_CUK) -> Notification:
    payload = copy.deepcopy(NEUTRON["payload"])
    payload["port"]["device_id"] = cuk
    return Notification(message_id, "port.delete.end", NEUTRON["publisher_id"], payload)


def instance_delete(message_id: str, cuk: str) -> Notification:
    payload = copy.deepcopy(LEGACY["payload"])
    payload["instance_id"] = cuk
    return Notification(message_id, LEGACY["event_type"], LEGACY["publisher_id"], payload)


def cuk_of(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


MakeHandler = Callable[..., Handler]


@pytest.fixture
def make_handler(k2hr3: FakeK2HR3, tmp_path: Path) -> Iterator[MakeHandler]:
    made: list[Handler] = []

    def make(
        retry_budget: float = 30.0,
        window: float = 600.0,
        client: RoleClient | None = None,
        state_dir: Path = tmp_path,
        **options: Any,
    ) -> Handler:
        handler = Handler(
            client=client or RoleClient(k2hr3.url, connect_timeout=2, read_timeout=5),
            breaker=CircuitBreaker(max_interval=PROBE_INTERVAL),
            parking=ParkingLot(state_dir),
            recent=RecentDeliveries(window),
            retry_budget=retry_budget,
            **options,
        )
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.breaker.stop()
        handler.client.close()


def in_threads(handler: Handler, notes: list[Notification]) -> tuple[list[threading.Thread], dict]:
    """Handle each note in its own thread, as the listener's executor does."""
    results: dict[Any, Result] = {}

    def work(note: Notification) -> None:
        results[note.message_id] = handler.handle(note)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in notes]
    for thread in threads:
        thread.start()
    return threads, results


def join(threads: list[threading.Thread], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a delivery is still running"


# --- the good path -------------------------------------------------------------------


def test_port_deletion_reaches_k2hr3(k2hr3: FakeK2HR3, make_handler: MakeHandler) -> None:
    assert make_handler().handle(port_delete()) is Result.DELETED
    assert k2hr3.deleted() == [(NEUTRON_CUK, NEUTRON_IPS)]


def test_instance_deletion_removes_every_ip(k2hr3: FakeK2HR3, make_handler: MakeHandler) -> None:
    note = instance_delete("m-1", cuk_of(1))
    assert make_handler().handle(note) is Result.DELETED
    assert k2hr3.deleted() == [(cuk_of(1), None)]


def test_duplicate_delivery_calls_k2hr3_once(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """RabbitMQ may deliver the same message again after a reconnect: one line says so."""
    caplog.set_level(logging.DEBUG, logger="k2hr3_osnl.core.handler")
    handler = make_handler()
    assert handler.handle(port_delete("m-1")) is Result.DELETED
    assert handler.handle(port_delete("m-1")) is Result.DUPLICATE
    assert handler.handle(port_delete("m-2")) is Result.DELETED
    assert k2hr3.requests == 2
    assert [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()] == [
        "message_id=m-1 event_type=port.delete.end duplicate: "
        "already delivered within the duplicate window"
    ]


def test_duplicate_window_zero_calls_again(k2hr3: FakeK2HR3, make_handler: MakeHandler) -> None:
    handler = make_handler(window=0)
    handler.handle(port_delete("m-1"))
    handler.handle(port_delete("m-1"))
    assert k2hr3.requests == 2


def test_a_parked_message_delivered_again_is_tried_again(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """Only a delivery that reached K2HR3 counts for duplicates."""
    handler = make_handler()
    k2hr3.status = 400
    assert handler.handle(port_delete("m-1")) is Result.PARKED
    k2hr3.status = 204
    assert handler.handle(port_delete("m-1")) is Result.DELETED


@pytest.mark.parametrize(
    ("note", "result"),
    [
        (Notification("m-1", "port.create.end", "network.n1", NEUTRON["payload"]), Result.IGNORED),
        (Notification("m-2", "port.delete.end", "network.n1", {"port_id": "x"}), Result.IGNORED),
        (
            Notification("m-3", "port.delete.end", "network.n1", ["not", "a", "dict"]),
            Result.INVALID,
        ),
        (
            Notification("m-4", "compute.instance.delete.end", "compute.h", {"instance_id": "x"}),
            Result.INVALID,
        ),
    ],
    ids=["not-a-deletion", "port_id-only", "payload-list", "bad-uuid"],
)
def test_ignored_and_invalid_call_nothing(
    k2hr3: FakeK2HR3,
    make_handler: MakeHandler,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    note: Notification,
    result: Result,
) -> None:
    """Acknowledged once, never sent, never parked: there is nothing to retry."""
    caplog.set_level(logging.DEBUG, logger="k2hr3_osnl")
    assert make_handler().handle(note) is result
    assert k2hr3.requests == 0
    assert ParkingLot(tmp_path).count() == 0
    (line,) = [r for r in caplog.records if r.name == "k2hr3_osnl.core.handler"]
    assert f"message_id={note.message_id}" in line.getMessage()
    assert line.levelno == (logging.WARNING if result is Result.INVALID else logging.DEBUG)


# --- K2HR3 in trouble ----------------------------------------------------------------


def test_outage_then_recovery_delivers_everything_with_few_requests(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """K2HR3 answers 503 while 20 deletions wait: the breaker sends about one probe per
    interval in all, not one request per deletion per retry, and everything goes
    through once K2HR3 is back."""
    handler = make_handler()
    k2hr3.status = 503
    count = 20
    notes = [port_delete(f"m-{i}", cuk_of(i)) for i in range(count)]
    started = time.monotonic()
    threads, results = in_threads(handler, notes)
    wait_until(lambda: k2hr3.requests >= 1)
    time.sleep(2.0)
    k2hr3.status = 204
    outage = time.monotonic() - started
    join(threads)

    assert set(results.values()) == {Result.DELETED}
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == [cuk_of(i) for i in range(count)]
    failed = sum(1 for call in k2hr3.calls if call.status == 503)
    # At most one first attempt per deletion (made before the breaker opened), then
    # probes spaced at least 80 % of min_interval, then of the cap (jitter floor).
    min_interval = handler.breaker.min_interval
    bound = count + 2 + outage / (0.8 * min(PROBE_INTERVAL, 2 * min_interval))
    assert failed <= bound, (failed, bound)
    # Per deletion per retry would be count * outage / PROBE_INTERVAL = 200 and more.
    assert failed < count * outage / PROBE_INTERVAL / 2


def test_refused_connections_then_recovery_delivers(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    handler = make_handler()
    handler.handle(port_delete("warm-up", cuk_of(99)))  # a pooled connection exists
    k2hr3.stop()
    notes = [port_delete(f"m-{i}", cuk_of(i)) for i in range(5)]
    threads, results = in_threads(handler, notes)
    wait_until(lambda: handler.breaker.is_open)
    time.sleep(1.0)
    assert k2hr3.deleted() == [(cuk_of(99), NEUTRON_IPS)]
    k2hr3.start()
    join(threads)
    assert set(results.values()) == {Result.DELETED}
    assert len(k2hr3.deleted()) == 6


class Forgotten(Observer):
    """Records the cuks the handler says K2HR3 lost whole."""

    def __init__(self) -> None:
        self.cuks: list[str] = []

    def forgot(self, cuk: str) -> None:
        self.cuks.append(cuk)


def test_only_an_accepted_instance_deletion_is_said_forgotten_whole(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """What reconciliation's memory hears, from the decision the handler acted on: a
    port's deletion removes some addresses, not the VM; a parked one was not accepted."""
    heard = Forgotten()
    handler = make_handler(observer=heard)
    instance, port_vm, refused = cuk_of(1), cuk_of(2), cuk_of(3)
    batch = [instance_delete("m-1", instance), port_delete("m-2", port_vm)]
    assert handler.handle_batch(batch) == [Result.DELETED, Result.DELETED]
    k2hr3.status = 400
    assert handler.handle(instance_delete("m-3", refused)) is Result.PARKED
    assert heard.cuks == [instance]


def test_rejected_deletion_is_parked_with_reason(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """400 means a misconfiguration: an operator must act, so keep it and stop trying."""
    k2hr3.status = 400
    note = port_delete("m-400")
    before = time.time()
    assert make_handler().handle(note) is Result.PARKED
    assert k2hr3.requests == 1
    (item,) = list(ParkingLot(tmp_path))
    assert item.message_id == "m-400"
    assert item.event_type == "port.delete.end"
    assert item.publisher_id == NEUTRON["publisher_id"]
    assert item.payload == note.payload
    assert item.attempts == 1
    assert "400" in item.reason and "rejected" in item.reason
    assert before <= item.first_seen <= item.parked_at


def test_spent_budget_parks_it(k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path) -> None:
    """A deletion is not held for ever: RabbitMQ would cancel a consumer that does."""
    k2hr3.status = 503
    started = time.monotonic()
    assert make_handler(retry_budget=0.8).handle(port_delete("m-503")) is Result.PARKED
    assert time.monotonic() - started >= 0.8
    (item,) = list(ParkingLot(tmp_path))
    assert "retry budget spent" in item.reason and "503" in item.reason
    assert item.attempts >= 2
    assert item.attempts == k2hr3.requests


def test_stop_while_waiting_requeues(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """A stopping daemon hands held deletions back to RabbitMQ instead of parking them."""
    handler = make_handler(retry_budget=60)
    k2hr3.status = 503
    threads, results = in_threads(handler, [port_delete("m-1"), port_delete("m-2", cuk_of(2))])
    wait_until(lambda: handler.breaker.is_open)
    handler.breaker.stop()
    join(threads, timeout=10)
    assert results == {"m-1": Result.REQUEUED, "m-2": Result.REQUEUED}
    assert ParkingLot(tmp_path).count() == 0


def test_unparkable_deletion_is_requeued_after_a_pause(
    k2hr3: FakeK2HR3,
    make_handler: MakeHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With nowhere to keep it, dropping it would leave a stale IP: hand it back, slowly."""
    monkeypatch.setattr(handler_module, "PARK_FAILURE_PAUSE", 0.3)
    state = tmp_path / "state"
    state.mkdir()
    (state / "parked").write_text("a file where the spool directory should be")
    k2hr3.status = 400
    started = time.monotonic()
    assert make_handler(state_dir=state).handle(port_delete("m-1")) is Result.REQUEUED
    assert time.monotonic() - started >= 0.3
    assert any(r.levelno == logging.CRITICAL and "m-1" in r.getMessage() for r in caplog.records)


def test_a_crashing_probe_does_not_wedge_the_breaker(
    k2hr3: FakeK2HR3,
    make_handler: MakeHandler,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in one call (here: the client raises) hands that deletion back to RabbitMQ
    after a pause, never acknowledges it; the others still get their probe instead of
    waiting out their whole budget."""
    monkeypatch.setattr(handler_module, "PARK_FAILURE_PAUSE", 0.3)

    class BuggyClient(RoleClient):
        def delete_many(self, calls, fields=()) -> list[Answer]:  # type: ignore[override]
            if any(cuk == cuk_of(666) for cuk, _ in calls):
                raise RuntimeError("a bug")
            return super().delete_many(calls, fields)

    handler = make_handler(retry_budget=5, client=BuggyClient(k2hr3.url))
    handler.breaker.wait_turn(time.monotonic())
    handler.breaker.record(Turn.CALL, ok=False)  # K2HR3 just failed: the next call probes
    started = time.monotonic()
    assert handler.handle(port_delete("m-bug", cuk_of(666))) is Result.REQUEUED
    assert time.monotonic() - started >= 0.3
    assert list(ParkingLot(tmp_path)) == []
    started = time.monotonic()
    assert handler.handle(port_delete("m-ok", cuk_of(1))) is Result.DELETED
    assert time.monotonic() - started < 5


# --- batches -------------------------------------------------------------------------


def test_a_batch_sends_its_calls_together(k2hr3: FakeK2HR3, make_handler: MakeHandler) -> None:
    """Eight deletions against a K2HR3 that takes 0.5 s each: one round, not eight."""
    k2hr3.latency = 0.5
    notes = [port_delete(f"m-{i}", cuk_of(i)) for i in range(8)]
    started = time.monotonic()
    assert make_handler().handle_batch(notes) == [Result.DELETED] * 8
    assert time.monotonic() - started < 2.0  # one at a time would take 4 s
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == [cuk_of(i) for i in range(8)]


def test_a_batch_gives_each_notification_its_own_result(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """Results come back in order, one per notification, whatever became of the others."""
    k2hr3.status_for[cuk_of(2)] = 400
    notes = [
        port_delete("m-1", cuk_of(1)),
        port_delete("m-2", cuk_of(2)),
        Notification("m-3", "port.create.end", "network.n1", NEUTRON["payload"]),
        Notification("m-4", "port.delete.end", "network.n1", ["not", "a", "dict"]),
        instance_delete("m-5", cuk_of(5)),
    ]
    results = make_handler().handle_batch(notes)
    assert results == [
        Result.DELETED,
        Result.PARKED,
        Result.IGNORED,
        Result.INVALID,
        Result.DELETED,
    ]
    (parked,) = list(ParkingLot(tmp_path))
    assert parked.message_id == "m-2" and "400" in parked.reason
    assert sorted(k2hr3.deleted()) == [(cuk_of(1), NEUTRON_IPS), (cuk_of(5), None)]


def test_two_copies_in_one_batch_call_k2hr3_once(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """A publisher's retry can land both copies in one batch: the second must neither
    wait for itself nor call again."""
    results = make_handler().handle_batch([port_delete("m-1"), port_delete("m-1")])
    assert results == [Result.DELETED, Result.DUPLICATE]
    assert k2hr3.requests == 1


def test_a_copy_after_a_rejected_first_is_tried_itself(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """Only a delivery that reached K2HR3 makes a later copy a duplicate."""
    k2hr3.status = 400
    results = make_handler().handle_batch([port_delete("m-1"), port_delete("m-1")])
    assert results == [Result.PARKED, Result.PARKED]
    assert k2hr3.requests == 2


def test_batches_holding_each_others_copies_do_not_wait_forever(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """Batch A has X then Y, batch B has Y then X (a redelivery split differently): each
    claims one and finds the other claimed. Neither may wait while it holds a claim."""
    k2hr3.latency = 0.3
    handler = make_handler()
    x, y = port_delete("m-x", cuk_of(1)), port_delete("m-y", cuk_of(2))
    results: dict[str, list[Result]] = {}
    threads = [
        threading.Thread(target=lambda: results.__setitem__("a", handler.handle_batch([x, y]))),
        threading.Thread(target=lambda: results.__setitem__("b", handler.handle_batch([y, x]))),
    ]
    for thread in threads:
        thread.start()
    join(threads, timeout=10)
    assert sorted(results["a"] + results["b"], key=str) == sorted(
        [Result.DELETED, Result.DELETED, Result.DUPLICATE, Result.DUPLICATE], key=str
    )
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == [cuk_of(1), cuk_of(2)]


def test_an_outage_holds_the_batch_and_one_probe_goes_out(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """While K2HR3 fails, a batch probes with one deletion; once that succeeds, the rest
    of the batch goes out together."""
    k2hr3.status = 503
    handler = make_handler()
    notes = [port_delete(f"m-{i}", cuk_of(i)) for i in range(10)]
    done: list[list[Result]] = []
    thread = threading.Thread(target=lambda: done.append(handler.handle_batch(notes)))
    thread.start()
    time.sleep(1.0)
    failed = k2hr3.requests
    assert 10 <= failed <= 10 + 1.0 / (0.8 * PROBE_INTERVAL) + 1  # first round, then probes
    k2hr3.status = 204
    join([thread], timeout=10)
    assert done == [[Result.DELETED] * 10]
    assert len(k2hr3.deleted()) == 10


def test_the_retry_budget_counts_from_receipt_not_from_a_free_thread(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """A deletion that waited for a worker thread while K2HR3 was failing has spent that
    time of its budget: it must settle before RabbitMQ's consumer_timeout, not start a
    fresh budget."""
    k2hr3.status = 503
    handler = make_handler(retry_budget=5)
    handler.breaker.wait_turn(time.monotonic())
    handler.breaker.record(Turn.CALL, ok=False)  # K2HR3 is failing: calls wait for a probe
    note = port_delete("m-old", cuk_of(1))
    waited = Notification(
        note.message_id,
        note.event_type,
        note.publisher_id,
        note.payload,
        received=time.monotonic() - 6,
    )
    started = time.monotonic()
    assert handler.handle(waited) is Result.PARKED
    assert time.monotonic() - started < 1
    (item,) = list(ParkingLot(tmp_path))
    assert "retry budget spent" in item.reason


# --- one bad deletion among good ones ---------------------------------------------


def test_one_cuk_that_k2hr3_keeps_failing_holds_and_parks_nothing_else(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """K2HR3 answers 403 for one cuk and 204 for every other. The healthy deletions,
    in the same batch and in batches behind it, are delivered at once; the bad one backs
    off on its own, does not open the breaker for the others, and is parked after
    ITEM_STRIKES failures spread over the strike span (2 s here, 10 minutes in the
    daemon), long before its 30 s budget, saying why."""
    bad = cuk_of(403)
    k2hr3.status_for[bad] = 403
    handler = make_handler(retry_budget=30, strike_span=2.0)
    results: dict[str, list[Result]] = {}
    first = [port_delete("m-bad", bad), *(port_delete(f"m-{i}", cuk_of(i)) for i in range(3))]

    def run(name: str, notes: list[Notification]) -> None:
        results[name] = handler.handle_batch(notes)

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=("first", first), daemon=True)]
    threads[0].start()
    # Healthy batches keep arriving while the bad one is retried.
    for wave in range(100):
        if not threads[0].is_alive():
            break
        notes = [port_delete(f"m-{wave}-{i}", cuk_of(100 + wave * 10 + i)) for i in range(3)]
        batch_started = time.monotonic()
        assert handler.handle_batch(notes) == [Result.DELETED] * 3
        assert time.monotonic() - batch_started < 1.0, "a healthy batch waited on the bad cuk"
        time.sleep(0.2)
    join(threads, timeout=20)
    took = time.monotonic() - started

    assert results["first"] == [Result.PARKED, *[Result.DELETED] * 3]
    (item,) = list(ParkingLot(tmp_path))
    assert item.cuk == bad
    assert item.cause == "strikes"
    assert "while accepting other deletions" in item.reason and "403" in item.reason
    assert took < 15, f"the bad cuk held its batch {took:.1f}s"
    bad_calls = [c for c in k2hr3.calls if c.cuk == bad]
    assert handler_module.ITEM_STRIKES <= len(bad_calls) <= handler_module.ITEM_STRIKES + 6
    # (the calls are timed by the stand-in, the strikes by the handler: a little slack)
    assert bad_calls[-1].at - bad_calls[0].at >= 1.9, "parked before its strikes spanned 2 s"
    assert not handler.breaker.is_open


def test_a_lone_deletion_that_keeps_failing_is_spaced_not_hammered(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """Once a deletion has failed alone (others succeeded meanwhile), the breaker no
    longer spaces its retries; its own backoff must, even with no other traffic."""
    bad = cuk_of(403)
    k2hr3.status_for[bad] = 403
    handler = make_handler(retry_budget=2)
    result = handler.handle_batch([port_delete("m-bad", bad), port_delete("m-ok", cuk_of(1))])
    assert result == [Result.PARKED, Result.DELETED]
    bad_calls = [c for c in k2hr3.calls if c.cuk == bad]
    # 2 s at one try per PROBE_INTERVAL (0.2 s) at most: about 10, never hundreds.
    assert len(bad_calls) <= 14, len(bad_calls)


def test_three_copies_across_two_batches_after_a_failed_first_do_not_deadlock(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """Batch A holds copy 1; batch B has copies 2 and 3 and waits for it. K2HR3 rejects
    copy 1, so B must try copy 2 itself and then copy 3: it once claimed copy 2 and
    waited for copy 3's claim, which it held itself, forever."""
    x = cuk_of(7)
    k2hr3.status_for[x] = 400
    k2hr3.latency = 0.3
    handler = make_handler()
    results: dict[str, list[Result]] = {}
    a = threading.Thread(
        target=lambda: results.__setitem__("a", handler.handle_batch([port_delete("m-x", x)]))
    )
    a.start()
    wait_until(lambda: k2hr3.requests >= 1)
    b_notes = [port_delete("m-x", x), port_delete("m-x", x)]
    b = threading.Thread(target=lambda: results.__setitem__("b", handler.handle_batch(b_notes)))
    b.start()
    join([a, b], timeout=10)
    assert results == {"a": [Result.PARKED], "b": [Result.PARKED, Result.PARKED]}
    assert len(list(ParkingLot(tmp_path))) == 3


def test_a_reused_message_id_with_another_deletion_is_not_skipped(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """A publisher (buggy or hostile) that reuses a message_id for another VM must not
    have that VM's deletion skipped as a duplicate: the window remembers the deletion
    with the message_id. A true copy (same id, same deletion) still costs no call."""
    handler = make_handler()
    assert handler.handle(port_delete("m-same", cuk_of(1))) is Result.DELETED
    assert handler.handle(port_delete("m-same", cuk_of(2))) is Result.DELETED
    assert handler.handle(port_delete("m-same", cuk_of(1))) is Result.DUPLICATE
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == [cuk_of(1), cuk_of(2)]


# --- K2HR3's own trouble is never the deletion's fault ---------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_failure_that_describes_k2hr3_is_never_a_strike(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path, status: int
) -> None:
    """K2HR3 fails one cuk with a status about itself while accepting the others (a busy
    shard, a rate limit): however often, that deletion is retried until its budget is
    spent and then parked as an outage, which goes back out by itself, never for
    strikes."""
    bad = cuk_of(status)
    k2hr3.status_for[bad] = status
    handler = make_handler(retry_budget=4)
    results: list[Result] = []
    thread = threading.Thread(
        target=lambda: results.append(handler.handle(port_delete("m-bad", bad)))
    )
    thread.start()
    for wave in range(100):  # others keep being accepted meanwhile
        if not thread.is_alive():
            break
        notes = [port_delete(f"m-{wave}-{i}", cuk_of(1000 + wave * 10 + i)) for i in range(3)]
        assert handler.handle_batch(notes) == [Result.DELETED] * 3
        time.sleep(0.1)
    join([thread])
    assert results == [Result.PARKED]
    (item,) = list(ParkingLot(tmp_path))
    assert item.reason.startswith("retry budget spent") and str(status) in item.reason
    assert item.cause == "outage"


def test_retry_after_holds_every_call_until_it_passes(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    """A 429 with ``Retry-After: 1`` for every cuk: nobody calls K2HR3 again within that
    second, then each deletion is delivered, none parked."""
    k2hr3.status, k2hr3.retry_after = 429, "1"
    handler = make_handler()
    done: list[list[Result]] = []
    notes = [port_delete(f"m-{i}", cuk_of(i)) for i in range(4)]
    thread = threading.Thread(target=lambda: done.append(handler.handle_batch(notes)))
    thread.start()
    wait_until(lambda: k2hr3.requests >= 4)
    time.sleep(0.5)
    first = k2hr3.calls[:4]
    k2hr3.status = 204
    join([thread])
    assert done == [[Result.DELETED] * 4]
    again = [c for c in k2hr3.calls[4:]]
    assert min(c.at for c in again) - max(c.at for c in first) >= 0.9


def test_retry_after_as_an_http_date_is_honoured(
    k2hr3: FakeK2HR3, make_handler: MakeHandler
) -> None:
    k2hr3.status = 503
    k2hr3.retry_after = email.utils.formatdate(time.time() + 2, usegmt=True)
    handler = make_handler()
    done: list[Result] = []
    thread = threading.Thread(target=lambda: done.append(handler.handle(port_delete("m-1"))))
    thread.start()
    wait_until(lambda: k2hr3.requests >= 1)
    k2hr3.status = 204
    join([thread])
    assert done == [Result.DELETED]
    first, second = k2hr3.calls[0], k2hr3.calls[1]
    # The date has a resolution of one second: at least 1 s of the 2 asked for.
    assert second.at - first.at >= 1.0


def test_a_rate_limiting_k2hr3_gets_nothing_parked(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """K2HR3 takes 2 requests a second and answers 429 with Retry-After beyond: 40
    deletions in four batches, handled at once, are all delivered and none is parked,
    because a rate limit is no strike against a cuk."""
    k2hr3.rate = 2
    handler = make_handler(retry_budget=120)
    batches = [[port_delete(f"m-{b}-{i}", cuk_of(b * 10 + i)) for i in range(10)] for b in range(4)]
    results: list[list[Result]] = []
    threads = [
        threading.Thread(target=lambda notes=notes: results.append(handler.handle_batch(notes)))
        for notes in batches
    ]
    for thread in threads:
        thread.start()
    join(threads, timeout=110)
    assert results == [[Result.DELETED] * 10] * 4
    assert list(ParkingLot(tmp_path)) == []
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == sorted(cuk_of(i) for i in range(40))
    # The first round goes out whole (nothing says to slow down yet); after it, calls
    # keep to about the rate K2HR3 took, not one per held deletion per Retry-After.
    assert k2hr3.requests <= 40 + 2 * 40, k2hr3.requests


def test_resend_never_parks_twice_and_says_what_it_would_have_done(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """A parked deletion sent again goes the way of any notification, but its file is
    the caller's: no second file, only the cause and reason it would be parked with."""
    handler = make_handler()
    k2hr3.status_for[cuk_of(2)] = 400
    k2hr3.status_for[cuk_of(3)] = 503
    notes = [port_delete(f"m-{i}", cuk_of(i)) for i in (1, 2, 3)]
    (ok, rejected, down) = handler.resend(notes, budget=1.0)
    assert ok == (Result.DELETED, None)
    assert rejected[0] is Result.PARKED and rejected[1][0] == "operator"
    assert down[0] is Result.PARKED and down[1][0] == "outage"
    assert list(ParkingLot(tmp_path)) == []


def test_a_deletion_that_failed_alone_thousands_of_times_still_backs_off(
    make_handler: MakeHandler,
) -> None:
    """A long budget with a short interval lets one deletion fail alone very often: its
    backoff must stay a number (2 ** 1100 is no float), never an exception that would
    hand its batch back."""
    handler = make_handler()
    item = handler_module._Item(port_delete(), alone=5000, successes_seen=-1)
    answer = Answer(Outcome.RETRY, 503, "", 0.0)
    assert handler._strike(item, answer) is False
    assert item.due > 0


def test_a_403_to_the_end_of_the_budget_is_a_strike_case_not_an_outage(
    k2hr3: FakeK2HR3, make_handler: MakeHandler, tmp_path: Path
) -> None:
    """A 403 does not describe K2HR3 as a whole: a deletion refused with it for its
    whole budget is re-sent hourly (then left to an operator), not every few minutes
    for ever as an outage would be."""
    k2hr3.status = 403
    assert make_handler(retry_budget=0.5).handle(port_delete("m-403")) is Result.PARKED
    (item,) = list(ParkingLot(tmp_path))
    assert item.cause == "strikes" and "403" in item.reason
