"""How batches are formed on the real broker (issue 21): a batch takes the messages
already there, and closes, without waiting, as soon as nothing more is.

The socket look goes through the seam (``seam.already_there``), against the installed
oslo.messaging, kombu and amqp: here it must answer "there" while a backlog lasts and
"nothing" once it is read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import oslo_messaging
import pytest
from oslo_config import cfg
from support.broker import Broker
from support.waiting import wait_until

from k2hr3_osnl.rabbit import batching, seam

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(60)]

BACKLOG = 40
BATCH = 32


class Recorder:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.answers: list[bool] = []
        self.lock = threading.Lock()

    def info(self, messages: list[Any]) -> None:
        with self.lock:
            self.batches.append(len(messages))


class Dispatcher(seam.BatchDispatcher):  # type: ignore[misc]
    """oslo.messaging's, with the signature the batch server calls: nothing handed back."""

    def dispatch(self, incoming: list[Any], acknowledge_now: Any = None) -> set[Any]:
        super().dispatch(incoming)
        return set()


def _server(url: str, unique: str, recorder: Recorder) -> Any:
    conf = cfg.ConfigOpts()
    conf([], project="k2hr3-osnl-test")
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    target = oslo_messaging.Target(exchange=unique, topic=unique)

    class Looking(batching.GreedyBatchServer):
        @staticmethod
        def wrap_poll(poll: Any, ready: Callable[[], bool] | None) -> Any:
            assert ready is not None, "the rabbit driver's socket could not be looked at"

            def looked() -> bool:
                answer = ready()
                recorder.answers.append(answer)
                return answer

            return batching.greedy(poll, looked)

    return Looking(
        transport,
        [target],
        Dispatcher([recorder], None),
        executor="threading",
        pool=unique,
        batch_size=BATCH,
        batch_timeout=5.0,
    )


def test_a_backlog_comes_in_batches_and_the_last_closes_when_nothing_is_left(
    rabbitmq: str, unique: str
) -> None:
    first = _server(rabbitmq, unique, Recorder())
    first.start()  # declares the pool queue and its binding
    first.stop()
    first.wait()

    body = b'{"oslo.version": "2.0", "oslo.message": "{\\"event_type\\": \\"x.y\\", '
    body += b'\\"payload\\": {}, \\"priority\\": \\"INFO\\", \\"publisher_id\\": \\"t\\", '
    body += b'\\"message_id\\": \\"m\\", \\"timestamp\\": \\"2026-12-05 00:00:00.0\\"}"}'
    Broker().publish_raw(unique, f"{unique}.info", [body] * BACKLOG)

    recorder = Recorder()
    server = _server(rabbitmq, unique, recorder)
    server.start()
    try:
        wait_until(lambda: sum(recorder.batches) == BACKLOG, 20, "the backlog")
    finally:
        server.stop()
        server.wait()
    # All already there: batches, not one message at a time (the broker sends the
    # backlog as fast as the prefetch lets it, so where a batch splits may vary).
    assert len(recorder.batches) <= 4, recorder.batches
    assert recorder.answers.count(True) >= BACKLOG - 2 * len(recorder.batches)
    # The last batch closed because the socket was empty, not after its 5 s timeout.
    assert recorder.answers[-1] is False
