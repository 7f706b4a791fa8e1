"""One test's surroundings on the shared broker: names, config files, daemons, clean-up."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from support.broker import PRIORITIES, Broker
from support.daemon import Daemon, write_config
from support.notifiers import Notifiers


class Harness:
    """Names, config files, daemons and clean-up for one test on the shared broker.

    Every exchange, topic and pool name starts with the test's ``unique`` prefix, so
    tests running at the same time (or other people's work on the broker) never see
    each other's messages.
    """

    def __init__(
        self,
        tmp_path: Path,
        unique: str,
        api_url: str,
        transport_url: str,
        durable: bool = False,
        broker_url: str | None = None,
    ) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.tmp_path = tmp_path
        #: Queues and exchanges durable on both sides (publishers and daemon).
        self.durable = durable
        self.unique = unique
        self.api_url = api_url
        self.transport_url = transport_url
        self.neutron = f"{unique}_neutron"
        self.nova = f"{unique}_nova"
        self.notifications = f"{unique}_notifications"
        self.versioned = f"{unique}_versioned_notifications"
        self.pool = f"{unique}_pool"
        self.state_dir = tmp_path / "state"
        # How the test looks at the broker (kombu's amqp:// URL): the shared one unless
        # the test runs a node of its own.
        self.broker = Broker(broker_url) if broker_url else Broker()
        self.notifiers = Notifiers(transport_url, durable)
        self.daemons: list[Daemon] = []
        self.extra_queues: list[str] = []

    @property
    def exchanges(self) -> tuple[str, str]:
        return (self.neutron, self.nova)

    @property
    def topics(self) -> tuple[str, str]:
        return (self.notifications, self.versioned)

    def config(
        self,
        name: str = "k2hr3-osnl",
        *,
        transport_url: str | None = None,
        pool: str | None = None,
        sections: Mapping[str, Mapping[str, object]] | None = None,
    ) -> Path:
        if self.durable:
            rabbit = {
                "amqp_durable_queues": "true",
                **(sections or {}).get("oslo_messaging_rabbit", {}),
            }
            sections = {**(sections or {}), "oslo_messaging_rabbit": rabbit}
        return write_config(
            self.tmp_path / f"{name}.conf",
            transport_url=transport_url or self.transport_url,
            api_url=self.api_url,
            exchanges=self.exchanges,
            topics=self.topics,
            pool=self.pool if pool is None else pool,
            state_dir=self.state_dir,
            log_file=self.tmp_path / f"{name}.log",
            sections=sections,
        )

    def daemon(self, config: Path, queues: Iterable[str] | None = None) -> Daemon:
        log_file = self.tmp_path / f"{config.stem}.log"
        daemon = Daemon(config, log_file, [self.pool] if queues is None else queues, self.broker)
        self.daemons.append(daemon)
        return daemon

    def start(self, **config: Any) -> Daemon:
        """A daemon on a fresh config file, consuming."""
        return self.daemon(self.config(**config)).start()

    def notify(
        self, exchange: str, topic: str, driver: str, note: tuple[str, str, Any], **kwargs: Any
    ) -> None:
        event_type, publisher_id, payload = note
        self.notifiers.notify(exchange, topic, driver, event_type, payload, publisher_id, **kwargs)

    def cli(
        self, config: Path, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``k2hr3-osnl -c CONFIG ARGS...`` to completion (replay, --check-config...)."""
        return subprocess.run(
            [sys.executable, "-m", "k2hr3_osnl", "-c", str(config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.close()
        self.notifiers.close()
        # The pool queue, and the '<topic>.<priority>' queues a Notifier declares.
        queues = [self.pool, *self.extra_queues]
        queues += [f"{topic}.{priority}" for topic in self.topics for priority in PRIORITIES]
        # What reconciling daemons declare: the election's queue, the deliveries' fanout.
        queues.append(f"{self.pool}-reconcile")
        exchanges = [*self.exchanges, f"{self.pool}-delivered"]
        with contextlib.suppress(OSError):
            self.broker.delete(queues, exchanges)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
