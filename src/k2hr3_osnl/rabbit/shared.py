"""What any process of the pool deleted, told to every candidate for the reconciler.

A reconciliation pass must not count as missed (nor send again) a deletion that another
node or worker delivered: the bus did its job. Each process remembers what its own
handler deleted whole (:class:`~k2hr3_osnl.core.delivered.DeletedCuks`); this adds what
the others did. Every candidate publishes the cuks its handler deleted whole, at most
one message per :data:`~k2hr3_osnl.rabbit.election.TICK`, on the fanout exchange
``<pool>-delivered``, and reads everyone's from a queue of its own bound to it (gone
with its connection; bounded by ``x-max-length``).

Why a fanout and not the token: every process delivers, only the holder can write the
token, and the token's size would grow with the memory window (50,000 cuks). A cuk
that reaches the holder after its pass has found it (a second or so) costs one more
call and is counted missed once; deletes are idempotent.

It runs on the election's connection and thread (:class:`Companion`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import Any

import amqp

from k2hr3_osnl.core.delivered import DeletedCuks
from k2hr3_osnl.core.observer import Observer

LOG = logging.getLogger(__name__)

SUFFIX = "-delivered"
#: Cuks in one message, and cuks waiting to be told while the broker is away.
BATCH = 1000
WAITING = 10_000
#: Messages a reader's queue keeps when it falls behind: newest kept.
QUEUE_LENGTH = 1000


class SharedDeliveries(Observer):
    """An observer of this process's handler and a reader of everyone else's."""

    def __init__(self, exchange: str, memory: DeletedCuks, me: str, durable: bool) -> None:
        self.exchange = exchange
        self.memory = memory
        self.me = me
        self.durable = durable
        self._pending: deque[str] = deque(maxlen=WAITING)
        self._lock = threading.Lock()
        self._channel: Any = None
        self.received = 0

    # The handler's side (its threads).

    def forgot(self, cuk: str) -> None:
        with self._lock:
            self._pending.append(cuk)

    # The election thread's side.

    def attach(self, connection: Any) -> None:
        channel = connection.channel()
        channel.exchange_declare(self.exchange, "fanout", durable=self.durable, auto_delete=False)
        declared = channel.queue_declare(
            "", exclusive=True, auto_delete=True, arguments={"x-max-length": QUEUE_LENGTH}
        )
        channel.queue_bind(declared.queue, self.exchange)
        channel.basic_consume(declared.queue, callback=self._receive, no_ack=True)
        self._channel = channel

    def detach(self) -> None:
        self._channel = None

    def tick(self) -> None:
        channel = self._channel
        if channel is None:
            return
        while True:
            with self._lock:
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
            if not batch:
                return
            body = json.dumps({"from": self.me, "cuks": batch}).encode()
            try:
                channel.basic_publish(amqp.Message(body), exchange=self.exchange, routing_key="")
            except Exception:
                with self._lock:  # told after the reconnection instead
                    self._pending.extendleft(reversed(batch))
                raise

    def _receive(self, message: Any) -> None:
        try:
            data = json.loads(message.body)
            cuks = data["cuks"] if data.get("from") != self.me else []
        except (ValueError, TypeError, KeyError, AttributeError):
            LOG.debug("ignored a message on %r that is not ours", self.exchange)
            return
        for cuk in cuks if isinstance(cuks, list) else []:
            if isinstance(cuk, str):
                self.memory.add(cuk)
                self.received += 1
