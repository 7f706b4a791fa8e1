"""Is the listener really consuming? The answer behind systemd's ``WATCHDOG=1``.

oslo.messaging has no public health API, so this asks :mod:`k2hr3_osnl.rabbit.seam` two
things, each a plain attribute read (no I/O, no lock, safe from any thread, cheap every
few seconds): is the one thread that polls the broker alive (it ends only when the
listener is stopped; if it is not alive, nothing is consumed, whatever the socket says),
and does the rabbit driver's kombu connection still have its socket. When the broker
goes away the driver drops that socket at once and reconnects in the same poll thread,
so the connection reads as lost exactly while it is reconnecting. A silently dead peer
(a partition, no RST) reads as connected until the heartbeat notices
(``heartbeat_timeout_threshold``), which is the driver's own detection.

Any other driver (``fake://`` in tests) shows no connection: only the thread is checked,
and :attr:`Liveness.connected` is None. If a future oslo.messaging renames what the seam
reads, the check says so in its reason (and withholds the watchdog), rather than report
a health it cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k2hr3_osnl.rabbit import seam


@dataclass(frozen=True, slots=True)
class Liveness:
    ok: bool
    #: None when the driver does not let us see the connection.
    connected: bool | None
    reason: str


def check(server: Any) -> Liveness:
    """The health of an oslo.messaging ``MessageHandlingServer`` (a notification listener)."""
    if getattr(server, "listener", None) is None:
        return Liveness(False, None, "the listener is not started")
    thread = seam.poll_thread(server)
    if thread is None:
        return Liveness(False, None, "cannot see oslo.messaging's poll thread")
    if not thread.is_alive():
        return Liveness(False, None, "the consumer thread has ended")
    connected = seam.broker_connected(server)
    if connected is None:
        return Liveness(True, None, "consuming")  # not the rabbit driver: nothing more to see
    if not connected:
        return Liveness(False, False, "RabbitMQ connection lost, reconnecting")
    return Liveness(True, True, "consuming")
