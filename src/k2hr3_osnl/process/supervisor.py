"""``[DEFAULT] workers = N``: N consumer processes under one supervisor.

One Python process spends about one core at most (the GIL), and this daemon is bound by
CPU when a backlog drains. Each worker is the normal service loop in a forked child,
with its own broker connection on the same pool queue: RabbitMQ hands each message to
one of them (competing consumers), so N workers drain a backlog up to N times as fast
on N cores. The supervisor only starts, signals and restarts them:

- SIGTERM/SIGINT/SIGHUP are forwarded to every worker (stop, or reload the config);
- a worker that dies while the supervisor is not stopping is started again, after a
  pause that doubles on each quick death (1 s up to 60 s), so a worker that cannot
  start does not spin;
- once stopping, it waits for every worker and exits 0 if all of them stopped cleanly.

Under systemd the supervisor is the main process, and the only one systemd hears. Each
worker runs the same notify code as a single daemon, but its ``$NOTIFY_SOCKET`` is a
socket of the supervisor's (:class:`_Relay`), which knows each sender by its pid. So the
supervisor says READY=1 only once every worker consumes, WATCHDOG=1 only while every
worker has pinged within the watchdog period, RELOADING=1 then READY=1 around a SIGHUP
that every worker has finished, and a STATUS= that sums up theirs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from k2hr3_osnl.observability import logs
from k2hr3_osnl.process import systemd

LOG = logging.getLogger(__name__)

MIN_BACKOFF = 1.0
MAX_BACKOFF = 60.0
#: A worker that ran this long before dying gets the shortest pause again.
STABLE_AFTER = 60.0
_PR_SET_PDEATHSIG = 1
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class _Slot:
    index: int
    pid: int | None = None
    started: float = 0.0
    backoff: float = 0.0
    restart_at: float | None = None
    status: int | None = None  # how the last worker in this slot ended (exit status)
    # What the worker told its notify socket (under systemd only):
    ready: bool = False
    last_ping: float = 0.0
    text: str = "starting"


class _Relay:
    """The notify socket the workers talk to, in place of systemd's.

    An abstract AF_UNIX datagram socket: nothing on disk to clean up. ``SO_PASSCRED``
    makes the kernel attach each sender's pid, which tells the workers apart.
    """

    def __init__(self, watchdog: float | None) -> None:
        self.watchdog = watchdog
        self.name = f"k2hr3-osnl-supervisor-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sock = socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + self.name)

    def environ(self) -> dict[str, str]:
        """What a worker's environment says instead of systemd's variables."""
        variables = {"NOTIFY_SOCKET": "@" + self.name}
        if self.watchdog:
            # The worker pings every half period, as it would for systemd.
            variables["WATCHDOG_USEC"] = str(int(self.watchdog * 2_000_000))
        return variables

    def receive(self) -> Iterator[tuple[int | None, dict[str, str]]]:
        """Every datagram waiting: (sender pid, its fields)."""
        while True:
            try:
                data, ancillary, _flags, _address = self.sock.recvmsg(
                    65536, socket.CMSG_SPACE(struct.calcsize("3i"))
                )
            except BlockingIOError:
                return
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            text = data.decode("utf-8", "replace")
            yield pid, dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def close(self) -> None:
        self.sock.close()


class Supervisor:
    def __init__(
        self,
        workers: int,
        target: Callable[[int], int],
        *,
        min_backoff: float = MIN_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        notifier: systemd.Notifier | None = None,
    ) -> None:
        self.slots = [_Slot(i) for i in range(workers)]
        self.target = target
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.notifier = notifier or systemd.Notifier()
        self.stopping = False
        self._pending: list[int] = []
        self._read = self._write = -1
        self._relay: _Relay | None = None
        self._pid = os.getpid()
        self._announced = False  # READY=1 sent, and no reload under way since
        self._status = ""

    # -- signals: the handlers only note what came; the loop acts on it -------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._pending.append(signum)

    def _install(self) -> dict[int, object]:
        """Take over the signals; returns what to put back."""
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        return {s: signal.signal(s, self._on_signal) for s in (*_FORWARDED, signal.SIGCHLD)}

    def _uninstall(self, previous: dict[int, object]) -> None:
        signal.set_wakeup_fd(-1)
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        os.close(self._read)
        os.close(self._write)

    def _sleep(self, timeout: float) -> None:
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        if self._relay is not None:
            poller.register(self._relay.sock, select.POLLIN)
        if poller.poll(max(0.0, timeout) * 1000):
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def _act_on_signals(self) -> None:
        while self._pending:
            signum = self._pending.pop(0)
            if signum == signal.SIGCHLD:
                continue
            name = signal.Signals(signum).name
            if signum != signal.SIGHUP and not self.stopping:
                LOG.info("received %s, stopping %d worker(s)", name, self._alive())
                self.stopping = True
                self.notifier.stopping()
            elif signum == signal.SIGHUP:
                LOG.info("received SIGHUP, passing it to %d worker(s)", self._alive())
                if self._relay is not None:
                    self.notifier.reloading()
                    self._announced = False
                    for slot in self.slots:
                        slot.ready = False
            for slot in self.slots:
                if slot.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signum)

    # -- workers ----------------------------------------------------------------------

    def _alive(self) -> int:
        return sum(slot.pid is not None for slot in self.slots)

    def _spawn(self, slot: _Slot) -> None:
        # Signals stay blocked across fork, so none reaches the child before it has
        # put its own handlers back.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
        try:
            pid = os.fork()
            if pid == 0:  # the worker
                self._become_worker(slot.index, blocked)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        slot.pid, slot.started, slot.restart_at = pid, time.monotonic(), None
        slot.ready, slot.last_ping, slot.text = False, 0.0, "starting"
        LOG.info("worker %d started: pid %d", slot.index, pid)

    def _become_worker(self, index: int, mask: set[signal.Signals]) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            os.close(self._read)
            os.close(self._write)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            _stop_with_parent(self._pid)
            # A reload asked for while this worker starts is moot: it reads the file now.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            for name in _SYSTEMD_VARIABLES:
                os.environ.pop(name, None)
            if self._relay is not None:
                self._relay.sock.close()
                os.environ.update(self._relay.environ())
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            status = self.target(index)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            LOG.exception("worker %d failed", index)
        finally:
            for handler in logging.getLogger().handlers:
                with contextlib.suppress(Exception):
                    handler.flush()
            os._exit(status)

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = None
            slot.status = _exit_status(wait_status)
            how = _describe(wait_status)
            if self.stopping:
                LOG.info("worker %d (pid %d) %s", slot.index, pid, how)
                continue
            lived = time.monotonic() - slot.started
            slot.backoff = (
                self.min_backoff
                if lived >= STABLE_AFTER or not slot.backoff
                else min(self.max_backoff, slot.backoff * 2)
            )
            slot.restart_at = time.monotonic() + slot.backoff
            LOG.error(
                "worker %d (pid %d) %s after %.0fs; starting it again in %.0fs",
                slot.index,
                pid,
                how,
                lived,
                slot.backoff,
            )

    # -- what the workers tell systemd, through the supervisor --------------------------

    def _listen_to_workers(self) -> None:
        if self._relay is None:
            return
        now = time.monotonic()
        for pid, fields in self._relay.receive():
            slot = next((s for s in self.slots if s.pid is not None and s.pid == pid), None)
            if slot is None:
                continue
            if fields.get("READY") == "1":
                slot.ready = True
            if fields.get("RELOADING") == "1":
                slot.ready = False
            if fields.get("WATCHDOG") == "1" or fields.get("READY") == "1":
                slot.last_ping = now
            if "STATUS" in fields:
                slot.text = fields["STATUS"]
        if self.stopping:
            return
        summary = "; ".join(f"worker {slot.index}: {slot.text}" for slot in self.slots)
        if not self._announced and all(slot.ready for slot in self.slots):
            self.notifier.ready(summary)
            self._announced = True
        elif summary != self._status:
            self.notifier.status(summary)
        self._status = summary

    def _healthy(self, now: float) -> bool:
        """Every worker alive and pinging: what a WATCHDOG=1 to systemd vouches for."""
        if self._relay is None:
            return True
        period = 2 * (self._relay.watchdog or 0)
        return all(
            slot.pid is not None and slot.ready and now - slot.last_ping <= period
            for slot in self.slots
        )

    def run(self) -> int:
        """Start the workers and supervise them until told to stop; the exit status."""
        previous = self._install()
        if self.notifier.enabled:
            self._relay = _Relay(systemd.watchdog_interval())
        try:
            return self._supervise()
        finally:
            self._uninstall(previous)
            if self._relay is not None:
                self._relay.close()
                self._relay = None

    def _supervise(self) -> int:
        for slot in self.slots:
            self._spawn(slot)
        watchdog = self._relay.watchdog if self._relay is not None else None
        next_ping = time.monotonic()
        while True:
            self._act_on_signals()
            self._reap()
            self._listen_to_workers()
            # The workers never rotate a shared log file; the supervisor does, on time.
            logs.rotate_if_due()
            if self.stopping and not self._alive():
                break
            now = time.monotonic()
            if not self.stopping:
                for slot in self.slots:
                    if slot.pid is None and slot.restart_at is not None and slot.restart_at <= now:
                        self._spawn(slot)
            if watchdog and now >= next_ping:
                # Stopping workers ping no more, and systemd's watchdog runs on while the
                # unit stops: the supervisor, reaping them, vouches for the way out, which
                # TimeoutStopSec= bounds.
                if self.stopping or self._healthy(now):
                    self.notifier.watchdog()
                next_ping = now + watchdog
            due = [s.restart_at for s in self.slots if s.pid is None and s.restart_at]
            wake = min([*due, next_ping if watchdog else now + 5.0])
            self._sleep(min(5.0, wake - time.monotonic()))
        failed = [slot.index for slot in self.slots if slot.status not in (0, None)]
        if failed:
            LOG.error("stopped; worker(s) %s did not stop cleanly", failed)
            return 1
        LOG.info("all %d workers stopped", len(self.slots))
        return 0


def _stop_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (Linux prctl).

    Otherwise an orphaned worker would go on consuming, unsupervised and unseen by
    systemd, and a restarted service would run beside it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _exit_status(wait_status: int) -> int:
    """0 for a clean stop; a worker ended by the stop signal it was sent counts as one."""
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    signum = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else 0
    return 0 if signum in (signal.SIGTERM, signal.SIGINT) else 128 + signum


def _describe(wait_status: int) -> str:
    if os.WIFEXITED(wait_status):
        return f"exited with status {os.WEXITSTATUS(wait_status)}"
    if os.WIFSIGNALED(wait_status):
        return f"was killed by {signal.Signals(os.WTERMSIG(wait_status)).name}"
    return f"ended ({wait_status})"


def run(workers: int, target: Callable[[int], int]) -> int:
    """Run ``target(index)`` in ``workers`` supervised processes; see the module doc."""
    return Supervisor(workers, target).run()
