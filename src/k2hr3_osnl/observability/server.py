"""One small HTTP server for ``/metrics`` and ``/healthz``.

prometheus_client's WSGI app behind the standard library's threaded ``wsgiref``
server, with ``/healthz`` beside it. It is optional by design: a port already in use is
logged as a warning, and the daemon consumes anyway. It bounds what slow or hostile
clients can hold, since it may listen beyond loopback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from k2hr3_osnl.observability.health import Health

LOG = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_app(registry: CollectorRegistry, health: Health) -> WSGIApp:
    """``/metrics`` (and ``/``) from the registry, ``/healthz`` from ``health``."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path in ("/metrics", "/"):
            return metrics_app(environ, start_response)
        if path == "/healthz":
            status = health.status()
            body = json.dumps(status.to_json(), indent=1).encode() + b"\n"
            start_response(
                "200 OK" if status.ok else "503 Service Unavailable",
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Cache-Control", "no-store"),
                ],
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


#: Connections served at once. A scraper and a health check need one each: this bounds
#: the threads that slow or hostile clients can hold.
MAX_CONNECTIONS = 16
#: The longest one connection may last, however slowly its client sends.
CONNECTION_SECONDS = 30.0
#: How long a new connection waits for the slot of an idle one that was closed for it.
EVICTION_WAIT = 2.0


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Connections over the limit are accepted and dealt with at once, not left to wait
    # for a SYN retry in a listen backlog of 5.
    request_queue_size = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._lock = threading.Lock()
        #: Open connections, oldest first; True once its request has been read.
        self._open: dict[Any, bool] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        # When every slot is taken, connections that never sent a request (idle, or
        # trickling) must not shut out the scraper and the health check: the oldest of
        # them makes room. Only when all are being answered is this one closed.
        if not self._slots.acquire(blocking=False) and not (
            self._evict_idle() and self._slots.acquire(timeout=EVICTION_WAIT)
        ):
            LOG.debug("metrics http: %d requests in progress, closing one", MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        with self._lock:
            self._open[request] = False
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def _evict_idle(self) -> bool:
        with self._lock:
            idle = next((r for r, busy in self._open.items() if not busy), None)
        if idle is None:
            return False
        LOG.debug(
            "metrics http: %d connections already, closing the oldest idle one", MAX_CONNECTIONS
        )
        _cut(idle)
        return True

    def request_read(self, request: Any) -> None:
        """The connection's request is in: it is served, not evicted."""
        with self._lock:
            if request in self._open:
                self._open[request] = True

    def _forget(self, request: Any) -> None:
        with self._lock:
            known = self._open.pop(request, None) is not None
        if known:
            self._slots.release()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Each read has the handler's timeout; this ends a client that trickles bytes.
        cut = threading.Timer(CONNECTION_SECONDS, _cut, (request,))
        cut.daemon = True
        cut.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            cut.cancel()
            self._forget(request)


def _cut(request: socket.socket) -> None:
    with contextlib.suppress(OSError):
        request.shutdown(socket.SHUT_RDWR)


class _RequestHandler(WSGIRequestHandler):
    #: A client that stops talking does not keep a thread forever.
    timeout = 10

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if parsed:
            self.server.request_read(self.request)  # type: ignore[attr-defined]
        return parsed

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("metrics http: %s %s", self.address_string(), format % args)


class MetricsServer:
    """The running HTTP server; :meth:`close` stops it.

    Its thread sleeps in ``select`` until a client connects or :meth:`close` wakes it:
    ``serve_forever`` would wake every poll interval to look for a shutdown request,
    most of an idle daemon's CPU (docs/benchmarks.md, issue 21).
    """

    def __init__(self, server: WSGIServer) -> None:
        self.server = server
        # handle_request() below is called only once the socket is readable: it must not
        # wait again, and never calls handle_timeout for a client that already left.
        server.timeout = 0
        self._wake_read, self._wake_write = socket.socketpair()
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.server, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self._closing.is_set():
                ready = selector.select()
                if self._closing.is_set():
                    break
                if any(key.fileobj is self.server for key, _ in ready):
                    self.server.handle_request()  # accept, then a thread of its own

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=10)
        self.server.server_close()
        self._wake_read.close()
        self._wake_write.close()


def serve(address: str | None, port: int | None, app: WSGIApp) -> MetricsServer | None:
    """Listen on ``address:port``; None when turned off (empty address or port 0) or
    when the port cannot be had, which is a warning, never a reason to stop."""
    if not address or not port:
        LOG.info("metrics and /healthz turned off ([metrics] bind_address or port empty)")
        return None
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsHTTPServer", (_Server,), {"address_family": family})
        server = make_server(address, port, app, server_class, _RequestHandler)
    except (OSError, UnicodeError) as error:
        LOG.warning(
            "metrics and /healthz not served: cannot listen on %s:%s (%s); "
            "consuming anyway. Set [metrics] port to a free port, or 0 to turn them off.",
            address,
            port,
            getattr(error, "strerror", None) or error,
        )
        return None
    running = MetricsServer(server)
    shown = f"[{address}]" if ":" in address else address
    LOG.info("metrics on http://%s:%d/metrics, health on /healthz", shown, running.port)
    return running
