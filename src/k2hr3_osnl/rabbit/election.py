"""Which daemon of a pool reconciles: the one holding the pool's token on RabbitMQ.

Every daemon with ``[reconcile] enabled`` (every worker too; never a dry run) is a
candidate. The lock is a **token**, one message on the queue ``<pool>-reconcile``,
held unacknowledged on a channel with prefetch 1: RabbitMQ gives an unacknowledged
message to one consumer at a time, and gives it back to the queue the moment that
consumer's connection or channel closes. Single active consumer on the queue is not
the lock (AMQP 0-9-1 never tells a consumer it became active); it keeps the token with
one holder while it lives, makes extra tokens visible (they wait in the queue, where
the holder sweeps them up with ``basic.get``) and decides who mints a lost token:

- **Minting.** A candidate that holds nothing publishes a small *probe* every few
  seconds (it expires by itself). Probes reach only the active consumer. A candidate
  that receives its own probe while holding no token is the active consumer and there
  is no token anywhere before it: it mints one, seeded with its local checkpoint file.
- **Handing on.** A holder that finishes a pass publishes the next token (with the new
  checkpoint, :mod:`k2hr3_osnl.core.leadership`) and then acknowledges the one it
  held; single active consumer delivers it back to the holder. Publish first: a holder
  cut off in between leaves two tokens, never none, and the next holder merges them.
- **consumer_timeout.** RabbitMQ closes a channel that holds a delivery longer than
  ``consumer_timeout`` (30 minutes by default): the holder hands the token on to
  itself every :data:`REFRESH` seconds, whatever the interval. A channel closed anyway
  (a ``consumer_timeout`` set lower) names its timeout: from then on the token is
  handed on at half of it, and the connection is made again (the token went back to
  the queue).
- **Losing the broker.** AMQP heartbeats every :data:`HEARTBEAT` seconds: a holder
  whose broker vanished (a split, a dead node) stops being the holder within
  ``2 x HEARTBEAT`` plus a tick, under 10 s, and RabbitMQ requeues the token for
  another candidate once it notices too. During that window two passes may overlap;
  deletions are idempotent, and the abandoned pass is counted.

Everything runs on one thread of its own that owns the connection (py-amqp is not
thread-safe); the reconciler's questions read state, and its "the pass ended" is
handed to that thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import amqp
import kombu

from k2hr3_osnl.core import leadership
from k2hr3_osnl.core.leadership import Token
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.rabbit import refusals

LOG = logging.getLogger(__name__)

SUFFIX = "-reconcile"
#: AMQP heartbeat: a lost broker is noticed within twice this, plus a tick.
HEARTBEAT = 3
#: The longest wait for the broker in one go: how late a request is served.
TICK = 0.5
#: Seconds between a candidate's probes while it holds nothing; a probe expires after two.
PROBE_EVERY = 3.0
#: Seconds between sweeps of extra tokens and stale probes by the holder.
SWEEP_EVERY = 5.0
#: The holder hands the token on to itself this often, far below RabbitMQ's default
#: consumer_timeout (30 minutes), so a long interval never gets the channel closed.
REFRESH = 300.0
#: How long the holder waits for its own handed-on token before it counts as lost.
HANDOVER = 10.0
#: Pause before connecting again after the broker was lost, or refused us.
RECONNECT = 1.0
REFUSED = 30.0

Connect = Callable[[int], kombu.Connection]
#: How RabbitMQ says that a delivery was held longer than its consumer_timeout.
_CONSUMER_TIMEOUT = re.compile(
    r"acknowledgement on channel \d+ timed out\. Timeout value used: (\d+)"
)


class Companion(Protocol):
    """Something else of the fleet's that lives on the election's connection and thread."""

    def attach(self, connection: kombu.Connection) -> None: ...

    def detach(self) -> None: ...

    def tick(self) -> None: ...


def identity() -> str:
    """This process, as the token and the logs name it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Election:
    """A candidate for the pool's token; :class:`~k2hr3_osnl.core.leadership.Leadership`."""

    def __init__(
        self,
        connect: Connect,
        queue_name: str,
        *,
        hosts: int = 1,
        queue_arguments: dict[str, Any] | None = None,
        durable: bool = False,
        seed: Callable[[], float | None] = lambda: None,
        observer: Observer | None = None,
        me: str | None = None,
        clock: Callable[[], float] = time.time,
        companions: tuple[Companion, ...] = (),
    ) -> None:
        self.companions = companions
        #: Seconds between hand-ons to itself; lowered to what the broker's timeout needs.
        self.refresh = REFRESH
        self.connect = connect
        self.queue = queue_name
        self.hosts = hosts
        self.arguments = {"x-single-active-consumer": True, **(queue_arguments or {})}
        self.durable = durable
        self.seed = seed
        self.observer = observer or Observer()
        self.me = me or identity()
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._requests: queue.Queue[tuple[Callable[[], bool], concurrent.futures.Future[bool]]]
        self._requests = queue.Queue()
        self._thread: threading.Thread | None = None
        # State of the election thread (read by others under the lock).
        self._token: Token | None = None
        self._held: Any = None  # the delivery we hold unacknowledged
        self._handover_until: float | None = None  # handed on, waiting for it back
        self._minting_until = 0.0
        self._consumer: Any = None
        self._side: Any = None
        self._connection: kombu.Connection | None = None
        self._was_leading: bool | None = None  # None: not said yet
        self._failing: str | None = None

    # -- what the reconciler asks (any thread) -------------------------------------

    def leading(self) -> bool:
        with self._lock:
            return self._leading()

    def _leading(self) -> bool:
        if self._held is not None or self._alone:
            return True
        return self._handover_until is not None and time.monotonic() < self._handover_until

    def may_run(self, interval: float) -> bool:
        """A new holder passes at once: the token may have waited while nobody held it
        (the fleet was down, or its holder stopped), and that time must be caught up."""
        with self._lock:
            token = self._token
            if self._alone:
                token = Token(passed_at=self._alone_passed)
            elif not self._leading() or token is None:
                return False
            elif self._new:
                return True
        return leadership.due(token, self._clock(), interval)

    def checkpoint(self) -> float | None:
        with self._lock:
            if self._alone:
                return self.seed()  # this node's own file, as without an election
            return self._token.checkpoint if self._token is not None else None

    def ended(self, checkpoint: float | None) -> bool:
        """Hand the token on with the pass's end; False if it was lost (nothing moved)."""
        ended = self._clock()
        with self._lock:
            if self._alone:
                self._alone_passed = ended
                return True
        # A token handed on a moment ago (the last pass, a refresh) is on its way back.
        deadline = time.monotonic() + HANDOVER
        while time.monotonic() < deadline:
            with self._lock:
                if self._held is not None or not self._leading():
                    break
            time.sleep(0.05)

        def hand_on() -> bool:
            if self._held is None or self._token is None:
                return False
            self._new = False
            self._hand_on(self._token.after_pass(ended, checkpoint, self.me))
            return True

        return self._ask(hand_on)

    def _ask(self, request: Callable[[], bool], timeout: float = 3 * HEARTBEAT + 5) -> bool:
        if self._thread is None or not self._thread.is_alive():
            return False
        future: concurrent.futures.Future[bool] = concurrent.futures.Future()
        self._requests.put((request, future))
        try:
            return future.result(timeout)
        except Exception:
            return False

    # -- life ------------------------------------------------------------------------

    def start(self) -> Election:
        self._thread = threading.Thread(target=self._run, name="reconcile-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5) -> None:
        """Leave the election: the token goes back to the queue for another candidate."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            connection = self.connect(attempt)
            pause = RECONNECT
            attempt = (attempt + 1) % max(1, self.hosts)
            try:
                connection.connect()
                self._connection = connection
                self._serve(connection)
            except Exception as error:  # anything from the broker: drop the token, retry
                pause = self._lost(str(error) or repr(error))
            finally:
                self._drop()
                self._connection = None
                with contextlib.suppress(Exception):  # already broken
                    connection.release()
            self._stop.wait(pause)
        self._fail_requests()

    def _serve(self, connection: kombu.Connection) -> None:
        consumer = connection.channel()
        consumer.basic_qos(0, 1, False)
        consumer.queue_declare(
            self.queue, durable=self.durable, auto_delete=False, arguments=self.arguments
        )
        side = connection.channel()
        side.confirm_select()
        self._consumer, self._side = consumer, side
        consumer.basic_consume(self.queue, callback=self._deliver)
        if self._alone:
            LOG.info(
                "reconciler election: RabbitMQ accepts the election now; leaving "
                "reconciliation alone for it"
            )
            with self._lock:
                self._alone = False
        for companion in self.companions:
            companion.attach(connection)
        if self._failing is not None:
            LOG.info("reconciler election: RabbitMQ reachable again")
            self._failing = None
        LOG.debug("reconciler election: %s is a candidate on queue %r", self.me, self.queue)
        if self._held is None:  # the token may have come already, while consuming began
            self._set_leading(False, "a candidate for the pool's token")
        next_probe = next_sweep = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=TICK)
            connection.heartbeat_check()
            self._serve_requests()
            for companion in self.companions:
                companion.tick()
            now = time.monotonic()
            with self._lock:
                held, handover = self._held, self._handover_until
            if handover is not None and now >= handover and held is None:
                self._set_leading(False, "its handed-on token did not come back")
                with self._lock:
                    self._handover_until = None
            if held is None and now >= next_probe and handover is None:
                side.basic_publish(
                    amqp.Message(
                        leadership.probe(self.me), expiration=str(int(2000 * PROBE_EVERY))
                    ),
                    exchange="",
                    routing_key=self.queue,
                )
                next_probe = now + PROBE_EVERY
            if held is not None and now >= next_sweep:
                self._sweep(side)
                next_sweep = now + SWEEP_EVERY
            if held is not None and now - self._held_since >= self.refresh and self._token:
                self._hand_on(self._token)

    def _deliver(self, message: Any) -> None:
        found = leadership.decode(message.body)
        if isinstance(found, Token):
            with self._lock:
                if self._held is not None:  # prefetch 1 makes this impossible; be safe
                    self._token = (self._token or found).merged(found)
                    self._consumer.basic_ack(message.delivery_tag)
                    return
                handed_on = self._handover_until is not None
                # After a hand-on, what arrives may be an extra token that waited ahead
                # of ours: keep what both knew (the later checkpoint).
                self._held = message
                self._token = (self._token or found).merged(found) if handed_on else found
                self._handover_until = None
                self._minting_until = 0.0
            self._held_since = time.monotonic()
            if not handed_on:
                self._new = True
                redelivered = bool(message.delivery_info.get("redelivered"))
                self._set_leading(
                    True,
                    f"took the token over from {found.holder or 'nobody'}"
                    if redelivered
                    else f"got the token (last written by {found.holder or 'nobody'})",
                )
            return
        self._consumer.basic_ack(message.delivery_tag)
        if found == self.me and self._held is None and time.monotonic() >= self._minting_until:
            # Our own probe reached us: we are the active consumer and no token is ahead.
            token = Token(checkpoint=self.seed(), holder=self.me)
            self._publish(self._side, token)
            self._minting_until = time.monotonic() + HANDOVER
            LOG.info(
                "reconciler election: no token on queue %r; minted one (checkpoint %s)",
                self.queue,
                "from this node's file" if token.checkpoint is not None else "none yet",
            )

    def _hand_on(self, token: Token) -> None:
        """Publish the next token, then acknowledge the held one (never none left)."""
        self._publish(self._side, token)
        with self._lock:
            held = self._held
            self._token = token
            self._held = None
            self._handover_until = time.monotonic() + HANDOVER
        self._consumer.basic_ack(held.delivery_tag)

    def _publish(self, channel: Any, token: Token) -> None:
        channel.basic_publish(
            amqp.Message(token.encode(), delivery_mode=2, content_type="application/json"),
            exchange="",
            routing_key=self.queue,
        )

    def _sweep(self, side: Any) -> None:
        """Remove what waits behind the held token: others' probes and extra tokens.

        What an extra token knew goes into the held one, handed on at once: acknowledged,
        the extra token is gone, and its checkpoint must not be only in memory.
        """
        if self.arguments.get("x-queue-type") == "quorum":
            # RabbitMQ refuses basic.get on a quorum queue with single active consumer
            # (405 RESOURCE_LOCKED, and the channel closes): what waits there comes to
            # the holder through its own consumer instead, and is merged on arrival.
            return
        merged = False
        for _ in range(1000):
            message = side.basic_get(self.queue, no_ack=False)
            if message is None:
                break
            found = leadership.decode(message.body)
            if isinstance(found, Token):
                with self._lock:
                    self._token = (self._token or found).merged(found)
                LOG.warning(
                    "reconciler election: removed an extra token (written by %s); "
                    "kept the later checkpoint of the two",
                    found.holder or "nobody",
                )
                merged = True
            side.basic_ack(message.delivery_tag)
        if merged and self._held is not None and self._token is not None:
            self._hand_on(self._token)

    def _serve_requests(self) -> None:
        while True:
            try:
                request, future = self._requests.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(request())
            except Exception as error:
                future.set_result(False)
                raise error

    def _fail_requests(self) -> None:
        while True:
            try:
                _, future = self._requests.get_nowait()
            except queue.Empty:
                return
            future.set_result(False)

    def _drop(self) -> None:
        for companion in self.companions:
            companion.detach()
        with self._lock:
            self._held = None
            self._handover_until = None
            self._consumer = self._side = None
            alone = self._alone
        if not alone:
            self._set_leading(False, "lost the broker")

    def _lost(self, detail: str) -> float:
        """Say it once per streak; the pause before the next try."""
        self._fail_requests()
        if self._stop.is_set():
            return 0
        timeout = _CONSUMER_TIMEOUT.search(detail)
        if timeout is not None:
            refresh = max(1.0, int(timeout[1]) / 2000)
            if refresh < self.refresh:
                self.refresh = refresh
                LOG.warning(
                    "reconciler election: RabbitMQ's consumer_timeout is %s ms, which closed "
                    "the channel holding the token; handing it on every %.0fs from now on",
                    timeout[1],
                    refresh,
                )
                return 0
        # A refusal (permissions, a queue declared otherwise) needs an operator: no
        # need to knock every second. A lost connection is retried at once.
        hint = refusals.explain(detail)
        pause = REFUSED if hint else RECONNECT
        if hint:
            # No election to take part in: the safety net must not vanish with it.
            with self._lock:
                self._alone = True
            self._set_leading(True, "", quiet=True)  # the error below says it
        if self._failing != (hint or "lost"):
            if hint:
                LOG.error(
                    "reconciler election: RabbitMQ refused k2hr3-osnl: %s; until that is "
                    "fixed this process reconciles alone, from its own checkpoint file, "
                    "as if it were the only gateway (retrying every %.0fs)",
                    hint,
                    pause,
                )
            else:
                LOG.warning(
                    "reconciler election: RabbitMQ connection failed (%s); this process "
                    "does not reconcile until it is back, retrying every %.0fs",
                    detail,
                    pause,
                )
        self._failing = hint or "lost"
        return pause

    def _set_leading(self, leading: bool, why: str, quiet: bool = False) -> None:
        if leading == self._was_leading:
            return
        said, self._was_leading = self._was_leading, leading
        if quiet or (said is None and not leading):
            pass  # a candidate from the start: nothing to tell but the observer
        elif leading:
            LOG.info("reconciler election: %s reconciles for the pool now: %s", self.me, why)
        elif not self._stop.is_set():
            LOG.warning("reconciler election: %s no longer reconciles: %s", self.me, why)
        self.observer.reconcile_leading(leading)

    _held_since = 0.0
    _new = False  # got the token from the queue, not back from itself: no pass yet
    _alone = False  # RabbitMQ refused the election: reconciling as the only gateway
    _alone_passed: float | None = None
