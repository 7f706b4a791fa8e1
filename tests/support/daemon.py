"""The real ``k2hr3-osnl`` as a subprocess on the real RabbitMQ, for end-to-end tests.

Unit tests prove the parts; only a separate process, started from a config file like an
operator's, proves the wiring: the config loads, the listener binds what it should,
signals stop it, and the broker's own behaviour (redelivery, restarts) is what it is.

- :func:`write_config` writes a config file;
- :class:`Daemon` starts the process, waits until its queue has a consumer, stops it
  with SIGTERM and returns the exit status; :meth:`Daemon.report` puts its log into an
  assertion message, so a failure shows what the daemon did;
- :class:`Broker` looks at queues and publishes raw bodies (with kombu), and
  :class:`Notifiers` publishes the way nova and neutron do (oslo.messaging's Notifier);
- :func:`wait_until` polls instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import kombu
import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: Every priority the daemon's endpoint subscribes to, hence every routing key it binds.
PRIORITIES = ("audit", "critical", "debug", "error", "info", "sample", "warn")
SAMPLES = Path(__file__).parent / "samples"


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it is truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def write_config(
    path: Path,
    *,
    transport_url: str,
    api_url: str,
    exchanges: Iterable[str],
    topics: Iterable[str],
    pool: str,
    state_dir: Path,
    log_file: Path,
    sections: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """An operator's config file; ``sections`` adds or overrides options."""
    merged: dict[str, dict[str, object]] = {
        "DEFAULT": {
            "debug_level": "debug",
            "libs_debug_level": "warn",
            "log_file": log_file,
        },
        "oslo_messaging_notifications": {
            "transport_url": transport_url,
            "exchange": ", ".join(exchanges),
            "topic": ", ".join(topics),
            "pool": pool,
        },
        "oslo_messaging_rabbit": {
            # Reconnect fast: the broker-restart test waits for it.
            "rabbit_retry_interval": 1,
            "rabbit_retry_backoff": 1,
            "rabbit_interval_max": 2,
        },
        # No /metrics server: the default port may belong to another daemon or test.
        "metrics": {"port": 0},
        "k2hr3": {
            "api_url": api_url,
            "state_dir": state_dir,
            "timeout_seconds": 5,
            "connect_timeout_seconds": 2,
            "retry_interval_seconds": 1,
            "drain_seconds": 10,
        },
    }
    for section, values in (sections or {}).items():
        merged.setdefault(section, {}).update(values)
    lines: list[str] = []
    for section, values in merged.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in values.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class Daemon:
    """One ``k2hr3-osnl`` process. Use :meth:`start` again after :meth:`stop` to restart."""

    def __init__(
        self,
        config: Path,
        log_file: Path,
        queues: Iterable[str],
        broker: Broker | None = None,
        args: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.log_file = log_file
        #: Queues that must have a consumer before the daemon counts as listening.
        self.queues = tuple(queues)
        self.broker = broker or Broker()
        self.args = tuple(args)
        self.output = log_file.with_suffix(".out")
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self, wait: bool = True, timeout: float = 30) -> Daemon:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.output, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "k2hr3_osnl", "-c", str(self.config), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        if wait:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout: float = 30) -> None:
        """Until the daemon says so and RabbitMQ shows its consumer on every queue."""

        def ready() -> bool:
            assert self.alive, self.report("the daemon exited while starting")
            if "k2hr3_osnl.process.service listening" not in self.log():
                return False
            return all(
                (info := self.broker.queue_info(q)) is not None and info[1] > 0 for q in self.queues
            )

        try:
            wait_until(ready, timeout, "the daemon to consume", interval=0.1)
        except AssertionError as error:
            raise AssertionError(self.report(str(error))) from None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status; a daemon still running after ``timeout`` fails."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                self.report(f"still running {timeout:.0f}s after SIGTERM")
            ) from None

    def kill(self) -> None:
        """Teardown: make sure no process of ours outlives its test."""
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def log(self, since_start: bool = True) -> str:
        """The log file (by default only what this run wrote) and anything on stderr."""
        text = ""
        if self.log_file.exists():
            with open(self.log_file, "rb") as source:
                source.seek(self._log_start if since_start else 0)
                text = source.read().decode("utf-8", "replace")
        return text

    def count(self, needle: str) -> int:
        return self.log(since_start=False).count(needle)

    def report(self, what: str, tail: int = 150) -> str:
        """``what``, followed by the end of the daemon's log and output: for assertions."""
        lines = self.log(since_start=False).splitlines()
        out = self.output.read_text("utf-8", "replace") if self.output.exists() else ""
        shown = "\n".join(lines[-tail:])
        return (
            f"{what}\n--- last {min(tail, len(lines))} of {len(lines)} log lines "
            f"({self.log_file}) ---\n{shown}\n--- stdout/stderr ---\n{out[-4000:]}"
        )


class Broker:
    """Looks at and feeds the real RabbitMQ directly, as the daemon's peers would."""

    def __init__(self, url: str = AMQP_URL) -> None:
        self.url = url

    def queue_info(self, name: str) -> tuple[int, int] | None:
        """``(messages ready, consumers)``, or None when the queue does not exist."""
        try:
            with kombu.Connection(self.url, connect_timeout=5) as conn:
                channel = conn.channel()
                try:
                    ok = channel.queue_declare(queue=name, passive=True)
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
        except conn.channel_errors:  # 404 NOT_FOUND closes the channel
            return None
        except OSError:  # the broker is down
            return None
        return ok.message_count, ok.consumer_count

    def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        bodies: Iterable[bytes],
        content_type: str = "application/json",
        content_encoding: str = "utf-8",
    ) -> None:
        """Publish bytes as they are: what a broken or hostile publisher could send."""
        with kombu.Connection(self.url, connect_timeout=5) as conn:
            producer = conn.Producer()
            for body in bodies:
                producer.publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    content_type=content_type,
                    content_encoding=content_encoding,
                    delivery_mode=2,
                    retry=True,
                )

    def drain(self, queue: str) -> list[bytes]:
        """Take every ready message off ``queue`` (to look at what publishers sent)."""
        bodies: list[bytes] = []
        with kombu.Connection(self.url, connect_timeout=5) as conn:
            channel = conn.channel()
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                bodies.append(message.body)
        return bodies

    def delete(self, queues: Iterable[str] = (), exchanges: Iterable[str] = ()) -> None:
        """Remove what a test declared, so that the shared broker does not fill up."""
        with kombu.Connection(self.url, connect_timeout=5) as conn:
            for name in queues:
                with contextlib.suppress(Exception):
                    channel = conn.channel()
                    channel.queue_delete(name)
                    channel.close()
            for name in exchanges:
                with contextlib.suppress(Exception):
                    channel = conn.channel()
                    channel.exchange_delete(name)
                    channel.close()


class Notifiers:
    """oslo.messaging's own Notifier, one transport per exchange, as nova and neutron do.

    A notifier publishes to its transport's default exchange, which is the
    ``control_exchange`` option of the configuration it was built from ("nova" in nova,
    "neutron" in neutron), on routing key ``<topic>.<priority>``. The driver decides the
    body: ``messaging`` is flat, ``messagingv2`` wraps it in ``oslo.message``.
    """

    def __init__(self, transport_url: str, durable: bool = False) -> None:
        self.transport_url = transport_url
        #: ``[oslo_messaging_rabbit] amqp_durable_queues`` of the publishing service.
        self.durable = durable
        self._transports: dict[str, oslo_messaging.Transport] = {}

    def transport(self, exchange: str) -> oslo_messaging.Transport:
        if exchange not in self._transports:
            conf = cfg.ConfigOpts()
            for group, group_opts in oslo_messaging.opts.list_opts():
                conf.register_opts(group_opts, group=group)
            conf([], project="k2hr3-osnl-tests", default_config_files=[], use_env=False)
            conf.set_override("control_exchange", exchange)
            conf.set_override("amqp_durable_queues", self.durable, "oslo_messaging_rabbit")
            self._transports[exchange] = oslo_messaging.get_notification_transport(
                conf, url=self.transport_url
            )
        return self._transports[exchange]

    def notify(
        self,
        exchange: str,
        topic: str,
        driver: str,
        event_type: str,
        payload: Any,
        publisher_id: str,
        priority: str = "info",
    ) -> None:
        notifier = oslo_messaging.Notifier(
            self.transport(exchange),
            publisher_id=publisher_id,
            driver=driver,
            topics=[topic],
            # A failed publish must fail the test, not be logged and forgotten.
            retry=3,
        )
        getattr(notifier, priority)({}, event_type, payload)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.cleanup()
        self._transports.clear()


# Deletion notifications built from the real samples, with a fresh instance UUID each, so
# that every test knows exactly which cuks it expects at K2HR3.


def _sample(relative: str) -> dict[str, Any]:
    return json.loads((SAMPLES / relative).read_text(encoding="utf-8"))


def neutron_port_delete(cuk: str, ips: Iterable[str]) -> tuple[str, str, dict[str, Any]]:
    """``(event_type, publisher_id, payload)`` of neutron's ``port.delete.end``."""
    sample = _sample("neutron/k2hr3_osnl__notifications_neutron.json")
    payload = sample["payload"]
    payload["port"]["device_id"] = cuk
    payload["port"]["fixed_ips"] = [
        {"ip_address": ip, "subnet_id": str(uuid.uuid4())} for ip in ips
    ]
    return sample["event_type"], sample["publisher_id"], payload


def nova_legacy_delete(cuk: str) -> tuple[str, str, dict[str, Any]]:
    """legacy nova's ``compute.instance.delete.end`` (the captured 2017 message)."""
    sample = _sample("wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json")
    sample["payload"]["instance_id"] = cuk
    return sample["event_type"], sample["publisher_id"], sample["payload"]


def nova_versioned(name: str, cuk: str) -> tuple[str, str, dict[str, Any]]:
    """A resolved nova versioned sample, e.g. ``instance-delete-end``."""
    sample = _sample(f"nova_versioned/resolved/{name}.json")
    sample["payload"]["nova_object.data"]["uuid"] = cuk
    return sample["event_type"], sample["publisher_id"], sample["payload"]


def nova_versioned_delete(cuk: str) -> tuple[str, str, dict[str, Any]]:
    return nova_versioned("instance-delete-end", cuk)


def wire_body(event_type: str, publisher_id: str, payload: Any, v2: bool = True) -> bytes:
    """A body like the ``messaging``/``messagingv2`` drivers send, with a new message_id."""
    message = {
        "message_id": str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": "INFO",
        "payload": payload,
        "timestamp": "2026-01-01 00:00:00.000000",
        "_unique_id": uuid.uuid4().hex,
    }
    if not v2:
        return json.dumps(message).encode()
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()


def queue_counts(name: str) -> tuple[int, int, int] | None:
    """``(ready, unacknowledged, consumers)`` from ``rabbitmqctl``; kombu sees no unacked."""
    result = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_queues",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "consumers",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0] == name:
            return int(fields[1]), int(fields[2]), int(fields[3])
    return None


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
        self.broker = Broker()
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
            daemon.kill()
        self.notifiers.close()
        # The pool queue, and the '<topic>.<priority>' queues a Notifier declares.
        queues = [self.pool, *self.extra_queues]
        queues += [f"{topic}.{priority}" for topic in self.topics for priority in PRIORITIES]
        with contextlib.suppress(OSError):
            self.broker.delete(queues, self.exchanges)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TcpProxy:
    """A TCP forwarder to RabbitMQ that can be down, come up, or cut every connection.

    The daemon reaches the broker through it, so a test can make RabbitMQ unreachable,
    or drop the daemon's connection, without touching the broker everyone else uses.
    """

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.target = target
        self.port = _free_port()
        self._server: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> TcpProxy:
        server = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a dying broker would."""
        if self._server is not None:
            # close() alone leaves a thread blocked in accept() still accepting.
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        self.cut()

    def cut(self) -> None:
        """Drop every open connection; new ones are still accepted."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
