"""Metrics and /healthz: scraped over HTTP from the real daemon on the real RabbitMQ.

The in-process tests drive the observer hooks directly, for the rules (what counts as
healthy, what each counter counts); the daemon tests prove the wiring: real messages
through the broker, the real HTTP server, K2HR3 going away and coming back, a
connection cut under the daemon, a port already taken.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.broker import TcpProxy
from support.daemon import Daemon
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete, nova_versioned_delete
from support.scrape import free_port, healthz
from support.waiting import wait_until

from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.breaker import CircuitBreaker, Turn
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.core.parking import Parked, ParkingLot
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.observability import metrics, server
from k2hr3_osnl.observability.health import RECENT, Health
from k2hr3_osnl.rabbit.driverlog import BrokerLogWatch

PORT_DELETE = "port.delete.end"


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- in process: the rules -----------------------------------------------------------


def note(event_type: str = PORT_DELETE) -> Notification:
    return Notification(str(uuid.uuid4()), event_type, "network.node1", {})


def answer(outcome: Outcome, status: int | None, seconds: float = 0.004) -> Answer:
    return Answer(outcome, status, "" if status else "connection failed: refused", seconds)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Health, metrics.Metrics, int, Clock]]:
    clock = Clock()
    health = Health(CircuitBreaker(), ParkingLot(tmp_path), clock=clock)
    stats = metrics.Metrics(health)
    http = server.serve("127.0.0.1", free_port(), server.make_app(stats.registry, health))
    assert http is not None
    yield health, stats, http.port, clock
    http.close()


def test_each_hook_lands_in_its_metric(
    served: tuple[Health, metrics.Metrics, int, Clock], tmp_path: Path
) -> None:
    health, stats, port, _ = served
    for hooks in (Observer(), health, stats):  # the no-op base accepts every hook too
        hooks.listening()
    deleted, retried, ignored = note(), note("instance.delete.end"), note("compute.instance.exists")
    stats.handling(deleted)
    assert value(scrape(port), "k2hr3_osnl_notifications_in_flight") == 1
    stats.answered(deleted, answer(Outcome.DELETED, 204, 0.003), 1)
    stats.handled(deleted, Result.DELETED)
    stats.handling(retried)
    stats.answered(retried, answer(Outcome.RETRY, None, 2.0), 1)
    stats.answered(retried, answer(Outcome.RETRY, 503, 0.02), 2)
    stats.answered(retried, answer(Outcome.DELETED, 200, 0.01), 3)
    stats.handled(retried, Result.DELETED)
    stats.handling(ignored)
    stats.handled(ignored, Result.IGNORED)
    stats.unreadable("not a readable message (JSONDecodeError)")
    ParkingLot(tmp_path).park(Parked("m", PORT_DELETE, "network.x", {}, "test", 1, 0.0))

    s = scrape(port)
    count = "k2hr3_osnl_notifications_total"
    assert value(s, count, event_type=PORT_DELETE, outcome="deleted") == 1
    assert value(s, count, event_type="instance.delete.end", outcome="deleted") == 1
    # Event types beyond the deletions share one label value: bounded series.
    assert value(s, count, event_type="other", outcome="ignored") == 1
    # A body that is no notification at all counts as an invalid one.
    assert value(s, count, event_type="other", outcome="invalid") == 1
    retries = "k2hr3_osnl_notification_retries_total"
    assert value(s, retries, event_type="instance.delete.end") == 2
    calls = "k2hr3_osnl_k2hr3_requests_total"
    assert value(s, calls, status="204", outcome="deleted") == 1
    assert value(s, calls, status="no_answer", outcome="retry") == 1
    assert value(s, calls, status="503", outcome="retry") == 1
    assert value(s, "k2hr3_osnl_k2hr3_request_duration_seconds_count") == 4
    assert value(s, "k2hr3_osnl_k2hr3_request_duration_seconds_bucket", le="0.005") == 1
    assert value(s, "k2hr3_osnl_k2hr3_request_duration_seconds_bucket", le="2.5") == 4
    assert value(s, "k2hr3_osnl_notifications_in_flight") == 0
    assert value(s, "k2hr3_osnl_parked") == 1
    assert value(s, "k2hr3_osnl_last_success_timestamp_seconds") > 0
    assert value(s, "k2hr3_osnl_consuming") == 1
    (build,) = [k for k in s if k[0] == "k2hr3_osnl_build_info"]
    assert dict(build[1])["version"]
    assert any(k[0] == "process_resident_memory_bytes" for k in s)
    # Every outcome series exists from the start, so that rate() works on the first one.
    assert (count, frozenset({"event_type": PORT_DELETE, "outcome": "parked"}.items())) in s


def test_dry_run_calls_are_counted_but_not_timed(
    served: tuple[Health, metrics.Metrics, int, Clock],
) -> None:
    _, stats, port, _ = served
    stats.answered(note(), Answer(Outcome.DELETED, None, "dry run: not sent", 0.0), 1)
    s = scrape(port)
    assert value(s, "k2hr3_osnl_k2hr3_requests_total", status="dry_run", outcome="deleted") == 1
    assert value(s, "k2hr3_osnl_k2hr3_request_duration_seconds_count") == 0


def test_healthz_follows_the_consumer_and_k2hr3(
    served: tuple[Health, metrics.Metrics, int, Clock],
) -> None:
    health, _, port, clock = served
    status, body = healthz(port)
    assert (status, body["status"], body["reason"]) == (503, "unavailable", "not consuming yet")

    health.listening()
    status, body = healthz(port)
    assert (
        status == 200 and body["consuming"] is True and body["k2hr3"]["state"] == "not called yet"
    )

    health.answered(note(), answer(Outcome.RETRY, None), 1)
    status, body = healthz(port)
    assert status == 503
    assert body["reason"].startswith("K2HR3 failing since 2027-01-15T08:00:00Z")
    assert "connection failed: refused" in body["reason"]
    assert value(scrape(port), "k2hr3_osnl_k2hr3_up") == 0

    clock.now += 30
    health.answered(note(), answer(Outcome.RETRY, 503), 2)
    assert healthz(port)[1]["k2hr3"]["failing_since"] == "2027-01-15T08:00:00Z"  # the first one
    health.answered(note(), answer(Outcome.REJECTED, 400), 1)  # an answer: K2HR3 is there
    status, body = healthz(port)
    assert status == 200 and body["k2hr3"]["state"] == "ok" and body["k2hr3"]["last_success"]

    health.answered(note(), answer(Outcome.RETRY, None), 1)
    assert healthz(port)[0] == 503
    clock.now += RECENT + 1  # nothing left to deliver, so nobody probes: no longer blamed
    assert healthz(port)[0] == 200

    health.broker_lost("(320) CONNECTION_FORCED")
    status, body = healthz(port)
    assert status == 503 and body["reason"].startswith("RabbitMQ connection lost since")
    assert "CONNECTION_FORCED" in body["reason"] and body["consuming"] is False
    health.broker_back()
    status, body = healthz(port)
    assert status == 200 and body["broker"]["reconnects"] == 1
    assert value(scrape(port), "k2hr3_osnl_broker_reconnects_total") == 1

    health.stopping()
    status, body = healthz(port)
    assert (status, body["reason"]) == (503, "stopping")


def test_open_breaker_shows_in_healthz(tmp_path: Path) -> None:
    breaker = CircuitBreaker()
    health = Health(breaker, ParkingLot(tmp_path))
    health.listening()
    breaker.record(Turn.CALL, ok=False)
    assert health.status().details["k2hr3"]["breaker"] == "open"
    assert health.status().breaker_open


def test_registries_are_independent(tmp_path: Path) -> None:
    """Two daemons in one process (tests do that) do not clash or share counts."""
    first = metrics.Metrics(Health())
    second = metrics.Metrics(Health())
    first.handled(note(), Result.DELETED)
    label = {"event_type": PORT_DELETE, "outcome": "deleted"}
    assert first.registry.get_sample_value("k2hr3_osnl_notifications_total", label) == 1
    assert second.registry.get_sample_value("k2hr3_osnl_notifications_total", label) == 0


def test_unknown_path_and_off_switches(served: tuple[Health, metrics.Metrics, int, Clock]) -> None:
    _, stats, port, _ = served
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=5)
    assert error.value.code == 404
    app = server.make_app(stats.registry, Health())
    assert server.serve("", 9840, app) is None
    assert server.serve("127.0.0.1", 0, app) is None


def test_port_in_use_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="k2hr3_osnl"):
            assert server.serve("127.0.0.1", port, server.make_app(Health(), Health())) is None
    (record,) = [r for r in caplog.records if r.name == "k2hr3_osnl.observability.server"]
    assert record.levelno == logging.WARNING
    assert f"cannot listen on 127.0.0.1:{port}" in record.getMessage()
    assert "consuming anyway" in record.getMessage()


class Recorder(Observer):
    def __init__(self) -> None:
        self.events: list[str] = []

    def broker_lost(self, detail: str) -> None:
        self.events.append(f"lost: {detail}")

    def broker_back(self) -> None:
        self.events.append("back")


@pytest.fixture
def driver_log() -> Iterator[tuple[logging.Logger, list[logging.LogRecord]]]:
    """The rabbit driver's logger under libs_debug_level = warn, with what gets through."""
    parent = logging.getLogger("oslo.messaging")
    saved = parent.level
    parent.setLevel(logging.WARNING)
    passed: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            passed.append(record)

    keep = Keep()
    parent.addHandler(keep)
    yield logging.getLogger("oslo.messaging._drivers.impl_rabbit"), passed
    parent.removeHandler(keep)
    parent.setLevel(saved)


def test_broker_log_watch_reads_the_driver_lines_and_keeps_the_log_as_it_was(
    driver_log: tuple[logging.Logger, list[logging.LogRecord]],
) -> None:
    logger, passed = driver_log
    recorder = Recorder()
    watch = BrokerLogWatch(recorder).install()
    try:
        info = {"connection_id": "c1", "hostname": "127.0.0.1", "port": 5672}
        logger.error(
            "[%(connection_id)s] AMQP server on %(hostname)s:%(port)s is unreachable: "
            "%(err_str)s. Trying again in %(sleep_time)d seconds.",
            {**info, "err_str": "[Errno 111] Connection refused", "sleep_time": 1},
        )
        logger.info(
            "[%(connection_id)s] Reconnected to AMQP server on %(hostname)s:%(port)s via "
            "[%(transport)s] client with port %(client_port)s.",
            {**info, "transport": "amqp", "client_port": 40000},
        )
        logger.error("Connection failed: %s (retrying in %s seconds)", "timed out", 2.0)
        logger.debug("[c1] Queue.declare: x")
    finally:
        watch.uninstall()
    assert recorder.events == [
        "lost: [Errno 111] Connection refused",
        "back",
        "lost: timed out",
    ]
    # The INFO and DEBUG lines were seen by the watch, but not logged: warn means warn.
    assert [r.levelno for r in passed] == [logging.ERROR, logging.ERROR]


# --- the real daemon on the real RabbitMQ ----------------------------------------------


def start(e2e: Harness, port: int, **config: Any) -> Daemon:
    sections = {"metrics": {"port": port}, "DEFAULT": {"debug_level": "info"}}
    return e2e.daemon(e2e.config(sections=sections, **config)).start()


def wait_scrape(daemon: Daemon, port: int, what: str, check: Any, timeout: float = 20) -> Samples:
    def ready() -> Samples | None:
        s = scrape(port)
        return s if check(s) else None

    try:
        return wait_until(ready, timeout, what, interval=0.1)
    except AssertionError as error:
        raise AssertionError(daemon.report(f"{error}: {scrape(port)}")) from None


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
def test_metrics_and_healthz_of_the_real_daemon(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    port = free_port()
    daemon = start(e2e, port)
    assert healthz(port)[0] == 200, daemon.report("not healthy once listening")

    cuk, other = str(uuid.uuid4()), str(uuid.uuid4())
    e2e.notify(
        e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(cuk, ["10.0.0.5"])
    )
    e2e.notify(e2e.nova, e2e.versioned, "messaging", nova_versioned_delete(other))
    dhcp = neutron_port_delete(str(uuid.uuid4()), ["10.0.0.2"])
    dhcp[2]["port"]["device_owner"] = "network:dhcp"
    e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", dhcp)
    bad = neutron_port_delete("not-a-uuid", ["10.0.0.3"])
    e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", bad)

    count = "k2hr3_osnl_notifications_total"
    s = wait_scrape(
        daemon,
        port,
        "four notifications counted",
        lambda s: sum(v for (n, _), v in s.items() if n == count) >= 4,
    )
    assert value(s, count, event_type=PORT_DELETE, outcome="deleted") == 1
    assert value(s, count, event_type="instance.delete.end", outcome="deleted") == 1
    assert value(s, count, event_type=PORT_DELETE, outcome="ignored") == 1
    assert value(s, count, event_type=PORT_DELETE, outcome="invalid") == 1
    assert value(s, "k2hr3_osnl_k2hr3_requests_total", status="204", outcome="deleted") == 2
    assert value(s, "k2hr3_osnl_k2hr3_request_duration_seconds_count") == 2
    assert value(s, "k2hr3_osnl_notifications_in_flight") == 0
    assert value(s, "k2hr3_osnl_parked") == 0
    assert value(s, "k2hr3_osnl_last_success_timestamp_seconds") > 0
    assert sorted(k2hr3.deleted()) == sorted([(cuk, ("10.0.0.5",)), (other, None)])

    # K2HR3 goes away: the next deletion fails, and /healthz says so.
    k2hr3.stop()
    late = str(uuid.uuid4())
    e2e.notify(e2e.nova, e2e.versioned, "messagingv2", nova_versioned_delete(late))
    wait_until(lambda: healthz(port)[0] == 503, 20, "/healthz to turn 503")
    _, body = healthz(port)
    assert body["reason"].startswith("K2HR3 failing since"), body
    assert "connection failed" in body["reason"], body
    assert body["k2hr3"]["breaker"] == "open" and body["consuming"] is True
    assert value(scrape(port), "k2hr3_osnl_k2hr3_up") == 0

    # ... and comes back: the waiting deletion goes through, health recovers.
    k2hr3.start()
    assert k2hr3.wait_for(3, timeout=20), daemon.report("the waiting deletion never arrived")
    wait_until(lambda: healthz(port)[0] == 200, 20, "/healthz to turn 200 again")
    s = scrape(port)
    assert value(s, count, event_type="instance.delete.end", outcome="deleted") == 2
    assert value(s, "k2hr3_osnl_notification_retries_total", event_type="instance.delete.end") >= 1
    assert value(s, "k2hr3_osnl_k2hr3_requests_total", status="no_answer", outcome="retry") >= 1
    assert daemon.stop() == 0


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
def test_a_cut_connection_is_a_counted_reconnect(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    proxy = TcpProxy().start()
    try:
        port = free_port()
        daemon = start(e2e, port, transport_url=proxy.url)
        proxy.cut()
        wait_scrape(
            daemon,
            port,
            "a reconnect counted",
            lambda s: value(s, "k2hr3_osnl_broker_reconnects_total") >= 1,
        )
        wait_until(lambda: healthz(port)[0] == 200, 20, "/healthz back to 200")
        assert healthz(port)[1]["broker"]["reconnects"] >= 1
        # The reconnected consumer works.
        cuk = str(uuid.uuid4())
        e2e.notify(e2e.nova, e2e.versioned, "messagingv2", nova_versioned_delete(cuk))
        assert k2hr3.wait_for(1, timeout=20), daemon.report("nothing delivered after reconnect")
        # The driver's connection-lost line is logged (it is an error); nothing more.
        assert "is unreachable" in daemon.log() or "closed the connection" in daemon.log()
        assert "Reconnected to AMQP server" not in daemon.log()  # INFO, below 'warn'
        assert daemon.stop() == 0
    finally:
        proxy.stop()


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
def test_port_in_use_is_a_warning_and_the_daemon_consumes(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = start(e2e, port)
        cuk = str(uuid.uuid4())
        e2e.notify(e2e.nova, e2e.versioned, "messagingv2", nova_versioned_delete(cuk))
        assert k2hr3.wait_for(1, timeout=20), daemon.report("nothing delivered")
    assert k2hr3.deleted() == [(cuk, None)]
    (line,) = [x for x in daemon.log().splitlines() if "metrics and /healthz not served" in x]
    assert "WARNING" in line and f"cannot listen on 127.0.0.1:{port}" in line
    assert daemon.stop() == 0


def test_slow_clients_hold_a_bounded_number_of_threads_for_a_bounded_time(
    served: tuple[Health, metrics.Metrics, int, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients that open a connection and send a byte now and then (never a whole
    request) hold at most MAX_CONNECTIONS threads, each for at most CONNECTION_SECONDS,
    and never shut out /metrics."""
    import threading
    import time

    monkeypatch.setattr(server, "CONNECTION_SECONDS", 2.0)
    _, _, port, _ = served
    threads_before = threading.active_count()
    slow = []
    for _ in range(server.MAX_CONNECTIONS + 10):
        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(b"GET /metrics HTTP/1.1\r\n")  # and nothing more, for now
        slow.append(conn)
    time.sleep(0.5)
    held = threading.active_count() - threads_before
    # One thread and one timer per served connection; the rest were closed at once.
    assert held <= 2 * server.MAX_CONNECTIONS, held
    # Every slot is taken, by clients that never finished a request: the oldest of
    # them makes room, so the scraper is answered rather than refused (issue 17).
    assert value(scrape(port), "k2hr3_osnl_notifications_in_flight") == 0
    time.sleep(2.0)
    for conn in slow:
        with contextlib.suppress(OSError):
            conn.sendall(b"X: y\r\n")  # still trickling: cut anyway
    assert value(scrape(port), "k2hr3_osnl_notifications_in_flight") == 0
    for conn in slow:
        conn.close()
