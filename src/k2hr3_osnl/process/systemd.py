"""systemd's notify protocol (``sd_notify``), in pure Python.

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named in
``$NOTIFY_SOCKET``, so a dependency (or libsystemd through ctypes) would be more code to
trust than this. Without ``$NOTIFY_SOCKET`` (not under systemd, or ``Type=simple``)
every call is a no-op, so the daemon can call it unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

LOG = logging.getLogger(__name__)


def under_systemd(environ: Mapping[str, str] = os.environ) -> bool:
    """True when systemd started this process (it sets INVOCATION_ID for every unit)."""
    return bool(environ.get("INVOCATION_ID") or environ.get("NOTIFY_SOCKET"))


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``WatchdogSec=``, as sd_watchdog_enabled.

    None when the watchdog is off, or when ``$WATCHDOG_PID`` names another process (the
    variables were inherited, not meant for us).
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    return usec / 2_000_000


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares ``MONOTONIC_USEC`` with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Sends state changes to systemd; silent when there is no notify socket."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        # '@name' is an abstract socket: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        if self.address and not self.address.startswith(("/", "\0")):
            LOG.warning("NOTIFY_SOCKET=%s is not an AF_UNIX socket; not notifying", address)
            self.address = ""
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; False if it could not be delivered."""
        if not self.address or not fields:
            return False
        message = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as error:
            # systemd gone or restarting: the daemon's real work goes on.
            if not self._warned:
                LOG.warning("cannot notify systemd at %s: %s", self.address, error)
                self._warned = True
            return False
        return True

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        # systemd 253+ requires MONOTONIC_USEC with RELOADING=1, to order it with READY=1.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")

    def stopping(self, status: str = "stopping", *, watchdog_seconds: float | None = None) -> bool:
        """``STOPPING=1``; with ``watchdog_seconds``, the watchdog's limit for the way out.

        systemd keeps the watchdog running while a unit stops: a stop that drains longer
        than ``WatchdogSec=`` would end in SIGABRT and ``Result=watchdog``. Pass it only
        when the watchdog is on (``WATCHDOG_USEC=`` would turn it on otherwise).
        """
        fields = ["STOPPING=1", f"STATUS={status}"]
        if watchdog_seconds:
            fields += ["WATCHDOG=1", f"WATCHDOG_USEC={int(watchdog_seconds * 1_000_000)}"]
        return self.send(*fields)
