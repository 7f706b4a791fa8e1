"""Logging: JSON lines with the notification's fields, the journal's format, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete
from support.waiting import wait_until

from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.observability import logs

LOG = logging.getLogger("k2hr3_osnl.test")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_json_lines_carry_the_notification_fields(
    tmp_path: Path, k2hr3: FakeK2HR3, restore_logging: None
) -> None:
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("debug", "warn", str(log_file), "json")
    handler = Handler(
        client=RoleClient(k2hr3.url),
        breaker=CircuitBreaker(max_interval=0.05),
        parking=ParkingLot(tmp_path),
        recent=RecentDeliveries(0),
        retry_budget=10,
    )
    cuk = str(uuid.uuid4())
    event_type, publisher_id, payload = neutron_port_delete(cuk, ["192.0.2.1", "2001:db8::1"])
    # K2HR3 fails first, so that the deletion takes more than one attempt.
    k2hr3.status = 503

    def recover() -> None:
        """K2HR3 answers 204 once the first call was answered 503, however slow the machine."""
        wait_until(lambda: k2hr3.calls, 10, "a first call")
        k2hr3.status = 204

    threading.Thread(target=recover).start()
    result = handler.handle(Notification("m-1", event_type, publisher_id, payload))
    assert result is Result.DELETED
    dhcp = neutron_port_delete(str(uuid.uuid4()), ["192.0.2.2"])[2]
    dhcp["port"]["device_owner"] = "network:dhcp"
    assert handler.handle(Notification("m-2", event_type, publisher_id, dhcp)) is Result.IGNORED

    lines = _json_lines(log_file)
    calls = [line for line in lines if line["logger"] == "k2hr3_osnl.k2hr3.client"]
    assert len(calls) >= 2, lines
    for attempt, line in enumerate(calls, 1):
        assert line["message_id"] == "m-1"
        assert line["event_type"] == "port.delete.end"
        assert line["publisher_id"] == publisher_id
        assert line["cuk"] == cuk
        assert line["ips"] == ["192.0.2.1", "2001:db8::1"]
        assert line["attempt"] == attempt
        assert isinstance(line["duration"], float) and line["duration"] >= 0
        assert line["level"] == "INFO" and line["pid"] == os.getpid()
    assert [c["outcome"] for c in calls] == ["retry"] * (len(calls) - 1) + ["deleted"]
    assert calls[-1]["status"] == 204
    (ignored,) = [line for line in lines if line.get("message_id") == "m-2"]
    assert ignored["outcome"] == "ignored" and ignored["level"] == "DEBUG"
    assert "attempt" not in ignored and "cuk" not in ignored


def test_a_traceback_stays_inside_its_json_line(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("info", "warn", str(log_file), "json")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        LOG.exception("it failed")
    (line,) = _json_lines(log_file)
    assert line["message"] == "it failed"
    assert "ValueError: boom\nsecond line" in line["exception"]


def test_url_passwords_are_masked_in_messages_arguments_and_tracebacks(
    tmp_path: Path, restore_logging: None
) -> None:
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("debug", "debug", str(log_file))
    LOG.info("connecting to %s", "rabbit://osnl:p4ss-w0rd@rabbit1:5672,osnl:p4ss-w0rd@rabbit2/")
    logging.getLogger("kombu").debug("url=amqp://guest:p4ss-w0rd@127.0.0.1:5672//")
    try:
        raise ConnectionError("cannot reach https://k2:p4ss-w0rd@k2hr3.example/v1/role")
    except ConnectionError:
        LOG.exception("K2HR3 call failed")
    text = log_file.read_text()
    assert "p4ss-w0rd" not in text
    assert "rabbit://osnl:***@rabbit1:5672,osnl:***@rabbit2/" in text
    assert "amqp://guest:***@127.0.0.1:5672//" in text
    assert "https://k2:***@k2hr3.example/v1/role" in text
    # Nothing else is touched.
    LOG.info("https://k2hr3.example:8443/v1/role?cuk=a@b")
    assert "https://k2hr3.example:8443/v1/role?cuk=a@b" in log_file.read_text()


def test_a_malformed_log_call_is_a_line_not_an_exception(
    tmp_path: Path, restore_logging: None
) -> None:
    """Issue 17: the secret filter formats every record; a bad call raised through it
    into whatever code was logging (a library's, at debug, included)."""
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("debug", "debug", str(log_file))
    LOG.info("two values %s %s", "amqp://u:p4ss-w0rd@h/")  # one argument short
    logging.getLogger("kombu").debug("%d", "not a number")
    text = log_file.read_text()
    assert "two values %s %s ('amqp://u:***@h/',) (malformed log call:" in text
    assert "%d ('not a number',) (malformed log call:" in text
    assert "p4ss-w0rd" not in text


@pytest.fixture
def datagrams(tmp_path: Path) -> Iterator[socket.socket]:
    """A local datagram socket standing in for /dev/log or journald's socket."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "log.sock"))
    server.settimeout(5)
    yield server
    server.close()


SECRET_URL = "rabbit://osnl:p4ss-w0rd@rabbit1:5672/"


def test_use_syslog_sends_masked_lines_with_the_facility(
    datagrams: socket.socket, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setattr(logs, "SYSLOG_ADDRESS", datagrams.getsockname())
    logs.setup("info", "warn", logs.STDERR, syslog=True, facility="LOG_LOCAL0")
    LOG.warning("cannot reach %s", SECRET_URL)
    line = datagrams.recv(65536).decode()
    # local0 (16) * 8 + warning (4); then the ident, as syslog expects it.
    assert line.startswith(f"<132>k2hr3-osnl[{os.getpid()}]: k2hr3_osnl.test: cannot reach ")
    assert "rabbit://osnl:***@rabbit1:5672/" in line and "p4ss-w0rd" not in line


def test_use_journal_sends_priority_fields_and_masked_messages(
    datagrams: socket.socket, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setattr(logs, "JOURNAL_ADDRESS", datagrams.getsockname())
    logs.setup("info", "warn", logs.STDERR, journal=True)
    with logs.fields(message_id="m-1", cuk="c-1"):
        LOG.error("parked: %s", SECRET_URL)
    fields = dict(
        line.split("=", 1) for line in datagrams.recv(65536).decode().splitlines() if "=" in line
    )
    assert fields["PRIORITY"] == "3"
    assert fields["SYSLOG_IDENTIFIER"] == "k2hr3-osnl"
    assert (fields["MESSAGE_ID"], fields["CUK"]) == ("m-1", "c-1")
    assert fields["MESSAGE"] == "k2hr3_osnl.test: parked: rabbit://osnl:***@rabbit1:5672/"


def test_log_config_append_decides_and_every_handler_it_makes_masks(
    tmp_path: Path, restore_logging: None
) -> None:
    out = tmp_path / "from-the-file.log"
    ini = tmp_path / "logging.ini"
    ini.write_text(
        textwrap.dedent(
            f"""\
            [loggers]
            keys = root
            [handlers]
            keys = file
            [formatters]
            keys = plain
            [logger_root]
            level = INFO
            handlers = file
            [handler_file]
            class = FileHandler
            args = ({str(out)!r},)
            formatter = plain
            [formatter_plain]
            format = %(levelname)s %(name)s %(message)s
            """
        ),
        "utf-8",
    )
    logs.setup("info", "warn", str(tmp_path / "ignored.log"), config_append=str(ini))
    LOG.info("connecting to %s", SECRET_URL)
    logging.getLogger("kombu").info("url=%s", SECRET_URL)
    text = out.read_text("utf-8")
    assert "INFO k2hr3_osnl.test connecting to rabbit://osnl:***@rabbit1:5672/" in text
    assert "INFO kombu url=rabbit://osnl:***@rabbit1:5672/" in text
    assert not (tmp_path / "ignored.log").exists()


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("use_syslog = true", "k2hr3-osnl: cannot log to syslog (/dev/log): "),
        (
            "use_journal = true",
            "k2hr3-osnl: cannot log to the journal (/run/systemd/journal/socket): ",
        ),
        ("log_config_append = /nonexistent.ini", "k2hr3-osnl: log_config_append: cannot read"),
    ],
)
def test_oslo_log_options_load_and_an_unusable_destination_is_one_line(
    e2e: Harness, option: str, said: str
) -> None:
    """They were refused as unknown options; now they work, or say why in one line."""
    if os.path.exists("/dev/log") and "syslog" in option:
        pytest.skip("this host has a syslog socket")
    if os.path.exists("/run/systemd/journal/socket") and "journal" in option:
        pytest.skip("this host has a journal socket")
    config = e2e.config()
    config.write_text(config.read_text("utf-8").replace("[DEFAULT]\n", f"[DEFAULT]\n{option}\n", 1))
    done = e2e.cli(config, "--check-config")
    assert done.returncode == 2
    assert done.stderr.startswith(said) and done.stderr.count("\n") == 1, done.stderr


def test_the_daemon_logs_through_a_log_config_append_file(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    out = e2e.tmp_path / "appended.log"
    ini = e2e.tmp_path / "logging.ini"
    ini.write_text(
        "[loggers]\nkeys = root\n[handlers]\nkeys = file\n[formatters]\nkeys = plain\n"
        "[logger_root]\nlevel = INFO\nhandlers = file\n"
        f"[handler_file]\nclass = FileHandler\nargs = ({str(out)!r},)\nformatter = plain\n"
        "[formatter_plain]\nformat = %(levelname)s %(name)s %(message)s\n",
        "utf-8",
    )
    config = e2e.config(sections={"DEFAULT": {"log_config_append": ini}})
    daemon = e2e.daemon(config)
    daemon.start(wait=False)
    wait_until(lambda: out.exists() and "process.service listening" in out.read_text(), 30, "start")
    cuk = str(uuid.uuid4())
    e2e.notify(
        e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(cuk, ["10.0.0.1"])
    )
    assert k2hr3.wait_for(1), out.read_text()
    wait_until(lambda: f"k2hr3 DELETE cuk={cuk}" in out.read_text(), 10, "the call's line")
    assert daemon.stop() == 0


@given(
    template=st.text(alphabet="%sdr() abc", max_size=12),
    args=st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=3),
)
def test_the_secret_filter_never_raises_whatever_the_log_call(
    template: str, args: list[object]
) -> None:
    """Any format and arguments, fitting or not: the record passes, with the password
    of a URL among them masked."""
    secret = "rabbit://u:p4ss-w0rd@h/"
    record = logging.LogRecord(
        "k2hr3_osnl.test", logging.INFO, "", 0, template + " %s", (*args, secret), None
    )
    assert logs.SecretFilter().filter(record) is True
    assert "p4ss-w0rd" not in record.getMessage()


def test_journal_lines_have_a_priority_prefix_and_no_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    with open(tmp_path / "journal", "w+", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logs.setup("debug", "warn", logs.STDERR)
        LOG.info("listening")
        LOG.warning("first\nsecond")
        LOG.debug("detail")
        stream.seek(0)
        assert stream.read().splitlines() == [
            "<6>k2hr3_osnl.test: listening",
            "<4>k2hr3_osnl.test: first",
            "<4>second",
            "<7>k2hr3_osnl.test: detail",
        ]


def test_an_inherited_journal_stream_is_not_ours(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    """JOURNAL_STREAM names another stream (stderr was redirected): keep timestamps."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    logs.setup("info", "warn", logs.STDERR)
    LOG.info("listening")
    assert stream.getvalue().endswith(f" {os.getpid()} INFO k2hr3_osnl.test listening\n")


def test_a_log_file_that_cannot_be_opened_leaves_logging_alone(
    tmp_path: Path, restore_logging: None
) -> None:
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("info", "warn", str(log_file))
    with pytest.raises(OSError):
        logs.setup("debug", "warn", str(tmp_path / "missing" / "dir" / "x.log"))
    LOG.info("still here")
    assert "still here" in log_file.read_text()


# The real daemon, everything at debug.


DEBUG_EVERYWHERE = {"debug_level": "debug", "libs_debug_level": "debug", "log_format": "json"}


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_the_daemon_logs_json_and_no_password_at_debug(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    daemon = e2e.daemon(e2e.config(sections={"DEFAULT": DEBUG_EVERYWHERE}))
    daemon.start(wait=False)
    wait_until(lambda: '"message": "listening"' in daemon.log(), 30, "listening")
    wait_until(lambda: e2e.broker.queue_info(e2e.pool)[1] > 0, 20, "a consumer")
    cuk = str(uuid.uuid4())
    e2e.notify(
        e2e.nova,
        e2e.notifications,
        "messagingv2",
        neutron_port_delete(cuk, ["203.0.113.5"]),
    )
    assert k2hr3.wait_for(1)
    assert daemon.stop() == 0

    lines = [json.loads(line) for line in daemon.log().splitlines()]  # every line parses
    assert {line["logger"].split(".")[0] for line in lines} >= {"k2hr3_osnl", "oslo", "amqp"}
    (call,) = [line for line in lines if line.get("cuk") == cuk]
    assert call["outcome"] == "deleted" and call["attempt"] == 1
    assert call["message_id"] and call["event_type"] == "port.delete.end"
    everything = daemon.log() + daemon.output.read_text()
    assert "guest:guest" not in everything and ":guest@" not in everything


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_a_refused_password_is_not_logged_at_debug(e2e: Harness) -> None:
    secret = f"S3cr3t-{uuid.uuid4().hex[:8]}"
    url = e2e.transport_url.replace("guest:guest@", f"guest:{secret}@")
    daemon = e2e.daemon(e2e.config(transport_url=url, sections={"DEFAULT": DEBUG_EVERYWHERE}))
    daemon.start(wait=False)
    wait_until(lambda: "ACCESS_REFUSED" in daemon.log(), 30, "the broker to refuse the login")
    daemon.stop()  # whether it gave up by itself or keeps retrying
    assert secret not in daemon.log() + daemon.output.read_text()


def test_with_workers_only_the_supervisor_rotates_the_log_file(
    tmp_path: Path, restore_logging: None
) -> None:
    """Workers share the supervisor's log file. Were each to rotate it at midnight, the
    second rename would replace the first day's file; so a worker only reopens the file
    when the supervisor has moved it, and every line lands in one of the two files."""
    import logging.handlers
    import time

    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("info", "warn", str(log_file), "text", "daily")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        try:
            logs.leave_rotation_to_parent()
            for handler in logging.getLogger().handlers:  # midnight here too
                if isinstance(handler, logging.handlers.TimedRotatingFileHandler):
                    handler.rolloverAt = int(time.time()) - 1
            LOG.warning("worker before midnight")
            os.read(read_end, 1)
            LOG.warning("worker after midnight")
            logs.rotate_if_due()
        finally:
            os._exit(0)
    LOG.warning("supervisor before midnight")
    (rotating,) = logging.getLogger().handlers
    assert isinstance(rotating, logging.handlers.TimedRotatingFileHandler)
    time.sleep(0.2)
    rotating.rolloverAt = int(time.time()) - 1
    logs.rotate_if_due()
    LOG.warning("supervisor after midnight")
    os.write(write_end, b"x")
    _, status = os.waitpid(pid, 0)
    assert status == 0
    rotated = [p for p in tmp_path.iterdir() if p.name.startswith("k2hr3-osnl.log.")]
    assert len(rotated) == 1, rotated
    before, after = rotated[0].read_text(), log_file.read_text()
    assert "supervisor before midnight" in before and "worker before midnight" in before
    assert "supervisor after midnight" in after and "worker after midnight" in after


def test_log_rotation_external_leaves_the_file_to_logrotate(
    tmp_path: Path, restore_logging: None
) -> None:
    """No in-process rotation at all; a file moved away is reopened under its name."""
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("info", "warn", str(log_file), "text", "external")
    LOG.warning("first")
    log_file.rename(tmp_path / "k2hr3-osnl.log.1")
    logs.rotate_if_due()
    LOG.warning("second")
    assert "first" in (tmp_path / "k2hr3-osnl.log.1").read_text()
    assert "second" in log_file.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k2hr3-osnl.log", "k2hr3-osnl.log.1"]
