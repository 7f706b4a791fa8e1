"""The supervisor of ``workers = N`` on its own: forked workers, restarts, stop (issue 5).

The workers here are small functions, not daemons, so what is tested is the supervision
itself; tests/broker/test_workers.py runs real workers on the real broker.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from k2hr3_osnl.process.supervisor import Supervisor

pytestmark = pytest.mark.timeout(60)


def later(seconds: float, signum: int = signal.SIGTERM) -> threading.Timer:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signum))
    timer.start()
    return timer


def starts(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_dying_worker_is_started_again_and_sigterm_stops_all(tmp_path: Path) -> None:
    log = tmp_path / "starts"

    def worker(index: int) -> int:
        with open(log, "a") as out:
            out.write(f"{index}\n")
        if index == 0 and starts(log).count("0") <= 2:
            return 3  # dies twice, quickly
        signal.pause()  # until the supervisor passes SIGTERM on
        return 0

    timer = later(2.0)
    try:
        status = Supervisor(2, worker, min_backoff=0.1, max_backoff=0.2).run()
    finally:
        timer.cancel()
    assert status == 0, "every worker ended by the SIGTERM it was passed"
    assert starts(log).count("0") == 3, "worker 0 died twice and was started again twice"
    assert starts(log).count("1") == 1


def test_a_worker_that_does_not_stop_cleanly_makes_the_exit_status_1(tmp_path: Path) -> None:
    def worker(index: int) -> int:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(0.05):
            pass
        return 0 if index == 0 else 7

    timer = later(1.0)
    try:
        assert Supervisor(2, worker).run() == 1
    finally:
        timer.cancel()


def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    log = tmp_path / "hups"

    def worker(index: int) -> int:
        def on_hup(*_: object) -> None:
            with open(log, "a") as out:
                out.write(f"{index}\n")

        signal.signal(signal.SIGHUP, on_hup)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        while True:
            time.sleep(0.05)

    hup, term = later(1.0, signal.SIGHUP), later(2.0)
    try:
        assert Supervisor(3, worker).run() == 0
    finally:
        hup.cancel()
        term.cancel()
    assert sorted(starts(log)) == ["0", "1", "2"]


_ORPHAN_SCRIPT = """
import sys, time
from pathlib import Path
from k2hr3_osnl.process.supervisor import Supervisor

def worker(index):
    Path(sys.argv[1], str(index)).write_text(str(__import__("os").getpid()))
    while True:
        time.sleep(1)

Supervisor(2, worker).run()
"""


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    """SIGKILL leaves the supervisor no time to stop them: the kernel tells them instead."""
    import subprocess
    import sys

    supervisor = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT, str(tmp_path)])
    try:
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(p.read_text()) for p in tmp_path.iterdir() if p.read_text()]
        assert len(workers) == 2
        supervisor.kill()
        supervisor.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(pid) for pid in workers), "a worker outlived its supervisor"
    finally:
        supervisor.kill()


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "zombie" not in status


def test_the_watchdog_is_fed_while_workers_take_their_time_to_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's watchdog runs on while a unit stops; stopping workers ping no more.

    Without the supervisor's pings a drain longer than ``WatchdogSec=`` ends in SIGABRT
    and ``Result=watchdog`` (seen with ``workers = 2`` and a 3 s watchdog).
    """
    from support.notify_socket import NotifySocket

    from k2hr3_osnl.process import systemd

    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    def worker(index: int) -> int:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        notifier = systemd.Notifier()  # the supervisor's relay, by the environment
        notifier.ready(f"worker {index}")
        while not stop.wait(0.2):
            notifier.watchdog()
        time.sleep(3.0)  # a long drain, silent
        return 0

    timer = later(1.5)
    try:
        assert Supervisor(2, worker, notifier=systemd.Notifier()).run() == 0
    finally:
        timer.cancel()
        sock.close()
    messages = sock.snapshot()
    stopping = next(m.at for m in messages if "STOPPING" in m)
    pings = [m.at for m in messages if m.fields.get("WATCHDOG") == "1" and m.at > stopping]
    assert pings, "no WATCHDOG=1 after STOPPING=1"
    gaps = [b - a for a, b in zip([stopping, *pings], pings, strict=False)]
    assert max(gaps) <= 1.0, f"the watchdog went unfed for {max(gaps):.1f}s while stopping"
    assert messages[-1].at - pings[-1] <= 1.0
