"""How many connections the K2HR3 client opens at once (issue 21).

A batch's calls go out together. K2HR3 often runs behind a short listen backlog (5 is
common): every connection the client opens beyond what that queue holds loses its SYN,
and waits a second for the kernel to send it again. So the client opens at most
``FLOOR`` new connections until K2HR3 has answered on them, more as K2HR3 shows that it
takes them (:mod:`k2hr3_osnl.k2hr3.openings`); connections it keeps alive are reused
without waiting.

The server here is a real socket that accepts nothing for a while, so every connection
the client opened in that time sits in its accept queue, where it can be counted.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from k2hr3_osnl.core.answers import Outcome
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.k2hr3.openings import FLOOR

CALLS = 32


class SlowToAccept:
    """Listens with a large backlog and accepts nothing for ``hold`` seconds; then counts
    the connections queued at that moment and answers 204 to every request, each after
    ``latency`` seconds, counting how many requests it ever had in hand at once."""

    def __init__(self, hold: float, latency: float = 0.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.hold = hold
        self.queued_at_first_accept = 0
        self.answered = 0
        self.latency = latency
        self.in_hand = 0
        self.most_in_hand = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/role"

    def start(self) -> SlowToAccept:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        if self._stop.wait(self.hold):
            return  # stopped before it accepted anything
        self.sock.setblocking(False)
        queued: list[socket.socket] = []
        while True:
            try:
                queued.append(self.sock.accept()[0])
            except BlockingIOError:
                break
        # Counted before any is answered: no answer, no new connection of the client's.
        self.queued_at_first_accept = len(queued)
        for conn in queued:
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(10)
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                with self._lock:
                    self.in_hand += 1
                    self.most_in_hand = max(self.most_in_hand, self.in_hand)
                self._stop.wait(self.latency)
                with self._lock:
                    self.in_hand -= 1
                # Counted before it is sent: the client may have read it (and the test
                # counted) before this thread runs again.
                with self._lock:
                    self.answered += 1
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


@pytest.fixture
def k2hr3() -> Iterator[SlowToAccept]:
    server = SlowToAccept(hold=1.0).start()
    yield server
    server.stop()


def test_a_batch_opens_only_a_few_connections_until_k2hr3_answers_on_them(
    k2hr3: SlowToAccept,
) -> None:
    client = RoleClient(k2hr3.url, connect_timeout=5, read_timeout=10)
    try:
        calls = [(f"12345678-1234-5678-1234-{i:012x}", ("10.0.0.1",)) for i in range(CALLS)]
        answers = client.delete_many(calls)
        assert [a.outcome for a in answers] == [Outcome.DELETED] * CALLS
        # Every call was answered, yet no more than FLOOR connections ever waited in
        # K2HR3's accept queue: a listen backlog of 5 loses none of them.
        assert 1 <= k2hr3.queued_at_first_accept <= FLOOR
        assert FLOOR < 5
        assert k2hr3.answered == CALLS

        # Kept-alive connections are reused at once, without the gate.
        again = client.delete_many(calls)
        assert [a.outcome for a in again] == [Outcome.DELETED] * CALLS
    finally:
        client.close()


def test_once_k2hr3_answers_on_them_more_connections_open_at_once() -> None:
    """A K2HR3 that takes connections at once and answers in 50 ms: each answered
    connection lets one more open, so the client soon has as many as the calls need
    (with a fixed four, a batch of 128 would take 32 round trips)."""
    server = SlowToAccept(hold=0.0, latency=0.05).start()
    client = RoleClient(server.url, connect_timeout=5, read_timeout=10, pool_size=128)
    try:
        calls = [(f"12345678-1234-5678-1234-{i:012x}", ("10.0.0.1",)) for i in range(128)]
        answers = client.delete_many(calls)
        assert [a.outcome for a in answers] == [Outcome.DELETED] * 128
        # Every call waited for a new connection (none was open), so the requests K2HR3
        # had in hand at once are the gate's window: rounds of 4, 8, 16, 32, then the
        # remaining 68, well past the floor.
        assert server.most_in_hand >= 32, server.most_in_hand
    finally:
        client.close()
        server.stop()


def test_a_client_is_ready_to_send_when_built(k2hr3: SlowToAccept) -> None:
    """The first deletion after a start waits for neither the event loop thread nor the
    trust store (about 25 ms here): both are made with the client. A dry run, which
    sends nothing, makes neither."""

    def loop_threads() -> int:
        return sum(1 for thread in threading.enumerate() if thread.name == "k2hr3-client")

    before = loop_threads()
    dry = RoleClient(k2hr3.url, dry_run=True)
    assert loop_threads() == before
    live = RoleClient(k2hr3.url)
    try:
        assert loop_threads() == before + 1
        assert live._session._session is not None
    finally:
        live.close()
        dry.close()
