"""The seam to oslo.messaging's internals: one module, each hook pinned by a contract.

An oslo.messaging upgrade that renames or changes a hook fails one of these, by name,
instead of silently changing what is acknowledged. At start the daemon runs the same
self-check: a missing delivery hook refuses the start (exit 2), a missing speed or
insight hook is a warning.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import oslo_messaging
import pytest
from oslo_config import cfg
from support import paths
from support.daemon import with_broker

from k2hr3_osnl.rabbit import seam

SRC = paths.ROOT / "src" / "k2hr3_osnl"
#: Private names of oslo.messaging and kombu that the daemon relies on.
PRIVATE = re.compile(
    r"oslo_messaging\._|_drivers|_extract_user_message|_poll_style_listener|_listen_thread"
    r"|_MsgIdCache|_SSL_PROTOCOLS|_notifier_opts|_create_listener|\.connection\.connection"
    r"|_process_incoming|_allow_requeue"
)


def test_private_names_are_used_in_the_seam_and_nowhere_else() -> None:
    users = sorted(
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if PRIVATE.search(path.read_text(encoding="utf-8"))
    )
    assert users == ["rabbit/seam.py"]


def test_the_installed_release_has_every_hook() -> None:
    assert seam.check() == ([], []), seam.version()


def test_a_missing_hook_is_reported_by_name_and_version() -> None:
    gone = seam.Hook("Thing._gone", "does something", True, lambda: False)
    weak = seam.Hook("Thing._slow", "is faster", False, lambda: False)
    broken = seam.Hook("Thing._broken", "explodes", True, lambda: 1 / 0 > 0)
    fatal, warnings = seam.check((gone, weak, broken))
    assert fatal == [
        f"oslo.messaging {seam.version()} has no Thing._gone: it does something",
        f"oslo.messaging {seam.version()} has no Thing._broken: it explodes",
    ]
    assert warnings == [f"oslo.messaging {seam.version()} has no Thing._slow: it is faster"]


class _Incoming:
    def __init__(self, message: dict[str, object]) -> None:
        self.message = message
        self.ctxt: dict[str, object] = {}


def test_read_message_gives_the_priority_and_what_an_endpoint_gets() -> None:
    dispatcher = seam.BatchDispatcher([], None)
    raw = _Incoming(
        {
            "message_id": "m-1",
            "priority": "INFO",
            "event_type": "port.delete.end",
            "publisher_id": "network.node1",
            "payload": {"port": {}},
            "timestamp": "2026-01-01 00:00:00",
        }
    )
    priority, message = seam.read_message(dispatcher, raw)
    assert priority == "info" and priority in seam.PRIORITIES
    assert message["event_type"] == "port.delete.end"
    assert message["publisher_id"] == "network.node1"
    assert message["payload"] == {"port": {}}
    assert message["metadata"]["message_id"] == "m-1"
    assert set(message) >= {"ctxt", "publisher_id", "event_type", "payload", "metadata"}


def test_redelivered_copies_reach_the_handler() -> None:
    from oslo_messaging._drivers import amqp

    assert seam.let_redeliveries_through()
    cache = amqp._MsgIdCache()
    for _ in range(3):  # the same _unique_id again: no DuplicateMessageError, no skip
        body = {"payload": 1, amqp.UNIQUE_ID: "u-1"}
        cache.check_duplicate_message(body)
        assert amqp.UNIQUE_ID not in body


def test_notifier_options_hold_transport_url() -> None:
    names = {opt.name for opt in seam.notifier_opts()}
    assert {"transport_url", "driver", "topics"} <= names


def test_ssl_protocols_are_the_drivers_own() -> None:
    assert any(name.lower().startswith("tls") for name in seam.ssl_protocols())


def _fake_listener(wrap: bool) -> oslo_messaging.MessageHandlingServer:
    conf = cfg.ConfigOpts()
    conf([])
    transport = oslo_messaging.get_notification_transport(conf, url="fake://")
    target = oslo_messaging.Target(topic=f"t{uuid.uuid4().hex[:8]}")

    class Endpoint:
        def info(self, messages: list[object]) -> None:
            return None

    dispatcher = seam.BatchDispatcher([Endpoint()], None)

    class Wrapped(seam.PollWrappingBatchServer):
        @staticmethod
        def wrap_poll(poll, ready):  # type: ignore[no-untyped-def]
            def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
                return poll(*args, **kwargs)

            wrapped.wrapped = True  # type: ignore[attr-defined]
            wrapped.ready = ready  # type: ignore[attr-defined]
            return wrapped

    server_class = Wrapped if wrap else seam.BatchServer
    return server_class(transport, [target], dispatcher, executor="threading", batch_size=4)


def test_the_driver_poll_can_be_wrapped_and_the_consumer_seen() -> None:
    server = _fake_listener(wrap=True)
    assert seam.poll_thread(server) is None  # not started
    server.start()
    try:
        assert getattr(seam.driver_poll(server.listener), "wrapped", False)
        # The fake driver has no socket to look at: batches give each message its window.
        assert seam.driver_poll(server.listener).ready is None  # type: ignore[attr-defined]
        thread = seam.poll_thread(server)
        assert thread is not None and thread.is_alive()
        assert seam.broker_connected(server) is None  # the fake driver has no connection
    finally:
        server.stop()
        server.wait()


def _run_with(prelude: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command, after ``prelude`` changed the installed oslo.messaging."""
    code = textwrap.dedent(prelude) + (
        "\nimport sys\nfrom k2hr3_osnl.commands.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_missing_delivery_hook_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    """If a release renames _extract_user_message, the daemon must not consume and
    acknowledge every notification as unreadable: it refuses to start, saying why."""
    config = tmp_path / "k2hr3-osnl.conf"
    config.write_text(with_broker(f"[k2hr3]\nstate_dir = {tmp_path / 'state'}\n"), encoding="utf-8")
    result = _run_with(
        """
        from oslo_messaging.notify import dispatcher
        del dispatcher.NotificationDispatcher._extract_user_message
        """,
        "-c",
        str(config),
    )
    assert result.returncode == 2, result
    assert f"oslo.messaging {seam.version()} has no" in result.stderr
    assert "NotificationDispatcher._extract_user_message" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_speed_hook_is_a_warning_and_the_daemon_would_run(tmp_path: Path) -> None:
    config = tmp_path / "k2hr3-osnl.conf"
    config.write_text(with_broker(f"[k2hr3]\nstate_dir = {tmp_path / 'state'}\n"), encoding="utf-8")
    result = _run_with(
        """
        from oslo_messaging._drivers import amqp
        del amqp._MsgIdCache
        """,
        "-c",
        str(config),
        "--check-config",
    )
    assert result.returncode == 0, result
    assert "warning: oslo.messaging" in result.stdout
    assert "amqp._MsgIdCache" in result.stdout


#: Releases that keep every name but change what a hook does: each must stop the start.
CHANGED = {
    "a renamed key in what _extract_user_message returns": """
        from oslo_messaging.notify import dispatcher
        original = dispatcher.NotificationDispatcher._extract_user_message
        def renamed(self, incoming):
            priority, raw, message = original(self, incoming)
            message["body"] = message.pop("payload")
            return priority, raw, message
        dispatcher.NotificationDispatcher._extract_user_message = renamed
        """,
    "another return shape of _extract_user_message": """
        from oslo_messaging.notify import dispatcher
        original = dispatcher.NotificationDispatcher._extract_user_message
        def reshaped(self, incoming):
            priority, raw, message = original(self, incoming)
            return priority, message, raw
        dispatcher.NotificationDispatcher._extract_user_message = reshaped
        """,
    "priorities no longer lowered": """
        from oslo_messaging.notify import dispatcher
        original = dispatcher.NotificationDispatcher._extract_user_message
        def raw_priority(self, incoming):
            priority, raw, message = original(self, incoming)
            return incoming.message["priority"], raw, message
        dispatcher.NotificationDispatcher._extract_user_message = raw_priority
        """,
    "a batch server that acknowledges what dispatch hands back": """
        from oslo_messaging.notify import listener
        def acknowledge_all(self, incoming):
            self.dispatcher.dispatch(incoming)
            for message in incoming:
                message.acknowledge()
        listener.BatchNotificationServer._process_incoming = acknowledge_all
        """,
}


@pytest.mark.parametrize("prelude", CHANGED.values(), ids=list(CHANGED))
def test_a_hook_that_acts_differently_stops_the_start_with_exit_2(
    tmp_path: Path, prelude: str
) -> None:
    """Every name still there, but what decides acknowledgement works differently: the
    self-check runs those hooks on a synthetic message and refuses to start, in one
    line, instead of acknowledging notifications it cannot have read or delivered."""
    config = tmp_path / "k2hr3-osnl.conf"
    # A broker nobody answers on: a daemon that passed the check would wait for it.
    config.write_text(
        f"[k2hr3]\nstate_dir = {tmp_path / 'state'}\n"
        "[oslo_messaging_notifications]\ntransport_url = rabbit://guest:guest@127.0.0.1:9/\n",
        encoding="utf-8",
    )
    try:
        result = _run_with(prelude, "-c", str(config), timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon started with a changed hook")
    assert result.returncode == 2, result
    assert f"k2hr3-osnl: oslo.messaging {seam.version()} changed " in result.stderr
    assert "on a synthetic" in result.stderr
    assert "Traceback" not in result.stderr
    checked = _run_with(prelude, "-c", str(config), "--check-config")
    assert checked.returncode == 1, checked
    assert "changed" in checked.stdout and "1 problem(s)" in checked.stdout


@pytest.mark.parametrize("hook", seam.HOOKS, ids=lambda hook: hook.name)
def test_each_hook_says_what_it_is_for(hook: seam.Hook) -> None:
    assert hook.present()
    assert len(hook.purpose) > 20


def test_a_lost_connection_fails_over_to_the_next_host_not_round_the_cluster() -> None:
    """Three layers may each ask to switch after one loss; only an attempted host is left.

    Without the hook, three switches on three hosts come back to the host that was lost
    (a node that is stopping), which is then retried first.
    """
    import kombu
    from support.scrape import free_port

    assert seam.fail_over_one_host_at_a_time()
    assert seam.fail_over_one_host_at_a_time(), "idempotent"
    ports = [free_port() for _ in range(3)]  # nothing listens: each attempt is refused
    url = ";".join(f"amqp://guest:guest@127.0.0.1:{port}//" for port in ports)
    connection = kombu.Connection(url, failover_strategy="round-robin", connect_timeout=1)
    tried: list[int] = []
    try:
        for _ in range(6):
            tried.append(connection.port)
            with pytest.raises(connection.recoverable_connection_errors):
                connection._connection_factory()  # one attempt on the current host
            for _layer in range(3):  # _consume, ensure, the reconnect loop
                connection.maybe_switch_next()
    finally:
        connection.release()
    assert tried == ports + ports
