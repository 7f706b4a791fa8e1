"""The one place that touches oslo.messaging's and kombu's private parts.

oslo.messaging has no public API for what a lossless listener needs: reading a message
without dispatching it, handing back only some messages of a batch, seeing whether the
consumer thread and its connection are alive. So the daemon reaches inside, and every
such reach is here, named by a :class:`Hook` that says what it is for and what happens
without it. Nothing else in ``src/`` names a private oslo.messaging or kombu attribute.

:func:`check` runs before the daemon consumes. A missing hook that would change what
is acknowledged stops the start (one line naming it and the installed version, exit
status 2): a renamed ``_extract_user_message`` must never turn into "every notification
acknowledged as invalid". The hooks that decide acknowledgement are not only looked up
but run, on a synthetic message: reading it must give back its priority, event type,
publisher, payload and message_id, and the batch server must acknowledge exactly what
the dispatcher does not hand back; a changed return shape or a renamed key stops the
start as a missing hook does. A missing hook that only costs speed or insight is a
warning.
Supported: the oslo.messaging releases in ``pyproject.toml``, tested at both ends.
"""

from __future__ import annotations

import inspect
import logging
import select
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from oslo_messaging.notify import dispatcher as _dispatcher
from oslo_messaging.notify import listener as _listener
from oslo_messaging.notify import notifier as _notifier

LOG = logging.getLogger(__name__)

#: The priorities a notification may carry, lower case, as the dispatcher knows them.
PRIORITIES: tuple[str, ...] = tuple(getattr(_dispatcher, "PRIORITIES", ()))
#: oslo.messaging's batch dispatcher, which ours refines (judging each message alone).
BatchDispatcher = _dispatcher.BatchNotificationDispatcher
#: oslo.messaging's batch listener server, whose driver listener we reach through.
BatchServer = _listener.BatchNotificationServer
#: The rabbit driver's logger (oslo.log names it with a dot, plain logging with the
#: module): its fixed messages are read as events (lost, back, undecodable body).
RABBIT_DRIVER_LOGGERS = (
    "oslo.messaging._drivers.impl_rabbit",
    "oslo_messaging._drivers.impl_rabbit",
)


def version() -> str:
    try:
        return metadata.version("oslo.messaging")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- reading a message -----------------------------------------------------------


def read_message(dispatcher: Any, raw: Any) -> tuple[str, dict[str, Any]]:
    """``(priority, message)`` as a dispatcher would hand it to an endpoint."""
    priority, _, message = dispatcher._extract_user_message(raw)
    return priority, message


# --- how a batch is polled -------------------------------------------------------


def driver_poll(adapter: Any) -> Callable[..., list[Any]] | None:
    """The driver listener's ``poll`` behind a ``PollStyleListenerAdapter`` (rabbit,
    fake and kafka drivers), or None where a release moved it."""
    listener = getattr(adapter, "_poll_style_listener", None)
    poll = getattr(listener, "poll", None)
    return poll if callable(poll) else None


def already_there(listener: Any) -> Callable[[], bool] | None:
    """For the rabbit driver's listener: whether another message is already here (one
    oslo.messaging has unpacked, bytes amqp has buffered, or bytes on the socket), so
    that a batch waits only for what is arriving. None for another driver."""
    if not (hasattr(listener, "incoming") and hasattr(listener, "conn")):
        return None

    def ready() -> bool:
        if listener.incoming:
            return True
        # conn is oslo.messaging's context around its rabbit Connection, around kombu's;
        # kombu's own attribute, as its property would connect.
        rabbit = getattr(listener.conn, "connection", None)
        amqp_connection = getattr(getattr(rabbit, "connection", None), "_connection", None)
        transport = getattr(amqp_connection, "transport", None)
        sock = getattr(transport, "sock", None)
        if sock is None:
            return True  # cannot tell: give the next message its window, as before
        if getattr(transport, "_read_buffer", b"") or (
            isinstance(sock, ssl.SSLSocket) and sock.pending()
        ):
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):  # closed under us: the poll will say so
            return True

    return ready


class PollWrappingBatchServer(BatchServer):
    """oslo.messaging's batch notification server with the driver listener's ``poll``
    wrapped by ``wrap_poll`` (set by a subclass), which is also told how to see whether
    more is already there (:func:`already_there`). Where a release moved it, batches are
    oslo.messaging's own: slower at a trickle, still correct."""

    wrap_poll: Callable[..., Callable[..., list[Any]]]

    def _create_listener(self) -> Any:
        adapter = super()._create_listener()
        poll = driver_poll(adapter)
        if poll is None:
            LOG.warning("oslo.messaging's listener has changed: batches wait for their timeout")
        else:
            listener = adapter._poll_style_listener
            listener.poll = type(self).wrap_poll(poll, already_there(listener))
        return adapter

    def _process_incoming(self, incoming: list[Any]) -> None:
        """oslo.messaging's acknowledgement of a batch, except that messages settled
        before the rest of their batch (filtered out, unreadable, another priority) are
        acknowledged at once, while its deletions wait for K2HR3, and not again.

        The dispatcher gets a callback for those; the rest are acknowledged or requeued
        here once it returns, as oslo.messaging would.
        """
        early: set[Any] = set()

        def acknowledge_now(messages: list[Any]) -> None:
            for message in messages:
                if message not in early:
                    early.add(message)
                    _settle(message, requeue=False)

        try:
            back = self.dispatcher.dispatch(incoming, acknowledge_now)
        except Exception:
            LOG.exception("a batch of %d notifications failed; handed back", len(incoming))
            back = set(incoming) - early
        for message in incoming:
            if message not in early:
                _settle(message, requeue=message in back and self._allow_requeue)


def _settle(message: Any, requeue: bool) -> None:
    """Acknowledge or requeue one message; the driver logs a failure (a lost connection)
    and RabbitMQ redelivers it."""
    try:
        if requeue:
            message.requeue()
        else:
            message.acknowledge()
    except Exception:
        LOG.exception("acknowledging or requeueing a message failed")


# --- is it consuming? --------------------------------------------------------------


def poll_thread(server: Any) -> threading.Thread | None:
    """The one thread that polls the broker for a started listener (None before)."""
    adapter = getattr(server, "listener", None)
    return getattr(adapter, "_listen_thread", None)


def broker_connected(server: Any) -> bool | None:
    """Whether the rabbit driver's kombu connection has its socket; None for another
    driver (no such chain). False while the driver swaps objects to reconnect."""
    adapter = getattr(server, "listener", None)
    poller = getattr(adapter, "_poll_style_listener", None)
    context = getattr(poller, "conn", None)
    if context is None:
        return None
    try:
        return bool(context.connection.connection.connected)
    except Exception:
        return False


# --- redelivered messages -----------------------------------------------------------


def let_redeliveries_through() -> bool:
    """Turn off the AMQP listener's memory of the last 16 acknowledged ``_unique_id``.

    It skips a message that comes again without acknowledging it, so the copy holds a
    prefetch slot until the connection drops. The handler recognises duplicates by
    message_id instead. Idempotent; False where the cache is gone (nothing to undo).
    """
    from oslo_messaging._drivers import amqp

    cache = getattr(amqp, "_MsgIdCache", None)
    if cache is None or not hasattr(amqp, "UNIQUE_ID"):
        return False
    if getattr(cache, "_k2hr3_osnl", False):
        return True

    def check_duplicate_message(self: Any, message_data: Any) -> Any:
        return message_data.pop(amqp.UNIQUE_ID, None)

    cache.check_duplicate_message = check_duplicate_message
    cache._k2hr3_osnl = True
    return True


# --- failing over to another node of a cluster ---------------------------------------


def fail_over_one_host_at_a_time() -> bool:
    """Make each switch of a kombu connection to the next host count once that host was tried.

    With several hosts in ``transport_url``, one lost connection is seen by up to three
    layers (oslo.messaging's ``_consume``, kombu's ``ensure``, its reconnect loop), and
    recent releases switch to the next host in each: on three nodes, a full round back
    to the node that is stopping, retried each second while it still takes connections
    (7-11 s to fail over, against about 1 s). Here a switch away from a host not yet
    tried since the last switch is ignored: the next attempt goes to the next host.
    Older releases switch only after a failed attempt and are unchanged by it.
    Idempotent; False where kombu moved these methods (failover is slower, nothing lost).
    """
    from kombu import connection

    cls = connection.Connection
    switch_next = getattr(cls, "maybe_switch_next", None)
    factory = getattr(cls, "_connection_factory", None)
    if switch_next is None or factory is None:
        return False
    if getattr(switch_next, "_k2hr3_osnl", False):
        return True

    def maybe_switch_next(self: Any) -> None:
        if getattr(self, "_k2hr3_osnl_untried", False):
            return  # the host switched to has not had its attempt yet
        switch_next(self)
        self._k2hr3_osnl_untried = True

    def _connection_factory(self: Any) -> Any:
        self._k2hr3_osnl_untried = False
        return factory(self)

    maybe_switch_next._k2hr3_osnl = True  # type: ignore[attr-defined]
    cls.maybe_switch_next = maybe_switch_next  # type: ignore[method-assign]
    cls._connection_factory = _connection_factory  # type: ignore[method-assign]
    return True


# --- one queue's own arguments -------------------------------------------------------

#: Queue name -> arguments added to the driver's own when it declares that queue.
_QUEUE_ARGUMENTS: dict[str, dict[str, Any]] = {}


def add_queue_arguments(name: str, arguments: dict[str, Any]) -> bool:
    """Declare queue ``name`` with ``arguments`` (``x-expires``...) added to the driver's.

    oslo.messaging has no option for one queue's arguments: its rabbit driver declares
    each consumer's queue, at start and after every reconnect, with the consumer's
    ``queue_arguments``. Those of ``name`` get ours just before each declaration.
    Idempotent; False where the driver moved them (the queue is declared as before).
    """
    try:
        from oslo_messaging._drivers import impl_rabbit
    except ImportError:
        return False
    connection = getattr(impl_rabbit, "Connection", None)
    original = getattr(connection, "declare_consumer", None)
    if original is None or not _sets(lambda: impl_rabbit.Consumer, "queue_arguments")():
        return False
    _QUEUE_ARGUMENTS[name] = dict(arguments)
    if getattr(original, "_k2hr3_osnl", False):
        return True

    def declare_consumer(self: Any, consumer: Any, *args: Any, **kwargs: Any) -> Any:
        extra = _QUEUE_ARGUMENTS.get(getattr(consumer, "queue_name", None) or "")
        if extra:
            consumer.queue_arguments = {**(consumer.queue_arguments or {}), **extra}
        return original(self, consumer, *args, **kwargs)

    declare_consumer._k2hr3_osnl = True  # type: ignore[attr-defined]
    connection.declare_consumer = declare_consumer  # type: ignore[union-attr]
    return True


# --- configuration -----------------------------------------------------------------


def notifier_opts() -> list[Any]:
    """oslo.messaging's ``[oslo_messaging_notifications]`` options (transport_url...)."""
    return list(_notifier._notifier_opts)


def ssl_protocols() -> frozenset[str]:
    """The ``ssl_version`` values the rabbit driver accepts; empty if they moved."""
    try:
        from oslo_messaging._drivers import impl_rabbit

        return frozenset(impl_rabbit.Connection._SSL_PROTOCOLS)
    except (ImportError, AttributeError):
        return frozenset()


# --- the self-check ------------------------------------------------------------------


class HookChanged(Exception):
    """A hook is there, but run on a synthetic message it does not do what we rely on."""


class _Synthetic:
    """A message as the rabbit driver hands it to a dispatcher, never sent anywhere:
    it records what the batch server does with it."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.ctxt: dict[str, Any] = {"request_id": "req-k2hr3-osnl-self-check"}
        self.message = message
        self.done: list[str] = []

    def acknowledge(self) -> None:
        self.done.append("acknowledge")

    def requeue(self) -> None:
        self.done.append("requeue")


def _synthetic(message_id: str, priority: str = "INFO") -> _Synthetic:
    return _Synthetic(
        {
            "message_id": message_id,
            "priority": priority,
            "event_type": "port.delete.end",
            "publisher_id": "network.k2hr3-osnl-self-check",
            "payload": {"port": {"device_id": "00000000-0000-4000-8000-000000000000"}},
            "timestamp": "2026-01-01 00:00:00.000000",
        }
    )


def _reads_a_synthetic_message() -> bool:
    """``read_message`` on a synthetic notification gives what the endpoint relies on."""
    raw = _synthetic("k2hr3-osnl-self-check-read")
    try:
        priority, message = read_message(BatchDispatcher([], None), raw)
    except Exception as error:
        raise HookChanged(f"reading a message raised {type(error).__name__}: {error}") from None
    expected = {
        "priority": "info",
        "event_type": raw.message["event_type"],
        "publisher_id": raw.message["publisher_id"],
        "payload": raw.message["payload"],
        "message_id": raw.message["message_id"],
    }
    got = {"priority": priority}
    if isinstance(message, dict):
        metadata = message.get("metadata")
        got.update({key: message.get(key) for key in ("event_type", "publisher_id", "payload")})
        got["message_id"] = metadata.get("message_id") if isinstance(metadata, dict) else None
    wrong = sorted(key for key in expected if got.get(key) != expected[key])
    if wrong:
        raise HookChanged(f"a message read back with wrong {', '.join(wrong)}")
    return True


def _acknowledges_all_but_what_dispatch_hands_back() -> bool:
    """The batch server, given a dispatcher that hands back one of two synthetic
    messages, acknowledges the other and requeues that one; when dispatching raises,
    it requeues both."""
    keep, back = _synthetic("k2hr3-osnl-self-check-ack"), _synthetic("k2hr3-osnl-self-check-back")

    class _Server:
        _allow_requeue = True

        def __init__(self, dispatch: Callable[[list[Any]], set[Any]]) -> None:
            self.dispatcher = type("_Dispatcher", (), {"dispatch": staticmethod(dispatch)})()

    def raising(incoming: list[Any]) -> set[Any]:
        raise RuntimeError("self-check")

    try:
        BatchServer._process_incoming(_Server(lambda incoming: {back}), [keep, back])
        failed_keep, failed_back = _synthetic("a"), _synthetic("b")
        logger = logging.getLogger(_listener.__name__)
        disabled, logger.disabled = logger.disabled, True  # its "Exception during..." line
        try:
            BatchServer._process_incoming(_Server(raising), [failed_keep, failed_back])
        finally:
            logger.disabled = disabled
    except Exception as error:
        raise HookChanged(f"settling a batch raised {type(error).__name__}: {error}") from None
    seen = (keep.done, back.done, failed_keep.done, failed_back.done)
    if seen != (["acknowledge"], ["requeue"], ["requeue"], ["requeue"]):
        raise HookChanged(f"a batch was settled as {seen}")
    return True


@dataclass(frozen=True, slots=True)
class Hook:
    name: str
    #: What it is for, and what happens without it.
    purpose: str
    #: Without it, what is acknowledged would change: the daemon must not start.
    delivery: bool
    present: Callable[[], bool]


def _has(get: Callable[[], Any], *names: str) -> Callable[[], bool]:
    """A check that ``get()`` has the attribute path ``names``."""

    def present() -> bool:
        target = get()
        for name in names:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True

    return present


def _sets(get: Callable[[], Any], *attributes: str) -> Callable[[], bool]:
    """A check that ``get()``'s ``__init__`` still assigns each of ``attributes``:
    instance attributes exist only once an object is made, long after the start."""

    def present() -> bool:
        source = inspect.getsource(get().__init__)
        return all(f"self.{name} =" in source for name in attributes)

    return present


def _amqp() -> Any:
    from oslo_messaging._drivers import amqp

    return amqp


def _impl_rabbit() -> Any:
    from oslo_messaging._drivers import impl_rabbit

    return impl_rabbit


def _amqp_listener() -> Any:
    from oslo_messaging._drivers import amqpdriver

    return amqpdriver.AMQPListener


def _kombu_connection() -> Any:
    from kombu import connection

    return connection.Connection


def _amqp_transport() -> Any:
    from amqp import transport

    return transport._AbstractTransport


def _adapter() -> Any:
    from oslo_messaging._drivers import base

    return base.PollStyleListenerAdapter


HOOKS = (
    Hook(
        "NotificationDispatcher._extract_user_message",
        "reads each message without dispatching it; without it every notification would "
        "be judged unreadable",
        True,
        _has(lambda: _dispatcher.NotificationDispatcher, "_extract_user_message"),
    ),
    Hook(
        "NotificationDispatcher._extract_user_message on a synthetic message",
        "must give back the priority, event type, publisher, payload and message_id; "
        "otherwise every notification would be judged unusable and acknowledged",
        True,
        _reads_a_synthetic_message,
    ),
    Hook(
        "BatchNotificationServer._process_incoming on a synthetic batch",
        "must acknowledge exactly what the dispatcher does not hand back; otherwise "
        "deletions still waiting for K2HR3 would be acknowledged, or done ones loop",
        True,
        _acknowledges_all_but_what_dispatch_hands_back,
    ),
    Hook(
        "notify.dispatcher.PRIORITIES",
        "the priorities a message may carry; without it every message is invalid",
        True,
        lambda: bool(PRIORITIES) and "info" in PRIORITIES,
    ),
    Hook(
        "BatchNotificationDispatcher(endpoints, serializer)",
        "the batch dispatcher ours refines, so that each message of a batch is acknowledged "
        "or handed back on its own",
        True,
        lambda: callable(getattr(_dispatcher, "BatchNotificationDispatcher", None)),
    ),
    Hook(
        "notifier._notifier_opts",
        "transport_url and the other [oslo_messaging_notifications] options",
        True,
        _has(lambda: _notifier, "_notifier_opts"),
    ),
    Hook(
        "amqp._MsgIdCache",
        "lets a redelivered copy reach the handler; without it such a copy sits "
        "unacknowledged until the connection drops (slower, nothing lost)",
        False,
        lambda: (
            _has(_amqp, "_MsgIdCache", "check_duplicate_message")() and _has(_amqp, "UNIQUE_ID")()
        ),
    ),
    Hook(
        "BatchNotificationServer._process_incoming(incoming), _allow_requeue",
        "acknowledges a batch's unusable messages while its deletions wait for K2HR3; "
        "without it they are acknowledged with the batch (slower under a slow K2HR3)",
        False,
        lambda: (
            _has(lambda: BatchServer, "_process_incoming")()
            and _sets(lambda: _listener.NotificationServerBase, "_allow_requeue")()
        ),
    ),
    Hook(
        "BatchNotificationServer._create_listener, adapter._poll_style_listener.poll",
        "batches fill only while messages queue up; without it each waits batch_timeout",
        False,
        lambda: (
            _has(lambda: BatchServer, "_create_listener")()
            and _sets(_adapter, "_poll_style_listener")()
        ),
    ),
    Hook(
        "AMQPListener.incoming, conn.connection.connection._connection.transport.sock",
        "closes a batch when nothing more is already there; without them each message "
        "of a burst gets a short window and a deletion may wait for its batch (a few ms)",
        False,
        lambda: (
            _sets(_amqp_listener, "incoming", "conn")()
            and _has(_kombu_connection, "_connection")()
            and _sets(_amqp_transport, "sock", "_read_buffer")()
        ),
    ),
    Hook(
        "adapter._listen_thread, conn.connection.connection.connected",
        "the watchdog and /healthz see the consumer thread and its connection; without "
        "them both report that they cannot see it",
        False,
        lambda: (
            _sets(_adapter, "_listen_thread", "_poll_style_listener")()
            and _sets(_amqp_listener, "conn")()
        ),
    ),
    Hook(
        "impl_rabbit.Connection.declare_consumer, Consumer.queue_arguments",
        "gives a dry run's own queue an expiry and a length limit; without it a dry run "
        "killed uncleanly leaves that queue collecting copies until deleted by hand",
        False,
        lambda: (
            _has(_impl_rabbit, "Connection", "declare_consumer")()
            and _sets(lambda: _impl_rabbit().Consumer, "queue_arguments")()
        ),
    ),
    Hook(
        "kombu Connection.maybe_switch_next, _connection_factory",
        "fails over to the next node of a cluster in about a second; without them a node "
        "that is stopping can be retried for several seconds first (nothing lost)",
        False,
        lambda: (
            _has(_kombu_connection, "maybe_switch_next")()
            and _has(_kombu_connection, "_connection_factory")()
        ),
    ),
    Hook(
        "impl_rabbit.Connection._SSL_PROTOCOLS",
        "--check-config validates ssl_version; without it that check is skipped",
        False,
        _has(_impl_rabbit, "Connection", "_SSL_PROTOCOLS"),
    ),
)


def check(hooks: tuple[Hook, ...] = HOOKS) -> tuple[list[str], list[str]]:
    """``(fatal, warnings)``: one line per missing hook."""
    fatal: list[str] = []
    warnings: list[str] = []
    for hook in hooks:
        line = f"oslo.messaging {version()} has no {hook.name}: it {hook.purpose}"
        try:
            present = hook.present()
        except HookChanged as changed:
            present = False
            line = f"oslo.messaging {version()} changed {hook.name} ({changed}): it {hook.purpose}"
        except Exception:
            present = False
        if not present:
            (fatal if hook.delivery else warnings).append(line)
    return fatal, warnings
