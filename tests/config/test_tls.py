"""TLS end to end, with a throw-away PKI: RabbitMQ with client certificates, K2HR3 over HTTPS.

RabbitMQ: the daemon reaches the real broker through a TLS terminator that demands a
client certificate from our CA, so a deletion arriving at K2HR3 proves that the
``[oslo_messaging_rabbit]`` options of the daemon's own config file reached the driver,
and that the handshake presented the client certificate. K2HR3: the local stand-in
behind TLS, and the very client the daemon builds from ``[k2hr3]``.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import with_broker
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import nova_versioned_delete
from support.tls_certs import CLIENT_CN, Pki, make_pki
from support.waiting import wait_until

from k2hr3_osnl import config
from k2hr3_osnl.core.answers import Outcome
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.process import service

CUK = "5f3ecd1a-2c0e-4e6b-9f3b-1c2d3e4f5a6b"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


class TlsTerminator:
    """TLS in front of the plain RabbitMQ port: checks the client certificate against
    the CA, records who connected (the certificate's CN), forwards the bytes."""

    def __init__(self, context: ssl.SSLContext, target: tuple[str, int]) -> None:
        self.context = context
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.peers: list[str] = []
        self.refused: list[str] = []
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.refused.append(str(error))
            client.close()
            return
        subject = dict(item for rdn in tls.getpeercert()["subject"] for item in rdn)
        self.peers.append(subject["commonName"])
        upstream = socket.create_connection(self.target, timeout=10)
        self._sockets += [tls, upstream]
        tls.settimeout(None)
        upstream.settimeout(None)
        # One thread per connection: an SSL socket must not be read and written at once
        # from two threads.
        try:
            while True:
                readable, _, _ = select.select([tls, upstream], [], [], 1)
                if tls in readable or tls.pending():
                    data = tls.recv(65536)
                    if not data:
                        return
                    upstream.sendall(data)
                    while tls.pending():
                        upstream.sendall(tls.recv(65536))
                if upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    tls.sendall(data)
        except OSError:
            return
        finally:
            for sock in (tls, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
def test_rabbitmq_over_tls_with_a_client_certificate(
    e2e: Harness, k2hr3: FakeK2HR3, pki: Pki
) -> None:
    terminator = TlsTerminator(pki.server_context(require_client_cert=True), ("127.0.0.1", 5672))
    try:
        tls_options = {
            "ssl": "true",
            "ssl_ca_file": pki.ca,
            "ssl_cert_file": pki.client_cert,
            "ssl_key_file": pki.client_key,
        }
        daemon = e2e.daemon(
            e2e.config(
                transport_url=f"rabbit://guest:guest@127.0.0.1:{terminator.port}/",
                sections={"oslo_messaging_rabbit": tls_options, "metrics": {"port": 0}},
            )
        ).start()
        cuk = str(uuid.uuid4())
        e2e.notify(e2e.nova, e2e.versioned, "messagingv2", nova_versioned_delete(cuk))
        assert k2hr3.wait_for(1, timeout=20), daemon.report("nothing delivered over TLS")
        assert k2hr3.deleted() == [(cuk, None)]
        # The handshake presented our client certificate, and nothing went around TLS.
        assert terminator.peers and set(terminator.peers) == {CLIENT_CN}, terminator.refused
        assert terminator.refused == []
        assert daemon.stop() == 0
    finally:
        terminator.close()


@pytest.mark.rabbitmq
@pytest.mark.timeout(60)
def test_rabbitmq_without_the_client_certificate_is_refused(e2e: Harness, pki: Pki) -> None:
    """The same terminator turns away a daemon that does not present a certificate."""
    terminator = TlsTerminator(pki.server_context(require_client_cert=True), ("127.0.0.1", 5672))
    try:
        daemon = e2e.daemon(
            e2e.config(
                transport_url=f"rabbit://guest:guest@127.0.0.1:{terminator.port}/",
                sections={
                    "oslo_messaging_rabbit": {"ssl": "true", "ssl_ca_file": pki.ca},
                    "metrics": {"port": 0},
                },
            )
        ).start(wait=False)
        wait_until(lambda: terminator.refused, 20, "a refused handshake")
        assert terminator.peers == []
        assert daemon.alive, daemon.report("gave up instead of retrying")
        assert daemon.stop() == 0
    finally:
        terminator.close()


# --- K2HR3 over HTTPS, with the client the daemon builds from [k2hr3] ---------------------


@pytest.fixture
def https_k2hr3(pki: Pki) -> Iterator[FakeK2HR3]:
    server = FakeK2HR3(ssl_context=pki.server_context(require_client_cert=True)).start()
    yield server
    server.stop()


def client_for(tmp_path: Path, server: FakeK2HR3, **k2hr3: object) -> RoleClient:
    lines = [f"api_url = {server.url}", "connect_timeout_seconds = 2", "timeout_seconds = 5"]
    lines += [f"{key} = {value}" for key, value in k2hr3.items()]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("[k2hr3]\n" + "\n".join(lines) + "\n"), encoding="utf-8")
    conf = config.load([str(path)])
    assert config.problems(conf) == []
    return service.make_client(conf)


def test_k2hr3_https_with_ca_and_client_certificate(
    tmp_path: Path, https_k2hr3: FakeK2HR3, pki: Pki
) -> None:
    client = client_for(
        tmp_path, https_k2hr3, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
    )
    answer = client.delete(CUK, ("10.0.0.1",))
    assert (answer.outcome, answer.status) == (Outcome.DELETED, 204), answer
    assert https_k2hr3.deleted() == [(CUK, ("10.0.0.1",))]
    assert https_k2hr3.url.startswith("https://")


def test_k2hr3_https_without_ca_file_fails_verification(
    tmp_path: Path, https_k2hr3: FakeK2HR3, pki: Pki
) -> None:
    """Our CA is not in the system store: a TLS error, retried (it may be a restart)."""
    client = client_for(tmp_path, https_k2hr3, cert_file=pki.client_cert, key_file=pki.client_key)
    answer = client.delete(CUK)
    assert answer.outcome is Outcome.RETRY and answer.status is None
    assert "TLS error" in answer.detail and "CERTIFICATE_VERIFY_FAILED" in answer.detail
    assert https_k2hr3.calls == []


def test_k2hr3_https_with_allow_self_signed_cert(
    tmp_path: Path, https_k2hr3: FakeK2HR3, pki: Pki
) -> None:
    client = client_for(
        tmp_path,
        https_k2hr3,
        allow_self_signed_cert="true",
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    answer = client.delete(CUK)
    assert (answer.outcome, answer.status) == (Outcome.DELETED, 204), answer


def test_k2hr3_https_without_client_certificate_is_refused(
    tmp_path: Path, https_k2hr3: FakeK2HR3, pki: Pki
) -> None:
    client = client_for(tmp_path, https_k2hr3, ca_file=pki.ca)
    answer = client.delete(CUK)
    assert answer.outcome is Outcome.RETRY and answer.status is None, answer
    assert https_k2hr3.calls == []
    wait_until(lambda: https_k2hr3.tls_errors, 5, "the server to record the refusal")
    assert "certificate" in https_k2hr3.tls_errors[0].lower()
