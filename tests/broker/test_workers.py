"""``[DEFAULT] workers = N``: a supervisor and N consumers on one pool queue (issue 5).

The real daemon, the real RabbitMQ: the workers compete for the messages of the same
queue, a worker killed outright is started again, and SIGTERM to the supervisor stops
every worker and exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
from support.daemon import Daemon
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.notify_socket import NotifySocket
from support.samples import neutron_port_delete
from support.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

WORKERS = {"DEFAULT": {"workers": 2}, "metrics": {"port": 0}}


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(c) for c in path.read_text().split()} if path.exists() else set()


def consumers(e2e: Harness) -> int:
    info = e2e.broker.queue_info(e2e.pool)
    return info[1] if info else 0


def deleted(k2hr3: FakeK2HR3) -> set[str]:
    return {cuk for cuk, _ in k2hr3.deleted()}


def publish_ports(e2e: Harness, count: int) -> set[str]:
    cuks = {str(uuid.uuid4()) for _ in range(count)}
    for cuk in cuks:
        note = neutron_port_delete(cuk, ["172.16.0.1"])
        e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", note)
    return cuks


def call_pids(daemon: Daemon) -> set[int]:
    """The processes that logged a K2HR3 call (the log line carries the pid)."""
    return {
        int(pid) for pid in re.findall(r"^\S+ \S+ (\d+) INFO \S+ k2hr3 DELETE", daemon.log(), re.M)
    }


def test_two_workers_share_the_queue_restart_and_stop(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    daemon = e2e.start(sections=WORKERS)
    supervisor = daemon.pid
    wait_until(lambda: consumers(e2e) == 2, 30, "two consumers on the pool queue", 0.2)
    workers = children(supervisor)
    assert len(workers) == 2, daemon.report(f"workers: {workers}")

    # Both consume: every deletion arrives once, and both workers made calls.
    first = publish_ports(e2e, 40)
    wait_until(lambda: first <= deleted(k2hr3), 30, "40 deletions at K2HR3")
    assert len(k2hr3.deleted()) == 40, "each notification is delivered to one worker only"
    assert call_pids(daemon) == workers, daemon.report("both workers should have called K2HR3")

    # A worker killed outright is started again, and consumes.
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(children(supervisor)) == 2 and victim not in children(supervisor),
        30,
        "a new worker in place of the killed one",
        0.2,
    )
    wait_until(lambda: consumers(e2e) == 2, 30, "two consumers again", 0.2)
    assert "was killed by SIGKILL" in daemon.log()
    second = publish_ports(e2e, 20)
    wait_until(lambda: second <= deleted(k2hr3), 30, "20 more deletions at K2HR3")

    # SIGTERM to the supervisor reaches every worker; all stop cleanly, it exits 0.
    survivors = children(supervisor)
    assert daemon.stop() == 0, daemon.report("the supervisor should exit 0")
    for pid in survivors:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        ), f"worker {pid} outlived the supervisor"
    log = daemon.log()
    assert log.count("received SIGTERM, stopping") >= 3, daemon.report("SIGTERM not forwarded")
    assert "all 2 workers stopped" in log
    assert consumers(e2e) == 0


def test_under_systemd_the_supervisor_speaks_for_every_worker(
    e2e: Harness, k2hr3: FakeK2HR3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """READY=1 once both workers consume, pings only while both do, reload and stop."""
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = e2e.start(sections=WORKERS)
    supervisor = daemon.pid

    wait_until(lambda: notify.find("READY", "1") is not None, 30, "READY=1", 0.1)
    ready = notify.find("READY", "1")
    assert ready is not None
    status = notify.snapshot()[ready].fields["STATUS"]
    assert "worker 0: listening" in status and "worker 1: listening" in status, status
    wait_until(lambda: consumers(e2e) == 2, 5, "both workers consuming at READY=1", 0.1)
    wait_until(lambda: notify.find("WATCHDOG", "1", ready) is not None, 10, "a ping", 0.1)
    # A worker killed outright: no pings until its replacement consumes again.
    victim = min(children(supervisor))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in children(supervisor), 10, "the victim reaped", 0.05)
    # The replacement starts after a 1 s pause; the supervisor pings every 0.5 s.
    gap_start, reaped = len(notify.snapshot()), time.monotonic()
    time.sleep(0.9)
    pings = [m for m in notify.snapshot()[gap_start:] if "WATCHDOG" in m and m.at < reaped + 0.9]
    assert not pings, "pinged systemd while a worker was down"
    wait_until(lambda: consumers(e2e) == 2, 30, "two consumers again", 0.2)
    wait_until(lambda: notify.find("WATCHDOG", "1", gap_start) is not None, 10, "pings again")

    # SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1 once both workers reloaded.
    mark = len(notify.snapshot())
    os.kill(supervisor, signal.SIGHUP)
    wait_until(lambda: notify.find("RELOADING", "1", mark) is not None, 10, "RELOADING=1")
    reloading = notify.find("RELOADING", "1", mark)
    assert reloading is not None
    assert "MONOTONIC_USEC" in notify.snapshot()[reloading]
    wait_until(lambda: notify.find("READY", "1", reloading) is not None, 15, "READY after it")

    assert daemon.stop() == 0, daemon.report("the supervisor should exit 0")
    assert notify.find("STOPPING", "1") is not None


def test_a_sighup_with_an_unchanged_file_changes_nothing_in_any_worker(e2e: Harness) -> None:
    """Worker 1 serves metrics on port + 1: compared with the file's port, every reload
    said it "needs a restart" (issue 17)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = e2e.config(sections={**WORKERS, "metrics": {"port": port}})
    daemon = e2e.daemon(config).start()
    os.kill(daemon.pid, signal.SIGHUP)
    unchanged = "reload: configuration unchanged"
    wait_until(lambda: daemon.log().count(unchanged) == 2, 30, "both workers to reload")
    assert "needs a restart" not in daemon.log(), daemon.report("a restart asked for nothing")
    assert daemon.stop() == 0
