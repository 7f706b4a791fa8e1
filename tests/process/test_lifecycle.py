"""process/lifecycle.py: what systemd hears as the daemon goes, on a real notify socket.

STATUS= lines only when they change; READY=1 once, and again after a reload; RELOADING=1
only once systemd was told we are ready; WATCHDOG=1 only while the listener really
consumes, and a status line that says why when it does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oslo_messaging
import pytest
from oslo_config import cfg
from support.k2hr3_standin import FakeK2HR3
from support.notify_socket import NotifySocket
from support.waiting import wait_until

from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.process import systemd
from k2hr3_osnl.process.lifecycle import Lifecycle

LISTENING = "listening on 2 exchanges"


@pytest.fixture
def systemd_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    """systemd's end of the protocol, with a 10 s watchdog meant for this process."""
    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


@pytest.fixture
def handler(k2hr3: FakeK2HR3, tmp_path: Path) -> Iterator[Handler]:
    made = Handler(
        client=RoleClient(k2hr3.url, connect_timeout=2, read_timeout=5),
        breaker=CircuitBreaker(),
        parking=ParkingLot(tmp_path / "state"),
        recent=RecentDeliveries(600),
        retry_budget=30,
    )
    yield made
    made.breaker.stop()
    made.client.close()


@pytest.fixture
def listener() -> Iterator[Any]:
    """A real oslo.messaging notification listener, on the in-memory fake:// transport."""
    transport = oslo_messaging.get_notification_transport(cfg.ConfigOpts(), url="fake://")
    server = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic="lifecycle")], [object()], executor="threading"
    )
    yield server
    if server.listener is not None:
        server.stop()
        server.wait()
    transport.cleanup()


def heard(sock: NotifySocket, count: int) -> list[dict[str, str]]:
    wait_until(lambda: len(sock.snapshot()) >= count, what=f"{count} notify messages")
    return [message.fields for message in sock.snapshot()]


def test_start_reload_and_stop_as_systemd_hears_them(
    systemd_socket: NotifySocket, handler: Handler, listener: Any
) -> None:
    life = Lifecycle(listener, handler, systemd.Notifier())
    life.connecting("rabbit://127.0.0.1:5672/")
    life.connecting("rabbit://127.0.0.1:5672/")  # unchanged: not sent again
    life.reloading()  # not ready yet: systemd still waits for READY=1
    life.ready(LISTENING)
    life.ready(LISTENING)
    life.reloading()
    life.reloaded(LISTENING)
    life.stopping(30)
    fields = heard(systemd_socket, 5)
    assert [f.pop("MONOTONIC_USEC", None) is not None for f in fields] == [
        False,
        False,
        True,
        False,
        False,
    ]
    assert fields == [
        {"STATUS": "connecting to RabbitMQ rabbit://127.0.0.1:5672/"},
        {"READY": "1", "STATUS": LISTENING},
        {"RELOADING": "1", "STATUS": "reloading"},
        {"READY": "1", "STATUS": LISTENING},
        {
            "STOPPING": "1",
            "STATUS": "stopping: finishing in-flight deletions (at most 30s)",
            # systemd's watchdog runs on while a unit stops: two drains and a margin.
            "WATCHDOG": "1",
            "WATCHDOG_USEC": "70000000",
        },
    ]


def test_half_the_watchdog_period_is_how_often_to_look(
    systemd_socket: NotifySocket, handler: Handler, listener: Any
) -> None:
    assert Lifecycle(listener, handler, systemd.Notifier()).interval == 5.0


def test_no_watchdog_ping_while_the_listener_does_not_consume(
    systemd_socket: NotifySocket, handler: Handler, listener: Any
) -> None:
    life = Lifecycle(listener, handler, systemd.Notifier())
    life.ready(LISTENING)
    health = life.tick()
    life.stopping(1)  # a marker: whatever tick() sent arrived before it
    assert not health.ok
    assert heard(systemd_socket, 3)[1:] == [
        {"STATUS": "the listener is not started"},
        {
            "STOPPING": "1",
            "STATUS": "stopping: finishing in-flight deletions (at most 1s)",
            "WATCHDOG": "1",
            "WATCHDOG_USEC": "12000000",
        },
    ]


def test_without_a_watchdog_stopping_does_not_turn_one_on(
    systemd_socket: NotifySocket, handler: Handler, listener: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC")
    Lifecycle(listener, handler, systemd.Notifier()).stopping(30)
    assert heard(systemd_socket, 1) == [
        {"STOPPING": "1", "STATUS": "stopping: finishing in-flight deletions (at most 30s)"}
    ]


def test_a_consuming_listener_feeds_the_watchdog_and_says_so(
    systemd_socket: NotifySocket, handler: Handler, listener: Any
) -> None:
    life = Lifecycle(listener, handler, systemd.Notifier())
    life.ready(LISTENING)
    life.tick()  # not started: the status says so
    listener.start()
    assert life.tick().ok
    assert heard(systemd_socket, 4)[2:] == [{"STATUS": LISTENING}, {"WATCHDOG": "1"}]
