"""The real ``k2hr3-osnl`` as a subprocess on the real RabbitMQ, for end-to-end tests.

Unit tests prove the parts; only a separate process, started from a config file like an
operator's, proves the wiring: the config loads, the listener binds what it should,
signals stop it, and the broker's own behaviour (redelivery, restarts) is what it is.

- :func:`write_config` writes a config file;
- :class:`Daemon` starts the process, waits until it tells its notify socket READY=1 (as
  it tells systemd) and RabbitMQ shows its consumer, stops it with SIGTERM and returns
  the exit status; :meth:`Daemon.report` puts its log into an assertion message, so a
  failure shows what the daemon did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from support.broker import Broker
from support.notify_socket import NotifySocket
from support.waiting import wait_until

#: A file must name its broker ([DEFAULT] or [oslo_messaging_notifications] transport_url);
#: appended to the files of tests about something else.
BROKER = "\n[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:5672/\n"


def with_broker(text: str) -> str:
    return text if "transport_url" in text else text + BROKER


def write_config(
    path: Path,
    *,
    transport_url: str,
    api_url: str,
    exchanges: Iterable[str],
    topics: Iterable[str],
    pool: str,
    state_dir: Path,
    log_file: Path,
    sections: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """An operator's config file; ``sections`` adds or overrides options."""
    merged: dict[str, dict[str, object]] = {
        "DEFAULT": {
            "debug_level": "debug",
            "libs_debug_level": "warn",
            "log_file": log_file,
        },
        "oslo_messaging_notifications": {
            "transport_url": transport_url,
            "exchange": ", ".join(exchanges),
            "topic": ", ".join(topics),
            "pool": pool,
        },
        "oslo_messaging_rabbit": {
            # Reconnect fast: the broker-restart test waits for it.
            "rabbit_retry_interval": 1,
            "rabbit_retry_backoff": 1,
            "rabbit_interval_max": 2,
        },
        # No /metrics server: the default port may belong to another daemon or test.
        "metrics": {"port": 0},
        "k2hr3": {
            "api_url": api_url,
            "state_dir": state_dir,
            "timeout_seconds": 5,
            "connect_timeout_seconds": 2,
            "retry_interval_seconds": 1,
            "drain_seconds": 10,
        },
    }
    for section, values in (sections or {}).items():
        merged.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Daemon:
    """One ``k2hr3-osnl`` process. Use :meth:`start` again after :meth:`stop` to restart."""

    def __init__(
        self,
        config: Path,
        log_file: Path,
        queues: Iterable[str],
        broker: Broker | None = None,
        args: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.log_file = log_file
        #: Queues that must have a consumer before the daemon counts as listening.
        self.queues = tuple(queues)
        self.broker = broker or Broker()
        self.args = tuple(args)
        self.output = log_file.with_suffix(".out")
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0
        #: systemd's end of the notify protocol, unless the daemon is to detach (a
        #: daemon that believes systemd started it ignores --daemonize).
        self.notify: NotifySocket | None = None
        if "--daemonize" not in self.args:
            directory = tempfile.mkdtemp(prefix="osnl-")  # short: a socket path has 108
            self.notify = NotifySocket(Path(directory) / "notify")
        self._notify_start = 0
        self._notified = False

    def start(self, wait: bool = True, timeout: float = 30) -> Daemon:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # A test that plays systemd itself has set NOTIFY_SOCKET: its socket, not ours.
        self._notified = self.notify is not None and "NOTIFY_SOCKET" not in os.environ
        if self._notified:
            assert self.notify is not None
            self._notify_start = len(self.notify.snapshot())
            env["NOTIFY_SOCKET"] = self.notify.path
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "k2hr3_osnl", "-c", str(self.config), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait:
            self.wait_listening(timeout)
        return self

    def ready(self) -> bool:
        """The daemon told our notify socket READY=1 since it was last started; where
        it has none of ours (detached, or the test plays systemd), it logged that it
        listens."""
        if not self._notified or self.notify is None:
            return "k2hr3_osnl.process.service listening" in self.log()
        return self.notify.find("READY", "1", self._notify_start) is not None

    def wait_listening(self, timeout: float = 30) -> None:
        """Until the daemon is ready and RabbitMQ shows its consumer on every queue."""

        def ready() -> bool:
            assert self.alive, self.report("the daemon exited while starting")
            if not self.ready():
                return False
            return all(
                (info := self.broker.queue_info(q)) is not None and info[1] > 0 for q in self.queues
            )

        try:
            wait_until(ready, timeout, "the daemon to consume", interval=0.1)
        except AssertionError as error:
            raise AssertionError(self.report(str(error))) from None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status; a daemon still running after ``timeout`` fails."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                self.report(f"still running {timeout:.0f}s after SIGTERM")
            ) from None

    def kill(self) -> None:
        """Teardown: make sure no process of ours outlives its test."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        """Teardown: kill it if it runs, and close its notify socket."""
        self.kill()
        if self.notify is not None:
            self.notify.close()
            Path(self.notify.path).unlink(missing_ok=True)
            Path(self.notify.path).parent.rmdir()

    def log(self, since_start: bool = True) -> str:
        """The log file (by default only what this run wrote) and anything on stderr."""
        text = ""
        if self.log_file.exists():
            with open(self.log_file, "rb") as source:
                source.seek(self._log_start if since_start else 0)
                text = source.read().decode("utf-8", "replace")
        return text

    def count(self, needle: str) -> int:
        return self.log(since_start=False).count(needle)

    def report(self, what: str, tail: int = 150) -> str:
        """``what``, followed by the end of the daemon's log and output: for assertions."""
        lines = self.log(since_start=False).splitlines()
        out = self.output.read_text("utf-8", "replace") if self.output.exists() else ""
        shown = "\n".join(lines[-tail:])
        return (
            f"{what}\n--- last {min(tail, len(lines))} of {len(lines)} log lines "
            f"({self.log_file}) ---\n{shown}\n--- stdout/stderr ---\n{out[-4000:]}"
        )
