"""The K2HR3 Role API client against a real local HTTP server.

What goes on the wire, what each answer means (the status policy), and how the client
behaves when K2HR3 is slow, gone or wrongly addressed.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.k2hr3_standin import FakeK2HR3

from k2hr3_osnl.core.answers import (
    MAX_RETRY_AFTER,
    Answer,
    Outcome,
    about_k2hr3,
    retry_after,
)
from k2hr3_osnl.k2hr3.client import EXTRA, RoleClient
from k2hr3_osnl.observability import logs

CUK = "12345678-1234-5678-1234-567812345678"
IPS = ("172.16.0.1", "2001:db8::6")


class PeerRecordingK2HR3(FakeK2HR3):
    """FakeK2HR3 that also records which client connection each request came on."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[tuple[str, int]] = []
        self._peer_lock = threading.Lock()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        with self._peer_lock:
            self.peers.append(request.client_address)
        super()._handle(request)


@pytest.fixture
def server() -> Iterator[PeerRecordingK2HR3]:
    fake = PeerRecordingK2HR3().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(server: FakeK2HR3) -> Iterator[RoleClient]:
    role_client = RoleClient(server.url, connect_timeout=2, read_timeout=5)
    yield role_client
    role_client.close()


def test_query_names_cuk_hosts_and_extra(server: FakeK2HR3, client: RoleClient) -> None:
    """DELETE /v1/role?cuk=...&host=["ip", ...]&extra=openstack-auto-v1"""
    answer = client.delete(CUK, IPS)
    assert answer.outcome is Outcome.DELETED
    assert answer.status == 204
    (call,) = server.calls
    query = urllib.parse.parse_qs(call.query, keep_blank_values=True)
    assert query == {"cuk": [CUK], "host": [json.dumps(list(IPS))], "extra": [EXTRA]}
    assert EXTRA == "openstack-auto-v1"
    assert json.loads(query["host"][0]) == list(IPS)
    assert server.deleted() == [(CUK, IPS)]


def test_no_ips_means_no_host_parameter(server: FakeK2HR3, client: RoleClient) -> None:
    """Without host, K2HR3 removes every IP of the cuk: the whole instance is gone."""
    client.delete(CUK)
    (call,) = server.calls
    assert "host" not in urllib.parse.parse_qs(call.query)
    assert server.deleted() == [(CUK, None)]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (204, Outcome.DELETED),
        (200, Outcome.DELETED),
        (400, Outcome.REJECTED),
        (404, Outcome.REJECTED),
        (403, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_status_policy(
    server: FakeK2HR3, client: RoleClient, status: int, outcome: Outcome
) -> None:
    """400/404 need an operator; 403 and 5xx are K2HR3 (or its storage) in trouble."""
    server.status = status
    answer = client.delete(CUK, IPS)
    assert answer.outcome is outcome
    assert answer.status == status
    assert server.requests == 1, "the client itself must never retry"


def test_error_body_is_kept_short(server: FakeK2HR3, client: RoleClient) -> None:
    server.status = 400
    answer = client.delete(CUK, IPS)
    assert "err" in answer.detail
    assert len(answer.detail) <= 200


def test_wrong_path_is_rejected(server: FakeK2HR3) -> None:
    """A mistyped api_url gives 404 from K2HR3: a configuration error, not an outage."""
    wrong = RoleClient(server.url.replace("/v1/role", "/v1/roles"))
    try:
        answer = wrong.delete(CUK, IPS)
    finally:
        wrong.close()
    assert answer.outcome is Outcome.REJECTED
    assert answer.status == 404
    assert server.deleted() == []


def test_refused_connection_is_retryable(server: FakeK2HR3, client: RoleClient) -> None:
    server.stop()
    answer = client.delete(CUK, IPS)
    assert answer.outcome is Outcome.RETRY
    assert answer.status is None
    assert "connection failed" in answer.detail


def test_client_recovers_when_k2hr3_comes_back(server: FakeK2HR3, client: RoleClient) -> None:
    """A pooled connection to a K2HR3 that restarted must not poison the next call."""
    assert client.delete(CUK).outcome is Outcome.DELETED
    server.stop()
    assert client.delete(CUK).outcome is Outcome.RETRY
    server.start()
    assert client.delete(CUK).outcome is Outcome.DELETED
    assert server.deleted() == [(CUK, None), (CUK, None)]


def test_read_timeout_is_retryable(server: FakeK2HR3) -> None:
    server.latency = 2.0
    slow = RoleClient(server.url, connect_timeout=2, read_timeout=0.3)
    try:
        answer = slow.delete(CUK, IPS)
    finally:
        slow.close()
    assert answer.outcome is Outcome.RETRY
    assert answer.status is None
    assert "timed out" in answer.detail
    # The client gave up on its own timeout, not on the server's answer.
    assert answer.seconds < server.latency


def test_dry_run_sends_nothing(server: FakeK2HR3, caplog: pytest.LogCaptureFixture) -> None:
    dry = RoleClient(server.url, dry_run=True)
    caplog.set_level(logging.INFO, logger="k2hr3_osnl.k2hr3.client")
    try:
        answer = dry.delete(CUK, IPS)
    finally:
        dry.close()
    assert answer.outcome is Outcome.DELETED
    assert server.requests == 0
    (record,) = caplog.records
    assert CUK in record.getMessage() and "dry run" in record.getMessage()


@pytest.mark.parametrize(
    ("status", "ips", "expected"),
    [
        (204, IPS, r"status=204 \d+\.\d{3}s deleted"),
        (503, IPS, r"status=503 \d+\.\d{3}s retry"),
        (204, (), r"host=all status=204"),
    ],
)
def test_one_log_line_per_call(
    server: FakeK2HR3,
    client: RoleClient,
    caplog: pytest.LogCaptureFixture,
    status: int,
    ips: tuple[str, ...],
    expected: str,
) -> None:
    """Each call is one line with cuk, hosts, status and time: greppable by cuk."""
    server.status = status
    caplog.set_level(logging.INFO, logger="k2hr3_osnl")
    client.delete(CUK, ips)
    (record,) = [r for r in caplog.records if r.name == "k2hr3_osnl.k2hr3.client"]
    message = record.getMessage()
    assert "\n" not in message
    assert f"cuk={CUK}" in message
    for ip in ips:
        assert ip in message
    assert re.search(expected, message), message


def test_refused_call_is_logged_without_status(
    server: FakeK2HR3, client: RoleClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.stop()
    caplog.set_level(logging.INFO, logger="k2hr3_osnl.k2hr3.client")
    client.delete(CUK, IPS)
    (record,) = caplog.records
    assert "status=-" in record.getMessage()
    assert "connection failed" in record.getMessage()


def test_connection_is_reused(server: PeerRecordingK2HR3, client: RoleClient) -> None:
    """Several deletions, success and failure alike, go over one TCP connection."""
    for status in (204, 204, 400, 503, 204, 200):
        server.status = status
        client.delete(CUK, IPS)
    assert len(server.peers) == 6
    assert len(set(server.peers)) == 1, server.peers


def test_concurrent_calls_share_the_client(server: PeerRecordingK2HR3) -> None:
    """Worker threads share one client; connections are pooled, not one per call."""
    shared = RoleClient(server.url, pool_size=4)
    outcomes: list[Outcome] = []

    def work() -> None:
        for _ in range(10):
            outcomes.append(shared.delete(CUK, IPS).outcome)

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        shared.close()
    assert outcomes == [Outcome.DELETED] * 40
    assert len(server.peers) == 40
    assert len(set(server.peers)) <= 4


def test_proxy_environment_is_ignored(server: FakeK2HR3, monkeypatch: pytest.MonkeyPatch) -> None:
    """An http_proxy meant for package downloads must not sit between us and K2HR3."""
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    direct = RoleClient(server.url, connect_timeout=2, read_timeout=5)
    try:
        assert direct.delete(CUK, IPS).outcome is Outcome.DELETED
    finally:
        direct.close()


def test_invalid_api_url_is_rejected_not_retried() -> None:
    """A URL that can never work is an operator's problem: no point retrying."""
    broken = RoleClient("http://[::1/v1/role")
    try:
        answer = broken.delete(CUK, IPS)
    finally:
        broken.close()
    assert answer.outcome is Outcome.REJECTED


def test_delete_many_answers_in_order_and_logs_each_call_with_its_fields(
    server: FakeK2HR3, client: RoleClient, caplog: pytest.LogCaptureFixture
) -> None:
    others = [f"00000000-0000-4000-8000-{i:012d}" for i in range(3)]
    server.status_for[others[1]] = 503
    caplog.set_level(logging.INFO, logger="k2hr3_osnl.k2hr3.client")
    caplog.handler.addFilter(logs.FieldsFilter())  # as the daemon's log handlers have
    answers = client.delete_many(
        [(cuk, IPS) for cuk in others], [{"message_id": f"m-{i}"} for i in range(3)]
    )
    assert [a.status for a in answers] == [204, 503, 204]
    lines = {r.message_id: r.getMessage() for r in caplog.records}  # type: ignore[attr-defined]
    assert all(f"cuk={others[i]}" in lines[f"m-{i}"] for i in range(3))


def test_a_dropped_client_stops_its_event_loop_thread(server: FakeK2HR3) -> None:
    """A reload replaces the client without closing it: its thread must not linger."""
    import gc

    dropped = RoleClient(server.url)
    assert dropped.delete(CUK).status == 204
    assert any(t.name == "k2hr3-client" for t in threading.enumerate())
    del dropped
    gc.collect()
    deadline = time.monotonic() + 5
    while any(t.name == "k2hr3-client" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the event loop thread outlived its client"
        time.sleep(0.05)


class _RawServer:
    """A TCP server that answers every connection with ``head`` and then trickles
    ``byte`` every ``every`` seconds, for as long as the client listens."""

    def __init__(self, head: bytes, byte: bytes = b"x", every: float = 0.2) -> None:
        import socket

        self.head, self.byte, self.every = head, byte, every
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.sent: list[int] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: object) -> None:
        import socket

        assert isinstance(conn, socket.socket)
        sent = 0
        try:
            conn.recv(65536)
            conn.sendall(self.head)
            sent = len(self.head)
            while not self.stopped.wait(self.every):
                conn.sendall(self.byte)
                sent += len(self.byte)
        except OSError:
            pass
        finally:
            self.sent.append(sent)
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def _timed_delete(raw: _RawServer, connect: float, read: float) -> tuple[Answer, float]:
    """One deletion against ``raw``: the answer, and how long the call took."""
    client = RoleClient(
        f"http://127.0.0.1:{raw.port}/v1/role", connect_timeout=connect, read_timeout=read
    )
    try:
        started = time.monotonic()
        answer = client.delete(CUK, IPS)
        return answer, time.monotonic() - started
    finally:
        client.close()
        raw.close()


def test_a_trickling_k2hr3_cannot_hold_a_call_past_its_deadline() -> None:
    """K2HR3 (or something in between) sends a byte every 0.2 s, never finishing: each
    read is quick, so only an overall deadline (connect + read timeout) ends the call."""
    head = b"HTTP/1.1 204 No Content\r\nX-Slow: "  # a header that never ends
    answer, took = _timed_delete(_RawServer(head), connect=0.5, read=1)
    assert answer.outcome is Outcome.RETRY
    assert "timed out" in answer.detail
    assert took < 3.0, f"the call took {took:.1f}s; its deadline is 1.5 s"


def test_a_huge_error_body_is_not_read_whole() -> None:
    """A 400 announcing 50 MB and sending it slowly: the client reads the first 200
    bytes, answers at once, and does not wait for the rest."""
    head = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 50000000\r\n\r\n"
        + b'{"result": false, "message": "'
        + b"m" * 1000
    )
    answer, took = _timed_delete(_RawServer(head, byte=b"m" * 1000, every=0.1), connect=1, read=10)
    assert answer.outcome is Outcome.REJECTED
    assert answer.status == 400
    assert len(answer.detail) <= 200
    assert took < 2.0, f"the client waited {took:.1f}s for a body it does not need"


# --- Retry-After ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), (" 0 ", 0.0), ("Wed, 21 Oct 2015 07:28:07 GMT", 7.0), ("86400", 300.0)],
)
def test_retry_after_reads_seconds_and_http_dates(header: str, seconds: float) -> None:
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert retry_after(header, now) == seconds


@pytest.mark.parametrize(
    "header", [None, "", "soon", "-5", "1.5", "Wed, 99 Oct 2015 07:28:07 GMT", "Wed, 21 Oct 2015"]
)
def test_an_unreadable_retry_after_is_none(header: str | None) -> None:
    assert retry_after(header, time.time()) is None


def test_a_retry_after_in_the_past_means_now() -> None:
    assert retry_after(email.utils.formatdate(time.time() - 3600, usegmt=True), time.time()) == 0


def test_a_429_carries_its_retry_after(server: FakeK2HR3, client: RoleClient) -> None:
    server.status, server.retry_after = 429, "3"
    answer = client.delete("00000000-0000-4000-8000-000000000001")
    assert (answer.outcome, answer.status, answer.retry_after) == (Outcome.RETRY, 429, 3.0)
    assert "Retry-After 3s" in answer.detail
    assert about_k2hr3(answer)


@given(seconds=st.integers(0, 10**9), now=st.floats(0, 4e9))
def test_retry_after_in_seconds_is_honoured_up_to_the_cap(seconds: int, now: float) -> None:
    assert retry_after(str(seconds), now) == min(float(seconds), MAX_RETRY_AFTER)


@given(ahead=st.integers(-86400, 86400), now=st.integers(10**9, 3 * 10**9))
def test_retry_after_as_a_date_counts_from_now(ahead: int, now: int) -> None:
    header = email.utils.formatdate(now + ahead, usegmt=True)
    assert retry_after(header, now) == min(max(0.0, float(ahead)), MAX_RETRY_AFTER)
