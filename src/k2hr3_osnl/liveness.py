"""Is the listener really consuming? The answer behind systemd's ``WATCHDOG=1``.

oslo.messaging has no public health API, so this reads three of its objects, each a
plain attribute read (no I/O, no lock, safe from any thread, cheap every few seconds):

``MessageHandlingServer.listener``
    a ``PollStyleListenerAdapter`` once ``start()`` returned (None before, and again
    after ``wait()``);
``adapter._listen_thread``
    the one thread that polls the broker and hands messages to the worker pool. It runs
    under ``forever_retry_uncaught_exceptions``, so it ends only when the listener is
    stopped; if it is not alive, nothing is consumed, whatever the socket says;
``adapter._poll_style_listener.conn.connection.connection``
    for the rabbit driver: the ``ConnectionContext`` of the listener's own connection,
    its ``impl_rabbit.Connection``, and that one's ``kombu.Connection``, whose
    ``connected`` property checks that the amqp transport still has its socket. When the
    broker goes away the driver drops that socket at once and reconnects in the same
    poll thread, so ``connected`` is False exactly while it is reconnecting. A silently
    dead peer (a partition, no RST) keeps it True until the heartbeat notices
    (``heartbeat_timeout_threshold``), which is the driver's own detection.

Any other driver (``fake://`` in tests) has no such chain: only the thread is checked,
and :attr:`Health.connected` is None. If a future oslo.messaging renames these
attributes, the check says so in its reason (and withholds the watchdog), rather than
report a health it cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    #: None when the driver does not let us see the connection.
    connected: bool | None
    reason: str


def check(server: Any) -> Health:
    """The health of an oslo.messaging ``MessageHandlingServer`` (a notification listener)."""
    adapter = getattr(server, "listener", None)
    if adapter is None:
        return Health(False, None, "the listener is not started")
    thread = getattr(adapter, "_listen_thread", None)
    if thread is None:
        return Health(False, None, "cannot see oslo.messaging's poll thread")
    if not thread.is_alive():
        return Health(False, None, "the consumer thread has ended")
    poller = getattr(adapter, "_poll_style_listener", None)
    context = getattr(poller, "conn", None)
    if context is None:
        return Health(True, None, "consuming")  # not the rabbit driver: nothing more to see
    try:
        connected = bool(context.connection.connection.connected)
    except Exception:
        # The driver swaps these objects while reconnecting or closing.
        connected = False
    if not connected:
        return Health(False, False, "RabbitMQ connection lost, reconnecting")
    return Health(True, True, "consuming")
