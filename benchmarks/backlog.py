"""Neutron ``port.delete.end`` notifications on the real broker, as neutron sends them.

The queue is declared by oslo.messaging itself (a notification listener with the pool
name is started and stopped once), so its name, arguments and bindings are exactly what
both daemons expect: queue ``<pool>``, bound to ``<exchange>`` with ``<topic>.info``.
Every notification carries its own device_id, ``<run:08x>-0000-4000-8000-<index:012x>``,
so the stand-in's log tells which notification each call was for.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kombu
import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

SAMPLE = (
    Path(__file__).resolve().parent.parent
    / "tests/samples/neutron/k2hr3_osnl__notifications_neutron.json"
)
PUBLISHER_ID = "network.bench.example.com"
EVENT_TYPE = "port.delete.end"


def cuk(run: int, index: int) -> str:
    return f"{run:08x}-0000-4000-8000-{index:012x}"


def parse_cuk(value: str) -> tuple[int, int] | None:
    parts = value.split("-")
    if len(parts) != 5 or parts[1:4] != ["0000", "4000", "8000"]:
        return None
    return int(parts[0], 16), int(parts[4], 16)


def _conf(exchange: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        conf.register_opts(opts, group=group)
    conf([], default_config_files=[], use_env=False)
    conf.set_override("control_exchange", exchange)  # a notifier publishes here
    return conf


class _InfoOnly:
    """An endpoint for ``info`` alone: the binding k2hr3_osnl 1.0.8 makes."""

    def info(self, ctxt: Any, publisher_id: Any, event_type: Any, payload: Any, metadata: Any):
        raise AssertionError("the queue was not empty when it was declared")


class Broker:
    def __init__(self, url: str, exchange: str, topic: str) -> None:
        self.url = url
        self.exchange = exchange
        self.topic = topic
        self.conf = _conf(exchange)
        self.transport = oslo_messaging.get_notification_transport(self.conf, url=url)
        self.notifier = oslo_messaging.Notifier(
            self.transport, publisher_id=PUBLISHER_ID, driver="messagingv2", topics=[topic]
        )
        with SAMPLE.open() as sample:
            self.payload: dict[str, Any] = json.load(sample)["payload"]

    def declare(self, pool: str) -> None:
        target = oslo_messaging.Target(exchange=self.exchange, topic=self.topic)
        listener = oslo_messaging.get_notification_listener(
            self.transport, [target], [_InfoOnly()], executor="threading", pool=pool
        )
        listener.start()
        listener.stop()
        listener.wait()

    def publish(self, run: int, index: int, event_type: str = EVENT_TYPE) -> None:
        payload = copy.deepcopy(self.payload)
        payload["port"]["device_id"] = cuk(run, index)
        self.notifier.info({}, event_type, payload)

    def preload(self, pool: str, run: int, count: int, threads: int = 4) -> float:
        """Publish ``count`` notifications and wait until the queue holds them all."""
        started = time.monotonic()
        share = (count + threads - 1) // threads

        def part(first: int) -> None:
            for index in range(first, min(first + share, count)):
                self.publish(run, index)

        workers = [threading.Thread(target=part, args=(i * share,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wait_until(lambda: self.depth(pool)[0] >= count, 60, f"{count} messages in {pool}")
        self.drop_notifier_queue()
        return time.monotonic() - started

    def drop_notifier_queue(self) -> None:
        """Delete ``<topic>.info``: the Notifier declares it, so that notifications nobody
        listens to are kept, and it would otherwise hold a copy of every one we publish."""
        self.delete(f"{self.topic}.info")

    def depth(self, pool: str) -> tuple[int, int]:
        """(messages ready, consumers) of the pool queue."""
        with kombu.Connection(self.url.replace("rabbit://", "amqp://")) as connection:
            _, messages, consumers = connection.default_channel.queue_declare(
                queue=pool, passive=True
            )
        return messages, consumers

    def delete(self, pool: str) -> None:
        url = self.url.replace("rabbit://", "amqp://")
        # Already gone is fine.
        with kombu.Connection(url) as connection, contextlib.suppress(Exception):
            connection.default_channel.queue_delete(pool)

    def close(self) -> None:
        self.drop_notifier_queue()
        url = self.url.replace("rabbit://", "amqp://")
        with kombu.Connection(url) as connection, contextlib.suppress(Exception):
            connection.default_channel.exchange_delete(self.exchange)
        self.transport.cleanup()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)
