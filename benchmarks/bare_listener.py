"""Ceiling a: an oslo.messaging notification listener that does nothing with what it gets.

Same broker, queue design (a pool queue), threading executor and prefetch as the daemon,
so what it costs per message is the floor that oslo.messaging and kombu set. With BATCH
0 it is ``get_notification_listener`` (one message per hand-off, as k2hr3_osnl 1.0.8
and the issue's ceiling have it); with BATCH N, ``get_batch_notification_listener`` with
batches of N (as k2hr3-osnl has it). Prints one JSON line: messages/s and CPU ms per
message over the middle 80% of the drain.

    python bare_listener.py URL EXCHANGE TOPIC POOL COUNT [PREFETCH] [THREADS] [BATCH]
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import oslo_messaging  # noqa: E402
import oslo_messaging.opts  # noqa: E402
from oslo_config import cfg  # noqa: E402


class Counter:
    def __init__(self, count: int) -> None:
        self.count = count
        self.seen = 0
        self.marks: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.count_in(1)

    def count_in(self, received: int) -> None:
        with self.lock:
            before = self.seen
            self.seen += received
            seen = self.seen
        for name, share in (("first", 1), ("p10", 0.1), ("p90", 0.9), ("last", 1.0)):
            mark = 1 if name == "first" else int(self.count * share)
            if before < mark <= seen:
                self.marks[name] = (time.time(), time.process_time())
        if seen >= self.count:
            self.done.set()


class BatchCounter(Counter):
    def info(self, messages):  # type: ignore[override]
        self.count_in(len(messages))


def main(
    url: str,
    exchange: str,
    topic: str,
    pool: str,
    count: str,
    prefetch: str = "64",
    threads: str = "64",
    batch: str = "0",
) -> int:
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        conf.register_opts(opts, group=group)
    conf([], default_config_files=[], use_env=False)
    conf.set_override("rabbit_qos_prefetch_count", int(prefetch), group="oslo_messaging_rabbit")
    conf.set_override("executor_thread_pool_size", int(threads))
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    target = oslo_messaging.Target(exchange=exchange, topic=topic)
    if int(batch):
        counter: Counter = BatchCounter(int(count))
        listener = oslo_messaging.get_batch_notification_listener(
            transport,
            [target],
            [counter],
            executor="threading",
            pool=pool,
            batch_size=int(batch),
            batch_timeout=0.005,
        )
    else:
        counter = Counter(int(count))
        listener = oslo_messaging.get_notification_listener(
            transport, [target], [counter], executor="threading", pool=pool
        )
    listener.start()
    counter.done.wait(600)
    (t10, c10), (t90, c90) = counter.marks["p10"], counter.marks["p90"]
    middle = int(counter.count * 0.9) - int(counter.count * 0.1)
    print(
        json.dumps(
            {
                "messages": counter.seen,
                "per_second": middle / (t90 - t10),
                "cpu_ms": 1000 * (c90 - c10) / middle,
                "prefetch": int(prefetch),
                "threads": int(threads),
                "batch": int(batch),
            }
        )
    )
    sys.stdout.flush()
    listener.stop()
    listener.wait()
    transport.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
