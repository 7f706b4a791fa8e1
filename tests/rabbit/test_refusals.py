"""RabbitMQ's refusals, explained in one line, and a refused start that retries.

The messages are the ones RabbitMQ 3.10, OpenSSL 3 and py-amqp really produce (captured
by tests/broker/test_mosk.py's failure tests), plus the newer RabbitMQ form that names the
permission itself. The daemon-level behaviour (one line, no crash loop, heals once
granted) is tested end to end in tests/broker/test_mosk.py.
"""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.rabbit import refusals
from k2hr3_osnl.rabbit.driverlog import BrokerLogWatch

CASES = [
    (
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate "
        "in certificate chain (_ssl.c:1006)",
        "RabbitMQ's TLS certificate is not trusted (self-signed certificate in certificate "
        "chain): [oslo_messaging_rabbit] ssl_ca_file must hold the CA that signed it "
        "(MOSK: the secret's ca_cert)",
    ),
    (
        "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired (_ssl.c:2580)",
        "RabbitMQ refused the client certificate ([oslo_messaging_rabbit] ssl_cert_file): "
        "it has expired",
    ),
    (
        "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)",
        "RabbitMQ refused the client certificate ([oslo_messaging_rabbit] ssl_cert_file): "
        "RabbitMQ does not trust the CA that issued it",
    ),
    (
        # TLS 1.3: the broker may close before its alert is read.
        "EOF occurred in violation of protocol (_ssl.c:2427)",
        "RabbitMQ closed the TLS handshake: it refused the client certificate "
        "([oslo_messaging_rabbit] ssl_cert_file: expired, revoked or from a CA it does not "
        "trust), or the port does not speak TLS",
    ),
    (
        "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
        "the port of transport_url does not speak TLS (ssl = true): use RabbitMQ's TLS port "
        "(MOSK: the secret's port_amqp-tls)",
    ),
    (
        "Connection.open: (530) NOT_ALLOWED - access to vhost 'openstack' refused for user "
        "'outsider'",
        "user 'outsider' may not use vhost 'openstack': the vhost of transport_url is wrong, "
        "or the user has no permissions there (rabbitmqctl list_permissions -p openstack)",
    ),
    (
        "Connection.open: (530) NOT_ALLOWED - vhost nowhere not found",
        "RabbitMQ has no vhost 'nowhere': the vhost of transport_url (the path after "
        "host:port) is wrong, or it is not created yet (rabbitmqctl add_vhost nowhere)",
    ),
    (
        "Queue.declare: (403) ACCESS_REFUSED - access to queue 'k2hr3_osnl' in vhost "
        "'openstack' refused for user 'no-queue'",
        "user 'no-queue' lacks the configure permission on queue 'k2hr3_osnl' in vhost "
        "'openstack', which Queue.declare needs: grant it, or consume a queue made for this "
        "user ([oslo_messaging_notifications] pool, see docs/mosk.md)",
    ),
    (
        # RabbitMQ 3.11 and later name the permission themselves.
        "Queue.declare: (403) ACCESS_REFUSED - configure access to queue 'q' in vhost 'v' "
        "refused for user 'u'",
        "user 'u' lacks the configure permission on queue 'q' in vhost 'v', which "
        "Queue.declare needs: grant it, or consume a queue made for this user "
        "([oslo_messaging_notifications] pool, see docs/mosk.md)",
    ),
    (
        "Exchange.declare: (403) ACCESS_REFUSED - access to exchange 'nova' in vhost 'v' "
        "refused for user 'u'",
        "user 'u' lacks the configure permission on exchange 'nova' in vhost 'v', which "
        "Exchange.declare needs",
    ),
    (
        "Queue.bind: (403) ACCESS_REFUSED - access to exchange 'nova' in vhost 'v' refused "
        "for user 'u'",
        "user 'u' lacks the read permission on exchange 'nova' in vhost 'v', which "
        "Queue.bind needs",
    ),
    (
        "Basic.consume: (403) ACCESS_REFUSED - access to queue 'q' in vhost 'v' refused for "
        "user 'u'",
        "user 'u' lacks the read permission on queue 'q' in vhost 'v', which Basic.consume needs",
    ),
    (
        "(0, 0): (403) ACCESS_REFUSED - Login was refused using authentication mechanism "
        "AMQPLAIN. For details see the broker logfile.",
        "RabbitMQ refused the user name or password of transport_url",
    ),
    (
        "(0, 0): (403) ACCESS_REFUSED - Login was refused using authentication mechanism "
        "EXTERNAL. For details see the broker logfile.",
        "RabbitMQ refused the certificate login (rabbit_login_method = EXTERNAL): no RabbitMQ "
        "user is named after the client certificate's subject",
    ),
    (
        "Queue.declare: (406) PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for "
        "queue 'k2hr3_osnl' in vhost '/': received the value 'quorum' of type 'longstr' but "
        "current is none",
        "queue 'k2hr3_osnl' exists with another 'x-queue-type': [oslo_messaging_rabbit] "
        "amqp_durable_queues and rabbit_quorum_queue must match how it was declared",
    ),
]


@pytest.mark.parametrize(("error", "expected"), CASES)
def test_a_refusal_is_explained_in_one_line(error: str, expected: str) -> None:
    assert refusals.explain(error) == expected


@pytest.mark.parametrize(
    "error",
    ["[Errno 111] Connection refused", "timed out", "Socket closed", "Server unexpectedly closed"],
)
def test_an_outage_is_not_a_refusal(error: str) -> None:
    """A broker that is down is retried by the driver as before, with its own words."""
    assert refusals.explain(error) is None


@given(st.text())
def test_explain_never_fails_and_never_adds_a_line(text: str) -> None:
    """It runs inside a logging filter: it must not raise, whatever the driver says."""
    hint = refusals.explain(text)
    assert hint is None or hint.count("\n") <= text.count("\n")


class FlakyListener:
    """Refuses ``refusals`` times, then starts; records the calls."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")
        if self.errors:
            raise self.errors.pop(0)

    def stop(self) -> None:
        self.calls.append("stop")

    def wait(self) -> None:
        self.calls.append("wait")


class Recorder(Observer):
    def __init__(self) -> None:
        self.lost: list[str] = []

    def broker_lost(self, detail: str) -> None:
        self.lost.append(detail)


VHOST_REFUSED = CASES[5][0]


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refusals, "RETRY_FIRST", 0.01)


def test_a_refused_start_is_logged_once_per_attempt_and_retried(
    fast: None, caplog: pytest.LogCaptureFixture
) -> None:
    listener = FlakyListener([RuntimeError(VHOST_REFUSED), RuntimeError(VHOST_REFUSED)])
    observer = Recorder()
    with caplog.at_level(logging.ERROR, logger="k2hr3_osnl.rabbit.refusals"):
        assert refusals.start(listener, threading.Event(), observer) is True
    assert listener.calls == ["start", "stop", "wait"] * 2 + ["start"]
    assert [r.getMessage().split(";")[0] for r in caplog.records] == [
        f"RabbitMQ refused k2hr3-osnl: {CASES[5][1]}"
    ] * 2
    assert observer.lost == [CASES[5][1]] * 2


def test_a_stop_while_waiting_ends_the_retries(fast: None) -> None:
    stop = threading.Event()
    stop.set()
    listener = FlakyListener([RuntimeError(VHOST_REFUSED)])
    assert refusals.start(listener, stop) is False
    assert listener.calls == ["start", "stop", "wait"]


def test_other_start_failures_propagate_as_before(fast: None) -> None:
    listener = FlakyListener([ValueError("no such driver")])
    with pytest.raises(ValueError, match="no such driver"):
        refusals.start(listener, threading.Event())


def test_the_log_watch_explains_a_tls_refusal_once_until_reconnected(
    caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    """The driver retries a TLS failure itself, with its line each time; ours comes once."""
    logger = logging.getLogger("oslo.messaging._drivers.impl_rabbit")
    logging.getLogger("oslo.messaging").setLevel(logging.WARNING)
    watch = BrokerLogWatch(Recorder()).install()
    expired, closed = CASES[1][0], CASES[3][0]
    try:
        with caplog.at_level(logging.ERROR, logger="k2hr3_osnl.rabbit.driverlog"):
            # TLS 1.3: the alert, or the connection closed before it could be read.
            for error in (expired, closed, expired, closed):
                logger.error("Connection failed: %s (retrying in %s seconds)", error, 1.0)
            logger.info("[c1] Reconnected to AMQP server on %s:%s", "127.0.0.1", 5671)
            logger.error("Connection failed: %s (retrying in %s seconds)", expired, 1.0)
    finally:
        watch.uninstall()
    ours = [r.getMessage() for r in caplog.records if r.name == "k2hr3_osnl.rabbit.driverlog"]
    said = [f"RabbitMQ refused k2hr3-osnl: {CASES[i][1]}" for i in (1, 3, 1)]
    assert ours == said
    assert watch.observer.lost == [CASES[i][1] for i in (1, 3, 1, 3, 1)]  # type: ignore[attr-defined]
