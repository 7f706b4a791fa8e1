"""``--daemonize --pidfile``: detach, lock, refuse a second start, and stay put under systemd."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete
from support.waiting import wait_until

from k2hr3_osnl.process.pidfile import PidFile, PidFileLocked

# The pidfile lock on its own.


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    path = tmp_path / "k2hr3-osnl.pid"
    first = PidFile(str(path)).acquire()
    first.write(4242)
    with pytest.raises(PidFileLocked, match=r"locked by a running k2hr3-osnl \(pid 4242\)"):
        PidFile(str(path)).acquire()
    first.release()
    assert not path.exists()
    PidFile(str(path)).acquire().release()


def test_a_leftover_pidfile_does_not_block_a_start(tmp_path: Path) -> None:
    """After a crash or kill -9 the file stays, but its lock went with the process."""
    path = tmp_path / "k2hr3-osnl.pid"
    path.write_text("999999\n")
    pidfile = PidFile(str(path)).acquire()
    pidfile.write()
    assert path.read_text() == f"{os.getpid()}\n"
    pidfile.release()


# The real command.


@pytest.fixture
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INVOCATION_ID", "NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"):
        monkeypatch.delenv(name, raising=False)


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2hr3_osnl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie that nobody reaped yet."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_daemonize_detaches_locks_the_pidfile_and_refuses_a_second_start(
    e2e: Harness, k2hr3: FakeK2HR3, no_systemd: None
) -> None:
    config_file = e2e.config(sections={"DEFAULT": {"debug_level": "info"}})
    log_file = config_file.with_suffix(".log")
    pidfile = e2e.tmp_path / "run" / "k2hr3-osnl.pid"
    pidfile.parent.mkdir()
    # Relative paths on purpose: the daemon works in /, and must still find them on SIGHUP.
    args = ("-c", config_file.name, "--daemonize", "--pidfile", "run/k2hr3-osnl.pid")

    first = _run(e2e.tmp_path, *args)
    assert first.returncode == 0, first
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "pid"))
    try:
        wait_until(
            lambda: "k2hr3_osnl.process.service listening" in log_file.read_text(), 20, "listening"
        )
        assert f"detached into the background: pid {pid}" in log_file.read_text()
        assert os.getsid(pid) != os.getsid(0), "still in the caller's session"
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nUmask:\t0027\n" in status
        assert Path(f"/proc/{pid}/cwd").resolve() == Path("/")

        second = _run(e2e.tmp_path, *args)
        assert second.returncode == 1, second
        assert f"locked by a running k2hr3-osnl (pid {pid})" in second.stderr
        assert not _gone(pid)

        os.kill(pid, signal.SIGHUP)  # the same signal handling as in the foreground
        wait_until(lambda: "log file reopened" in log_file.read_text(), 20, "the reload")
        note = neutron_port_delete(str(uuid.uuid4()), ["198.51.100.4"])
        e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", note)
        assert k2hr3.wait_for(1), log_file.read_text()

        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: _gone(pid), 30, "the daemon to exit")
    finally:
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert "k2hr3_osnl.process.service stopped" in log_file.read_text()
    assert "reload rejected" not in log_file.read_text()
    assert not pidfile.exists()


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_daemonize_is_ignored_under_systemd(
    e2e: Harness, monkeypatch: pytest.MonkeyPatch, no_systemd: None
) -> None:
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    pidfile = e2e.tmp_path / "k2hr3-osnl.pid"
    daemon = e2e.daemon(e2e.config())
    daemon.args = ("--daemonize", "--pidfile", str(pidfile))
    daemon.start()  # waits until it consumes: it did not detach
    assert daemon.alive
    assert pidfile.read_text() == f"{daemon.pid}\n"
    assert "started by systemd: --daemonize ignored, staying in the foreground" in daemon.log()
    assert daemon.stop() == 0
    assert not pidfile.exists()


def test_daemonize_needs_a_pidfile_and_a_log_file(tmp_path: Path, no_systemd: None) -> None:
    config_file = tmp_path / "a.conf"
    config_file.write_text(
        "[oslo_messaging_notifications]\ntransport_url = fake://\n"
        f"[k2hr3]\napi_url = http://127.0.0.1:9/v1/role\nstate_dir = {tmp_path}\n"
    )
    no_pidfile = _run(tmp_path, "-c", str(config_file), "--daemonize")
    assert no_pidfile.returncode == 2 and "--daemonize needs --pidfile" in no_pidfile.stderr
    to_stderr = _run(tmp_path, "-c", str(config_file), "--daemonize", "--pidfile", "p")
    assert to_stderr.returncode == 2
    assert "--daemonize needs a log file" in to_stderr.stderr
    assert not (tmp_path / "p").exists()
