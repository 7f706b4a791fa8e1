"""``systemd/k2hr3-osnl.service`` run by a real systemd: start, reload, watchdog, stop.

A container boots this machine's systemd as PID 1 (``support/systemd_boot.py``). In it
the daemon is installed the way docs/operations.md tells an operator to: a virtualenv
under /opt made with Debian's python3, its console script linked to
``/usr/local/bin/k2hr3-osnl``, a static ``k2hr3-osnl`` user from ``systemd-sysusers``,
the config file ``root:k2hr3-osnl 0640`` at ``/etc/k2hr3-osnl/k2hr3-osnl.conf``, and the
unit file copied unchanged. The only drop-in shortens ``WatchdogSec`` so that a frozen
daemon is noticed in seconds.

The container shares this machine's network: the daemon talks to the real RabbitMQ on
127.0.0.1 and to a K2HR3 stand-in over HTTPS, through every line of the unit's
hardening (DynamicUser, ProtectSystem=strict, MemoryDenyWriteExecute, the system call
filter...). Each test has its own exchanges, pool queue and K2HR3 stand-in.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from support import paths, tools
from support.broker import TcpProxy
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete
from support.systemd_boot import K2HR3_OSNL_PATHS, Machine, booted, unavailable
from support.tls_certs import Pki, make_pki
from support.waiting import wait_until

# The first test also pays for building wheels and installing them in the container.
pytestmark = [pytest.mark.systemd, pytest.mark.rabbitmq, pytest.mark.timeout(600)]
tools.skip_module_without(unavailable())

ROOT = paths.ROOT
UNIT = "k2hr3-osnl.service"
UNIT_FILE = ROOT / "systemd" / UNIT
VENV = "/opt/k2hr3-osnl"
CONFIG = "/etc/k2hr3-osnl/k2hr3-osnl.conf"
CA_FILE = "/etc/k2hr3-osnl/k2hr3-ca.pem"
STATE_DIR = "/var/lib/k2hr3-osnl"
WHEELS = "/run/k2hr3-osnl-wheels"
#: Short enough to see a frozen daemon killed within a test; every other test runs
#: longer than this, so a daemon that stopped pinging would be restarted under it.
WATCHDOG_SEC = 3
TEST_DROP_IN = f"""\
# Tests only: notice a frozen daemon in seconds, not a minute.
[Service]
WatchdogSec={WATCHDOG_SEC}
"""


_NOT_SOURCE = (".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", "*_cache")


def _install_as_documented(machine: Machine) -> None:
    """docs/operations.md, 'Install it', step by step, inside the container."""
    machine.run("/usr/bin/python3", "-m", "venv", VENV)
    machine.run(
        f"{VENV}/bin/pip", "install", "--quiet", "--no-index", "--find-links", WHEELS,
        "k2hr3-osnl", timeout=600,
    )  # fmt: skip
    machine.run("ln", "-s", f"{VENV}/bin/k2hr3-osnl", "/usr/local/bin/k2hr3-osnl")
    machine.run(
        "systemd-sysusers", "-", input='u k2hr3-osnl - "K2HR3 OpenStack Notification Listener"\n'
    )
    machine.install_unit(UNIT_FILE)
    machine.drop_in(UNIT, "test", TEST_DROP_IN)
    machine.daemon_reload()


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    tools.require(unavailable())
    wheels = tmp_path_factory.mktemp("wheels")
    # The project and its dependencies as wheels: the container installs them offline.
    # Built from a clean copy: setuptools' build/ in the tree may hold removed modules.
    source = tmp_path_factory.mktemp("source") / "k2hr3-osnl"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, f"pip wheel failed:\n{built.stdout}\n{built.stderr}"
    with booted(
        tmp_path_factory.mktemp("machine"),
        read_only_binds={wheels: WHEELS},
        absent=K2HR3_OSNL_PATHS,
    ) as booted_:
        _install_as_documented(booted_)
        yield booted_


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class Unit:
    """The unit in the container, its config file, its K2HR3 and its slice of the journal."""

    def __init__(self, machine: Machine, harness: Harness, k2hr3: FakeK2HR3) -> None:
        self.machine = machine
        self.harness = harness
        self.k2hr3 = k2hr3
        self.cursor = machine.cursor()

    def configure(self, **sections: Mapping[str, object]) -> None:
        """Write the config file the way an operator installs it (root:k2hr3-osnl 0640)."""
        merged: dict[str, dict[str, object]] = {
            "DEFAULT": {"log_file": "sys.stderr"},
            "k2hr3": {"ca_file": CA_FILE, "state_dir": STATE_DIR, "drain_seconds": 5},
        }
        for section, values in sections.items():
            merged.setdefault(section, {}).update(values)
        written = self.harness.config(sections=merged)
        self.machine.copy_in(written, "/run/k2hr3-osnl.conf.new", mode=0o600)
        self.machine.run(
            "install", "-D", "-o", "root", "-g", "k2hr3-osnl", "-m", "0640",
            "/run/k2hr3-osnl.conf.new", CONFIG,
        )  # fmt: skip

    def systemctl(self, verb: str, *args: str, check: bool = True) -> str:
        return self.machine.systemctl(verb, *args, UNIT, check=check).stdout

    def show(self, *properties: str) -> dict[str, str]:
        return self.machine.show(UNIT, *properties)

    def journal(self, *args: str) -> str:
        """What the unit logged (and systemd about it) during this test."""
        return self.machine.journal(UNIT, *args, after=self.cursor)

    def records(self) -> list[dict[str, Any]]:
        """The journal entries of this test, as journalctl -o json gives them."""
        text = self.journal("--output=json")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def consumers(self) -> int:
        info = self.harness.broker.queue_info(self.harness.pool)
        return 0 if info is None else info[1]

    def delete(self, cuk: str, ip: str = "192.0.2.7") -> None:
        """A neutron port.delete.end, published the way neutron does."""
        h = self.harness
        h.notify(h.neutron, h.notifications, "messagingv2", neutron_port_delete(cuk, [ip]))

    def report(self, what: str) -> str:
        return f"{what}\n--- journal ---\n{self.journal()}"


@pytest.fixture
def unit(machine: Machine, pki: Pki, tmp_path: Path, rabbitmq: str, unique: str) -> Iterator[Unit]:
    k2hr3 = FakeK2HR3(ssl_context=pki.server_context(require_client_cert=False)).start()
    machine.copy_in(pki.ca, CA_FILE)
    with Harness(tmp_path, unique, k2hr3.url, rabbitmq) as harness:
        unit = Unit(machine, harness, k2hr3)
        unit.configure()
        try:
            yield unit
        finally:
            machine.systemctl("stop", UNIT, check=False)
            machine.systemctl("reset-failed", UNIT, check=False)
            machine.run(
                "rm", "-rf", "/var/lib/private/k2hr3-osnl", STATE_DIR,
                "/var/log/private/k2hr3-osnl", "/var/log/k2hr3-osnl", CONFIG,
            )  # fmt: skip
            k2hr3.stop()
            unit.k2hr3.stop()


def test_the_unit_is_installed_unchanged_with_the_documented_paths(
    machine: Machine, unit: Unit
) -> None:
    assert machine.path(f"/etc/systemd/system/{UNIT}").read_bytes() == UNIT_FILE.read_bytes()
    values = unit.show("ExecStart", "DropInPaths", "User", "DynamicUser")
    command = f"argv[]=/usr/local/bin/k2hr3-osnl -c {CONFIG} ;"
    assert command in values["ExecStart"], values
    assert values["DropInPaths"] == f"/etc/systemd/system/{UNIT}.d/test.conf"
    # The one drop-in says nothing but WatchdogSec=.
    assert machine.path(values["DropInPaths"]).read_text() == TEST_DROP_IN
    assert values["User"] == "k2hr3-osnl" and values["DynamicUser"] == "yes"
    mode = machine.run("stat", "--format=%U:%G %a", CONFIG).stdout.split()
    assert mode == ["root:k2hr3-osnl", "640"]


def test_start_returns_once_consuming_and_a_deletion_reaches_k2hr3_over_https(
    unit: Unit,
) -> None:
    port = _free_port()
    unit.configure(metrics={"port": port})
    unit.systemctl("start")
    # Not polled: READY=1 must come only once RabbitMQ shows the consumer.
    assert unit.consumers() == 1, unit.report("start returned before the daemon consumed")

    status = unit.machine.systemctl("status", UNIT).stdout
    assert re.search(r"Active: active \(running\)", status), status
    assert re.search(
        r'Status: "listening on 4 binding\(s\) of rabbit://127\.0\.0\.1:5672 vhost '
        r"'/'; "
        r"K2HR3 https://127\.0\.0\.1:\d+/v1/role",
        status,
    ), status
    assert unit.show("WatchdogUSec")["WatchdogUSec"] == f"{WATCHDOG_SEC}s"
    main_pid = unit.show("MainPID")["MainPID"]
    user = unit.machine.run("ps", "-o", "user=", "-p", main_pid).stdout.strip()
    assert user == "k2hr3-osnl", status

    cuk = str(uuid.uuid4())
    unit.delete(cuk, "192.0.2.11")
    assert unit.k2hr3.wait_for(1, timeout=20), unit.report("no DELETE reached K2HR3")
    assert unit.k2hr3.deleted() == [(cuk, ("192.0.2.11",))]
    assert unit.k2hr3.tls_errors == []
    # The daemon logs the call once it has the answer: a moment after K2HR3 saw it.
    line = f"k2hr3 DELETE cuk={cuk} host=['192.0.2.11'] status=204"
    wait_until(lambda: line in unit.journal(), 20, "the log line of the call")
    # The metrics server binds and answers too (the container shares our network).
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        assert answer.status == 200

    # Two watchdog periods later it is the same process: the pings reach systemd.
    time.sleep(2 * WATCHDOG_SEC)
    values = unit.show("MainPID", "NRestarts", "ActiveState", "SubState")
    assert values == {
        "MainPID": main_pid,
        "NRestarts": "0",
        "ActiveState": "active",
        "SubState": "running",
    }, unit.report("restarted by the watchdog while healthy")


def test_start_waits_for_rabbitmq_without_a_crash_loop(unit: Unit) -> None:
    """TimeoutStartSec=infinity: until the broker answers, 'activating' and a STATUS= why."""
    proxy = TcpProxy()  # RabbitMQ through a port that refuses connections for now
    unit.configure(oslo_messaging_notifications={"transport_url": proxy.url})
    unit.systemctl("start", "--no-block")
    try:
        connecting = f"connecting to RabbitMQ rabbit://127.0.0.1:{proxy.port} vhost '/'"
        unit.machine.wait_for(UNIT, timeout=20, StatusText=connecting)
        time.sleep(2 * WATCHDOG_SEC)  # no watchdog before READY=1, no restart, no timeout
        values = unit.show("ActiveState", "SubState", "NRestarts", "StatusText")
        assert values == {
            "ActiveState": "activating",
            "SubState": "start",
            "NRestarts": "0",
            "StatusText": connecting,
        }, unit.report(str(values))

        proxy.start()  # RabbitMQ is reachable: READY=1 once it consumes
        unit.machine.wait_for(UNIT, timeout=30, ActiveState="active", SubState="running")
        assert unit.consumers() == 1
        cuk = str(uuid.uuid4())
        unit.delete(cuk)
        assert unit.k2hr3.wait_for(1, timeout=20), unit.report("nothing delivered")
    finally:
        unit.systemctl("stop", check=False)
        proxy.stop()


def test_a_parked_deletion_lands_in_the_state_directory(unit: Unit) -> None:
    cuk = str(uuid.uuid4())
    unit.k2hr3.status_for[cuk] = 404
    unit.systemctl("start")
    unit.delete(cuk)

    parked_dir = unit.machine.path(f"{STATE_DIR}/parked")
    files = wait_until(
        lambda: parked_dir.is_dir() and list(parked_dir.iterdir()),
        20,
        "a parked deletion",
    )
    (parked,) = files
    assert json.loads(parked.read_text())["payload"]["port"]["device_id"] == cuk
    # StateDirectory= made it for the service's user; nobody else may look in. (With
    # DynamicUser= it lives under /var/lib/private, which only root may enter.)
    owners = unit.machine.run(
        "stat", "--format=%U:%G %a", "/var/lib/private", f"{STATE_DIR}/",
        f"{STATE_DIR}/parked/{parked.name}",
    ).stdout.splitlines()  # fmt: skip
    assert owners == ["root:root 700", "k2hr3-osnl:k2hr3-osnl 750", "k2hr3-osnl:k2hr3-osnl 600"]
    wait_until(lambda: f"parked in {STATE_DIR}/parked/" in unit.journal(), 20, "the log line")
    assert unit.show("ActiveState")["ActiveState"] == "active"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notifications(journal: str) -> list[str]:
    """What systemd (at debug level) says it got on the notify socket, in order."""
    return re.findall(r"Got notification message from PID \d+ \((.*)\)", journal)


@pytest.fixture
def systemd_debug(machine: Machine) -> Iterator[None]:
    """PID 1 logs every notify message it gets, and every state change of a unit."""
    machine.run("systemd-analyze", "log-level", "debug")
    yield
    machine.run("systemd-analyze", "log-level", "info")


def test_reload_rereads_the_file_and_an_invalid_one_keeps_the_old(
    unit: Unit, systemd_debug: None
) -> None:
    unit.systemctl("start")
    # A mutable option (dry_run is not: it changes the queue the daemon reads).
    unit.configure(DEFAULT={"log_format": "json"})
    before_reload = unit.machine.cursor()
    unit.systemctl("reload")
    # The reload job ends at the daemon's READY=1, so the new status is there already.
    status = unit.show("StatusText", "ActiveState", "SubState")
    assert status["StatusText"].startswith("listening on"), unit.report(str(status))
    assert (status["ActiveState"], status["SubState"]) == ("active", "running")
    applied = "reload: applied [DEFAULT] log_format: 'text' -> 'json'"
    wait_until(lambda: applied in unit.journal(), 20, "the reload")
    # What PID 1 heard and did: reload state, RELOADING=1 (with the clock), READY=1,
    # and only then back to running.
    journal = unit.machine.journal(UNIT, after=before_reload)
    heard = _notifications(journal)
    reloading = next(i for i, m in enumerate(heard) if m.startswith("RELOADING=1, MONOTONIC_USEC="))
    assert any(m.startswith("READY=1, STATUS=listening") for m in heard[reloading + 1 :]), heard
    events = [
        "Changed running -> reload",
        "(RELOADING=1, MONOTONIC_USEC=",
        "(READY=1, STATUS=listening",
        "Changed reload -> running",
    ]
    at = [journal.find(event) for event in events]
    assert -1 not in at and at == sorted(at), unit.report(f"{events} at {at}")

    def json_line_about(cuk: str) -> bool:
        return any(
            line.startswith("{") and f"cuk={cuk}" in line
            for line in (entry.split(": ", 1)[-1] for entry in unit.journal().splitlines())
        )

    cuk = str(uuid.uuid4())
    unit.delete(cuk)
    wait_until(lambda: json_line_about(cuk), 20, "the deletion, logged as JSON")

    # An invalid file (back to text lines, and a bad value): rejected whole, with an
    # error line; the old configuration stays, JSON lines included.
    unit.configure(k2hr3={"timeout_seconds": "abc"})
    unit.systemctl("reload")
    status = unit.show("StatusText", "ActiveState", "SubState", "NRestarts")
    assert status["StatusText"].startswith("listening on"), unit.report(str(status))
    assert (status["ActiveState"], status["SubState"], status["NRestarts"]) == (
        "active",
        "running",
        "0",
    )
    why = "[k2hr3] timeout_seconds: could not convert string to float: 'abc'"
    wait_until(lambda: why in unit.journal(), 20, "the rejected reload")
    assert "reload rejected, still running on the previous configuration" in unit.journal()
    other = str(uuid.uuid4())
    unit.delete(other)
    wait_until(lambda: json_line_about(other), 20, "a deletion after the rejection, as JSON")


def test_the_watchdog_kills_a_frozen_daemon_and_systemd_restarts_it(unit: Unit) -> None:
    unit.systemctl("start")
    frozen = unit.show("MainPID")["MainPID"]
    unit.systemctl("kill", "--kill-who=main", "--signal=SIGSTOP")

    # WatchdogSec (3 s) without a ping, SIGABRT, RestartSec=5, then a new start job.
    unit.machine.wait_for(UNIT, timeout=60, NRestarts="1", ActiveState="active", SubState="running")
    restarted = unit.show("MainPID")["MainPID"]
    assert restarted != frozen
    journal = unit.journal()
    assert f"Watchdog timeout (limit {WATCHDOG_SEC}s)!" in journal, journal
    assert f"Killing process {frozen} (k2hr3-osnl) with signal SIGABRT." in journal, journal
    assert "Failed with result 'watchdog'." in journal, journal
    assert "Scheduled restart job, restart counter is at 1." in journal, journal
    # SIGABRT: Python's faulthandler writes where every thread was, for the post-mortem.
    assert "Fatal Python error: Aborted" in journal, journal
    assert re.search(r"Current thread .* \(most recent call first\)", journal), journal

    # The restarted daemon consumes and delivers.
    assert unit.consumers() == 1
    cuk = str(uuid.uuid4())
    unit.delete(cuk)
    assert unit.k2hr3.wait_for(1, timeout=20), unit.report("nothing delivered after the restart")
    assert unit.k2hr3.deleted()[0][0] == cuk


def test_stop_with_deletions_in_flight_exits_0_and_they_arrive_after_the_next_start(
    unit: Unit, pki: Pki
) -> None:
    unit.configure(k2hr3={"drain_seconds": 2})
    unit.k2hr3.latency = 60  # K2HR3 hangs: nothing in flight can finish
    unit.systemctl("start")
    cuks = {str(uuid.uuid4()) for _ in range(3)}
    for cuk in cuks:
        unit.delete(cuk)
    wait_until(lambda: unit.k2hr3.requests >= 3, 20, "three K2HR3 calls in flight")

    started = time.monotonic()
    unit.systemctl("stop")
    took = time.monotonic() - started
    timeout = int(unit.show("TimeoutStopUSec")["TimeoutStopUSec"].removesuffix("min")) * 60
    assert took < timeout, f"stop took {took:.1f}s"
    values = unit.show("ActiveState", "SubState", "Result", "ExecMainStatus")
    assert values == {
        "ActiveState": "inactive",
        "SubState": "dead",
        "Result": "success",
        "ExecMainStatus": "0",
    }, unit.report(str(values))
    assert "Deactivated successfully." in unit.journal()

    # K2HR3 is back (a new one on the same address); the next start delivers all three.
    unit.k2hr3.stop()
    healthy = FakeK2HR3(ssl_context=pki.server_context(require_client_cert=False))
    healthy.port = unit.k2hr3.port
    unit.k2hr3 = healthy.start()
    unit.systemctl("start")
    assert healthy.wait_for(3, timeout=30), unit.report(f"delivered: {healthy.deleted()}")
    assert {cuk for cuk, _ in healthy.deleted()} == cuks


def test_two_workers_start_reload_and_stop_together(unit: Unit) -> None:
    unit.configure(DEFAULT={"workers": 2})
    unit.systemctl("start")
    # READY=1 from the supervisor only once both workers consume.
    assert unit.consumers() == 2, unit.report("start returned before both workers consumed")
    main = unit.show("MainPID")["MainPID"]
    workers = unit.machine.run("ps", "--ppid", main, "-o", "pid=").stdout.split()
    assert len(workers) == 2, workers

    unit.configure(DEFAULT={"workers": 2}, k2hr3={"timeout_seconds": "7"})
    unit.systemctl("reload")
    for pid in workers:
        wait_until(
            lambda pid=pid: (
                f"k2hr3-osnl[{pid}]: k2hr3_osnl.process.reload: reload: applied" in unit.journal()
            ),
            20,
            f"worker {pid} to reload",
        )
    status = unit.show("StatusText")["StatusText"]
    # The supervisor's STATUS= sums up both workers', each on the reloaded file.
    listening = r"listening on 4 binding\(s\) of \S+ vhost '/'; K2HR3 \S+"
    assert re.fullmatch(f"worker 0: {listening}; worker 1: {listening}", status), status

    unit.systemctl("stop")
    values = unit.show("ActiveState", "Result", "ExecMainStatus")
    assert values == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    journal = unit.journal()
    for pid in workers:
        assert f"k2hr3-osnl[{pid}]: k2hr3_osnl.process.service: stopped" in journal, journal
    assert "all 2 workers stopped" in journal


def test_the_journal_has_warnings_and_errors_at_their_priorities(unit: Unit) -> None:
    unit.systemctl("start")
    parked = str(uuid.uuid4())
    unit.k2hr3.status_for[parked] = 404
    unit.delete(parked)
    h = unit.harness
    h.broker.publish_raw(h.neutron, f"{h.notifications}.info", [b"{not json"])
    delivered = str(uuid.uuid4())
    unit.delete(delivered)
    wait_until(lambda: f"cuk={delivered}" in unit.journal(), 20, "the last deletion")
    wait_until(lambda: "invalid message" in unit.journal(), 20, "the unreadable message")
    wait_until(lambda: "parked in" in unit.journal(), 20, "the parked deletion")

    def priority(needle: str) -> str:
        found = [
            r["PRIORITY"]
            for r in unit.records()
            if r.get("SYSLOG_IDENTIFIER") == "k2hr3-osnl" and needle in r.get("MESSAGE", "")
        ]
        assert len(found) == 1, unit.report(f"{needle!r} logged {len(found)} times")
        return found[0]

    assert priority(f"cuk={delivered}") == "6"  # info
    assert priority("invalid message rejected: not a readable message") == "4"  # warning
    assert priority(f"parked in {STATE_DIR}") == "3"  # err
    # So 'journalctl -p warning' is the operator's short list.
    short = unit.journal("--priority=warning")
    assert "invalid message rejected" in short and "parked in" in short
    assert f"cuk={delivered}" not in short


def test_a_log_file_under_var_log_k2hr3_osnl(unit: Unit) -> None:
    """The path docs/operations.md suggests for log_file, under ProtectSystem=strict."""
    log_file = "/var/log/k2hr3-osnl/k2hr3-osnl.log"
    unit.configure(DEFAULT={"log_file": log_file})
    unit.systemctl("start")
    cuk = str(uuid.uuid4())
    unit.delete(cuk)
    assert unit.k2hr3.wait_for(1, timeout=20), unit.report("nothing delivered")
    logged = unit.machine.path(log_file)
    wait_until(lambda: f"cuk={cuk}" in logged.read_text(), 10, "the log line in the file")
    unit.systemctl("reload")  # logrotate's postrotate: the file is reopened, not an error
    wait_until(lambda: "log file reopened" in logged.read_text(), 10, "the reopened log")
    # LogsDirectory= made the directory; UMask=0077 keeps the file to the service (and root).
    owners = unit.machine.run("stat", "--format=%U:%G %a", "/var/log/k2hr3-osnl/", log_file)
    assert owners.stdout.splitlines() == ["k2hr3-osnl:k2hr3-osnl 750", "k2hr3-osnl:k2hr3-osnl 600"]
    assert unit.show("NRestarts")["NRestarts"] == "0"


def test_systemd_analyze_security_keeps_its_score(machine: Machine) -> None:
    output = machine.run("systemd-analyze", "security", "--no-pager", UNIT, check=False).stdout
    found = re.search(rf"Overall exposure level for {UNIT}: (\d+\.\d+) (\w+)", output)
    assert found, output
    # What remains is mostly the network it needs (see docs/operations.md).
    assert float(found[1]) <= 1.1 and found[2] == "OK", output
    assert "✓ UMask=" in output, output
