"""Signals turned into requests that the main thread acts on.

A Python signal handler runs between two bytecodes of the main thread, possibly while it
holds a lock (logging's, for one). So the handlers here only set flags and wake the main
loop; stopping and reloading happen in :func:`k2hr3_osnl.process.service.run`, outside them.

The main loop sleeps in ``poll`` on a pipe that ``signal.set_wakeup_fd`` writes to,
not on a ``threading.Event``: the kernel may deliver a signal to any of oslo.messaging's
threads, and then nothing interrupts a main thread blocked on a lock until its timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
from types import FrameType

LOG = logging.getLogger(__name__)


class Requests:
    """SIGTERM/SIGINT ask to stop, SIGHUP to reload; :meth:`wait` returns on either."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stop = threading.Event()
        self._reload = False
        self.stop_signal: str | None = None

    def install(self) -> None:
        """Take over the signals; call from the main thread."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_signal = signal.Signals(signum).name
        self.stop.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self._reload = True

    def request_stop(self) -> None:
        self.stop.set()
        self.wake()

    def wake(self) -> None:
        """Let the main loop look at the state now (e.g. the listener just started)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def wait(self, timeout: float | None) -> None:
        """Sleep until a signal, :meth:`wake`, or ``timeout`` seconds."""
        poller = select.poll()
        poller.register(self._read, select.POLLIN)
        if poller.poll(None if timeout is None else timeout * 1000):
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def take_reload(self) -> bool:
        """True once per SIGHUP received (several close together count as one)."""
        wanted, self._reload = self._reload, False
        return wanted
