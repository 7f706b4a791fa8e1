"""A real HTTP server that answers like K2HR3's Role API delete, and can fail on command.

It checks each request the way K2HR3 would (path, ``cuk``, ``host`` JSON list,
``extra=openstack-auto-v1``) and records it, so tests assert on what reached "K2HR3".
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROLE_PATH = "/v1/role"


@dataclass(frozen=True)
class Call:
    cuk: str
    host: tuple[str, ...] | None  # None: no host parameter, i.e. every IP of the cuk
    status: int
    at: float
    query: str


class FakeK2HR3:
    """Start with :meth:`start`; ``status`` and ``latency`` may change at any time.

    With ``ssl_context`` (a server-side context) it speaks HTTPS; failed handshakes are
    recorded in :attr:`tls_errors`.
    """

    def __init__(
        self, status: int = 204, latency: float = 0.0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.status = status
        self.latency = latency
        #: Per-cuk answers that override ``status``: mixed outcomes within one batch.
        self.status_for: dict[str, int] = {}
        #: Requests accepted per second at most; beyond, 429 with ``Retry-After`` (the
        #: seconds until a slot frees up, rounded up), as a rate-limiting proxy answers.
        self.rate: float | None = None
        #: ``Retry-After`` sent with every answer that is not 204 (seconds or a date).
        self.retry_after: str | None = None
        self._accepted: collections.deque[float] = collections.deque()
        self.ssl_context = ssl_context
        self.tls_errors: list[str] = []
        self.calls: list[Call] = []
        self.requests = 0  # every request, including refused or malformed ones
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}{ROLE_PATH}"

    def start(self) -> FakeK2HR3:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_DELETE(self) -> None:
                fake._handle(self)

            def setup(self) -> None:
                if fake.ssl_context is not None:
                    # The handshake runs here, in this connection's thread.
                    try:
                        self.request = fake.ssl_context.wrap_socket(self.request, server_side=True)
                    except (ssl.SSLError, OSError) as error:
                        with fake._lock:
                            fake.tls_errors.append(str(error))
                        raise
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def log_message(self, *args: object) -> None:
                pass

        server = _QuietServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        # A short poll interval: stop() waits for the loop to notice.
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the listening socket: connections are refused until :meth:`start`.

        Open keep-alive connections are cut too; otherwise a client with a pooled
        connection would still be served by a K2HR3 that is supposed to be gone.
        """
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def deleted(self) -> list[tuple[str, tuple[str, ...] | None]]:
        with self._lock:
            return [(c.cuk, c.host) for c in self.calls if c.status == 204]

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.deleted()) >= count:
                return True
            time.sleep(0.05)
        return False

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests += 1
        if self.latency:
            time.sleep(self.latency)
        url = urllib.parse.urlsplit(request.path)
        status, cuk, host = self._judge(url)
        retry_after = self.retry_after
        with self._lock:
            if status == 204 and self.rate is not None:
                status, retry_after = self._limit(time.monotonic())
            self.calls.append(Call(cuk, host, status, time.monotonic(), url.query))
        body = b"" if status == 204 else json.dumps({"result": False, "message": "err"}).encode()
        request.send_response(status)
        if status != 204 and retry_after is not None:
            request.send_header("Retry-After", retry_after)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _limit(self, now: float) -> tuple[int, str | None]:
        """204 within the rate (one second's window), else 429 and when to come back."""
        assert self.rate is not None
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        if len(self._accepted) < self.rate:
            self._accepted.append(now)
            return 204, None
        return 429, str(max(1, math.ceil(self._accepted[0] + 1.0 - now)))

    def _judge(self, url: urllib.parse.SplitResult) -> tuple[int, str, tuple[str, ...] | None]:
        if url.path != ROLE_PATH:
            return 404, "", None
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        cuk = query.get("cuk", [""])[0]
        host: tuple[str, ...] | None = None
        if "host" in query:
            try:
                parsed = json.loads(query["host"][0])
            except ValueError:
                return 400, cuk, None
            if not isinstance(parsed, list) or not all(isinstance(h, str) for h in parsed):
                return 400, cuk, None
            host = tuple(parsed)
        if not cuk or query.get("extra") != ["openstack-auto-v1"]:
            return 400, cuk, host
        return self.status_for.get(cuk, self.status), cuk, host


class _QuietServer(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a batch of concurrent calls would see
    # some connections wait for a SYN retry (a second), which no real K2HR3 does.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A refused TLS handshake is recorded in tls_errors; anything else is printed.
        if not isinstance(sys.exc_info()[1], ssl.SSLError):
            super().handle_error(request, client_address)
