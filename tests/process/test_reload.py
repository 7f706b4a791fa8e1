"""SIGHUP: the same files re-read, mutable options applied, the connection kept.

In-process tests cover what changes where; the end-to-end ones send SIGHUP to the real
daemon on the real RabbitMQ, reached through a TCP proxy that counts connections, so
"without dropping the connection" is a number, not a hope.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.broker import TcpProxy
from support.daemon import Daemon
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete
from support.waiting import wait_until

from k2hr3_osnl import config
from k2hr3_osnl.process import reload, service


def _write(path: Path, k2hr3: dict[str, str] | None = None, **default: str) -> Path:
    lines = ["[DEFAULT]", f"log_file = {path.with_suffix('.log')}"]
    lines += [f"{key} = {value}" for key, value in default.items()]
    lines += [
        "[oslo_messaging_notifications]",
        "transport_url = fake://",
        "[k2hr3]",
        "api_url = http://127.0.0.1:9/v1/role",
        f"state_dir = {path.parent / 'state'}",
    ]
    lines += [f"{key} = {value}" for key, value in (k2hr3 or {}).items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# In process.


def test_changes_say_which_options_need_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "a.conf"
    running = config.load([str(_write(path))])
    _write(path, {"timeout_seconds": "7", "dry_run": "true"}, debug_level="debug")
    text = path.read_text().replace("fake://", "rabbit://guest:s3cret@127.0.0.1:5672/")
    path.write_text(text + "\n[oslo_messaging_notifications]\nexchange = other\n")
    found = {(c.group, c.name): c for c in reload.changes(running, config.load([str(path)]))}

    assert set(found) == {
        ("DEFAULT", "debug_level"),
        ("k2hr3", "timeout_seconds"),
        ("k2hr3", "dry_run"),
        ("oslo_messaging_notifications", "transport_url"),
        ("oslo_messaging_notifications", "exchange"),
    }
    assert found["k2hr3", "timeout_seconds"].mutable
    assert str(found["k2hr3", "timeout_seconds"]) == "[k2hr3] timeout_seconds: 30.0 -> 7.0"
    assert not found["oslo_messaging_notifications", "exchange"].mutable
    url = found["oslo_messaging_notifications", "transport_url"]
    assert not url.mutable and url.secret and "s3cret" not in str(url)


def test_reload_applies_mutable_options_to_the_running_objects(
    tmp_path: Path, restore_logging: None
) -> None:
    path = tmp_path / "a.conf"
    conf = config.load([str(_write(path))])
    daemon = service.build(conf)
    old_client = daemon.handler.client
    _write(
        path,
        {
            "timeout_seconds": "7",
            "connect_timeout_seconds": "2",
            "retry_interval_seconds": "3",
            "retry_budget_seconds": "60",
            "duplicate_window_seconds": "5",
            "dry_run": "true",
            "api_url": "http://127.0.0.1:10/v1/role",  # not mutable
        },
        libs_debug_level="debug",
    )
    assert reload.reload(
        conf, lambda: config.load([str(path)]), lambda: service.apply_mutable(daemon)
    )

    handler = daemon.handler
    assert handler.client is not old_client
    assert handler.client.timeout == (2.0, 7.0)
    # A dry run consumes another queue: switching it needs a restart, so deletions held
    # for retry are never settled as "delivered (dry run)" by a SIGHUP.
    assert handler.client.dry_run is False
    assert conf.k2hr3.dry_run is False
    assert handler.client.api_url == "http://127.0.0.1:9/v1/role"  # needs a restart
    assert conf.k2hr3.api_url == "http://127.0.0.1:9/v1/role"  # the running conf says so
    assert handler.breaker.max_interval == 3.0
    assert handler.retry_budget == 60.0
    assert handler.recent.window == 5.0
    assert logging.getLogger("kombu").level == logging.DEBUG
    log = path.with_suffix(".log").read_text()
    assert "reload: applied [k2hr3] timeout_seconds: 30.0 -> 7.0" in log
    assert "reload: needs a restart, the old value stays in use: [k2hr3] api_url" in log
    assert "reload: needs a restart, the old value stays in use: [k2hr3] dry_run" in log
    daemon.transport.cleanup()


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("timeout_seconds = abc", "timeout_seconds"),
        ("timeout_seconds = -1", "timeout_seconds"),
        ("api_url = k2hr3.example.com", "api_url"),
        ("no equals sign", "a.conf"),
        # UnicodeError from the idna codec once escaped the reload and killed the daemon.
        ("[metrics]\nbind_address = 10.0.0..1", "bind_address"),
    ],
)
def test_an_invalid_config_is_rejected_whole(
    tmp_path: Path, restore_logging: None, line: str, named: str
) -> None:
    path = tmp_path / "a.conf"
    conf = config.load([str(_write(path))])
    applied: list[bool] = []
    # A valid change next to the bad one: it must not be applied either.
    _write(path, {"dry_run": "true"}, debug_level="debug")
    path.write_text(path.read_text() + line + "\n")
    logging.getLogger().addHandler(handler := _ListHandler())

    assert not reload.reload(conf, lambda: config.load([str(path)]), lambda: applied.append(True))

    assert applied == []
    assert conf.k2hr3.dry_run is False and conf.debug_level == "info"
    (record,) = [r for r in handler.records if r.levelno >= logging.ERROR]
    assert "reload rejected" in record.getMessage() and named in record.getMessage()


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# The real daemon.


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy().start()
    yield proxy
    proxy.stop()


def _publish(e2e: Harness, device_owner: str = "compute:nova") -> str:
    cuk = str(uuid.uuid4())
    note = neutron_port_delete(cuk, ["192.0.2.9"])
    note[2]["port"]["device_owner"] = device_owner
    e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", note)
    return cuk


def _hup_and_wait(daemon: Daemon, needle: str) -> None:
    before = daemon.count(needle)
    os.kill(daemon.pid, signal.SIGHUP)
    wait_until(lambda: daemon.count(needle) > before, 20, f"{needle!r} in the log")


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_sighup_raises_the_log_level_without_reconnecting(
    e2e: Harness, k2hr3: FakeK2HR3, proxy: TcpProxy
) -> None:
    """Debug lines appear after the reload and not before; one broker connection."""
    sections = {"DEFAULT": {"debug_level": "info"}, "k2hr3": {"timeout_seconds": 5}}
    config_file = e2e.config(transport_url=proxy.url, sections=sections)
    daemon = e2e.daemon(config_file).start()
    connections = proxy.connections

    _publish(e2e, device_owner="network:dhcp")  # ignored, logged at debug
    _publish(e2e)
    assert k2hr3.wait_for(1)
    e2e.config(
        transport_url=proxy.url,
        sections={"DEFAULT": {"debug_level": "debug"}, "k2hr3": {"timeout_seconds": 7}},
    )
    _hup_and_wait(daemon, "reload: applied [DEFAULT] debug_level: 'info' -> 'debug'")
    _publish(e2e, device_owner="network:dhcp")
    _publish(e2e)
    assert k2hr3.wait_for(2)
    wait_until(lambda: "is not a VM" in daemon.log(), 10, "the ignored port at debug")

    lines = daemon.log().splitlines()
    reloaded = next(i for i, line in enumerate(lines) if "reload: applied" in line)
    debug = [i for i, line in enumerate(lines) if " DEBUG " in line]
    assert debug and min(debug) > reloaded, daemon.report("debug lines before the reload")
    assert "[k2hr3] timeout_seconds: 5.0 -> 7.0" in daemon.log()
    assert proxy.connections == connections, daemon.report("the daemon reconnected")
    assert daemon.stop() == 0


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_invalid_config_is_rejected_then_a_valid_one_applies(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    config_file = e2e.config(sections={"DEFAULT": {"debug_level": "info"}})
    daemon = e2e.daemon(config_file).start()
    valid = config_file.read_text()

    config_file.write_text(valid.replace("timeout_seconds = 5", "timeout_seconds = abc"))
    _hup_and_wait(daemon, "reload rejected")
    assert "timeout_seconds" in daemon.log()
    _publish(e2e)
    assert k2hr3.wait_for(1), daemon.report("no longer consuming after a rejected reload")

    # dry_run (another queue), the exchange and the broker password need a restart.
    changed = valid.replace("[k2hr3]", "[k2hr3]\ndry_run = true")
    changed = changed.replace("guest:guest@", "guest:n3w-s3cret@")
    changed = changed.replace(f"exchange = {e2e.neutron}", f"exchange = {e2e.unique}_other")
    config_file.write_text(changed)
    _hup_and_wait(daemon, "reload: needs a restart, the old value stays in use: [k2hr3] dry_run")
    log = daemon.log()
    assert "[oslo_messaging_notifications] exchange" in log
    assert "transport_url (secret, value not shown)" in log
    assert "n3w-s3cret" not in log
    cuk = _publish(e2e)  # still on the old exchange, still live
    assert k2hr3.wait_for(2), daemon.report("a dry_run change by SIGHUP stopped the deletions")
    assert k2hr3.deleted()[-1][0] == cuk
    assert daemon.stop() == 0


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_sighup_reopens_the_log_file_logrotate_moved(e2e: Harness) -> None:
    daemon = e2e.start()
    rotated = daemon.log_file.with_suffix(".log.1")
    daemon.log_file.rename(rotated)
    os.kill(daemon.pid, signal.SIGHUP)
    wait_until(daemon.log_file.exists, 20, "a new log file")
    wait_until(lambda: "log file reopened" in daemon.log_file.read_text(), 20, "the reload line")
    assert "log file reopened" not in rotated.read_text()
    assert daemon.stop() == 0
    assert "stopped" in daemon.log_file.read_text()
