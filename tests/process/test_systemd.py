"""systemd's notify protocol: the helper alone, then the real daemon under a fake systemd.

The daemon runs as a subprocess on the real RabbitMQ with ``$NOTIFY_SOCKET`` pointing at
a socket this test reads, as systemd would, and ``$WATCHDOG_USEC`` asking for a ping
every half second.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import oslo_messaging
import pytest
from oslo_config import cfg
from support.broker import TcpProxy
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.notify_socket import NotifySocket
from support.samples import neutron_port_delete
from support.waiting import wait_until

from k2hr3_osnl.process import systemd
from k2hr3_osnl.rabbit import liveness

WATCHDOG_USEC = 1_000_000  # the daemon pings every 0.5 s


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


# The helper on its own.


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = systemd.Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False


def test_one_datagram_per_call_to_a_path_socket(notify: NotifySocket) -> None:
    notifier = systemd.Notifier({"NOTIFY_SOCKET": notify.path})
    assert notifier.ready("listening on 4 bindings")
    notify.wait_for("READY")
    (message,) = notify.snapshot()
    assert message.raw == "READY=1\nSTATUS=listening on 4 bindings"


def test_abstract_socket_names_start_with_an_at_sign() -> None:
    name = f"k2hr3-osnl-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert systemd.Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_a_status_cannot_smuggle_another_field(notify: NotifySocket) -> None:
    systemd.Notifier({"NOTIFY_SOCKET": notify.path}).status("K2HR3 failing:\nREADY=1")
    notify.wait_for("STATUS")
    assert notify.find("READY") is None


def test_reloading_carries_the_monotonic_clock(notify: NotifySocket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    systemd.Notifier({"NOTIFY_SOCKET": notify.path}).reloading()
    index = notify.wait_for("RELOADING")
    fields = notify.snapshot()[index].fields
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_a_gone_systemd_is_not_an_error(tmp_path: Path) -> None:
    notifier = systemd.Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert notifier.send("WATCHDOG=1") is False


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "4000000"}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    environ: dict[str, str], expected: float | None
) -> None:
    assert systemd.watchdog_interval(environ) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, False), ({"INVOCATION_ID": "abc"}, True), ({"NOTIFY_SOCKET": "/run/x"}, True)],
)
def test_under_systemd(environ: dict[str, str], expected: bool) -> None:
    assert systemd.under_systemd(environ) is expected


def test_liveness_follows_the_listener_on_the_fake_driver() -> None:
    """Before start, consuming, after stop: what the watchdog is fed from."""

    class Endpoint:
        def info(self, *args: object) -> None:
            pass

    conf = cfg.ConfigOpts()
    conf([], default_config_files=[])
    transport = oslo_messaging.get_notification_transport(conf, url="fake://")
    server = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic="t")], [Endpoint()], executor="threading"
    )
    assert not liveness.check(server).ok
    server.start()
    try:
        health = liveness.check(server)
        assert health.ok and health.connected is None, health  # fake:// has no socket
    finally:
        server.stop()
        server.wait()
        transport.cleanup()
    assert not liveness.check(server).ok


# The real daemon under a fake systemd.


def _under_fake_systemd(monkeypatch: pytest.MonkeyPatch, notify: NotifySocket) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)


def _delete_one(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    count = len(k2hr3.deleted())
    e2e.notify(
        e2e.neutron,
        e2e.notifications,
        "messagingv2",
        neutron_port_delete(str(uuid.uuid4()), ["192.0.2.7"]),
    )
    assert k2hr3.wait_for(count + 1, timeout=20), "the daemon did not consume"


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_notify_messages_in_order(
    e2e: Harness, k2hr3: FakeK2HR3, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATUS while connecting, READY=1 once consuming, WATCHDOG=1 while healthy,
    RELOADING=1 + MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM."""
    _under_fake_systemd(monkeypatch, notify)
    daemon = e2e.start()
    ready = notify.wait_for("READY", "1")
    pinged = notify.wait_for("WATCHDOG", "1", ready + 1)
    for _ in range(3):  # and it keeps coming
        pinged = notify.wait_for("WATCHDOG", "1", pinged + 1)
    _delete_one(e2e, k2hr3)

    before_hup = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    os.kill(daemon.pid, signal.SIGHUP)
    reloading = notify.wait_for("RELOADING", "1", ready + 1)
    ready_again = notify.wait_for("READY", "1", reloading + 1)
    notify.wait_for("WATCHDOG", "1", ready_again + 1)
    _delete_one(e2e, k2hr3)  # the same connection still consumes

    assert daemon.stop() == 0, daemon.report("exit status")
    stopping = notify.wait_for("STOPPING", "1", ready_again + 1)

    messages = notify.snapshot()
    assert messages[0].fields["STATUS"].startswith("connecting to RabbitMQ rabbit://127.0.0.1")
    assert not any("WATCHDOG" in m or "READY" in m for m in messages[:ready]), messages
    assert messages[ready].fields["STATUS"].startswith("listening on 4 binding(s)")
    monotonic = int(messages[reloading].fields["MONOTONIC_USEC"])
    assert before_hup <= monotonic <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert not any("WATCHDOG" in m for m in messages[reloading:ready_again]), messages
    assert messages[stopping].fields["STATUS"].startswith("stopping")
    # The way out has the watchdog's limit of two drains (drain_seconds = 10 here) and a
    # margin, then nothing pings: TimeoutStopSec= bounds the stop.
    assert messages[stopping].fields["WATCHDOG_USEC"] == "30000000"
    assert not any("WATCHDOG" in m or "READY" in m for m in messages[stopping + 1 :]), messages
    # Pings at about the asked rate (0.5 s): not a flood, not a trickle.
    pings = [m.at for m in messages[ready:reloading] if "WATCHDOG" in m]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert gaps and all(0.3 < gap < 1.0 for gap in gaps), gaps


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_no_watchdog_while_the_broker_is_unreachable(
    e2e: Harness, k2hr3: FakeK2HR3, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection drops: the pings stop and STATUS says why; it comes back: they
    resume, and the daemon consumes again."""
    _under_fake_systemd(monkeypatch, notify)
    proxy = TcpProxy().start()
    try:
        daemon = e2e.start(transport_url=proxy.url)
        ready = notify.wait_for("READY", "1")
        notify.wait_for("WATCHDOG", "1", ready + 1)

        proxy.stop()
        lost = notify.wait_for("STATUS", "RabbitMQ connection lost, reconnecting", ready + 1)
        time.sleep(2.0)  # four watchdog intervals
        assert notify.find("WATCHDOG", start=lost + 1) is None, daemon.report("pinged")

        proxy.start()
        back = notify.wait_for("WATCHDOG", "1", lost + 1, timeout=30)
        assert notify.snapshot()[back - 1].fields.get("STATUS", "").startswith("listening")
        # Reconnected means consuming: the queue is bound again and deliveries flow.
        wait_until(lambda: e2e.broker.queue_info(e2e.pool)[1] > 0, 20, "a consumer again")
        _delete_one(e2e, k2hr3)
        assert "listener unhealthy, not feeding the watchdog" in daemon.log()
        assert daemon.stop() == 0
    finally:
        proxy.stop()


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_k2hr3_failing_shows_in_status_but_does_not_stop_the_watchdog(
    e2e: Harness, k2hr3: FakeK2HR3, notify: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restart would not mend K2HR3: the daemon says so and keeps pinging."""
    _under_fake_systemd(monkeypatch, notify)
    daemon = e2e.start()
    ready = notify.wait_for("READY", "1")
    k2hr3.status = 503
    e2e.notify(
        e2e.neutron,
        e2e.notifications,
        "messagingv2",
        neutron_port_delete(str(uuid.uuid4()), ["192.0.2.8"]),
    )
    failing = wait_until(
        lambda: next(
            (
                i
                for i, m in enumerate(notify.snapshot())
                if m.fields.get("STATUS", "").startswith("K2HR3 failing: status 503")
            ),
            None,
        ),
        20,
        "a K2HR3 failing status",
    )
    notify.wait_for("WATCHDOG", "1", failing + 1)
    k2hr3.status = 204
    assert k2hr3.wait_for(1, timeout=20)
    back = notify.wait_for("STATUS", notify.snapshot()[ready].fields["STATUS"], failing + 1)
    notify.wait_for("WATCHDOG", "1", back + 1)
    assert daemon.stop() == 0
