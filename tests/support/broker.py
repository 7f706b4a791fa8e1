"""The real RabbitMQ as a test sees it: its queues, raw publishing, a cuttable proxy."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterable

import kombu

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
#: Every priority the daemon's endpoint subscribes to, hence every routing key it binds.
PRIORITIES = ("audit", "critical", "debug", "error", "info", "sample", "warn")


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
        self._frozen = threading.Event()
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

    def freeze(self) -> None:
        """Stop carrying bytes either way without closing anything: a network split,
        or a frozen VM, that only heartbeats can notice."""
        self._frozen.set()

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
                if self._frozen.is_set():
                    continue  # lost on the way
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
