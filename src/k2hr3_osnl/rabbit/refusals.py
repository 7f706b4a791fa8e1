"""RabbitMQ said no: what it means, in one line that says what to fix, and no crash loop.

A CA that did not sign the broker's certificate, a client certificate the broker
refuses, a user without access to the vhost or without the permission a declaration
needs: oslo.messaging reports each in the words of OpenSSL or AMQP, some after a
traceback, and RabbitMQ 3.x does not even say which permission a refused declaration
lacked. These are configuration faults that the same attempt will meet again until an
operator acts, so :func:`explain` names the option or permission, and :func:`start`
keeps the daemon alive, retrying at a slow pace, instead of exiting for systemd to
restart it into the same refusal.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from k2hr3_osnl.core.observer import Observer

LOG = logging.getLogger(__name__)

#: Pause before the first new attempt after a refusal, and the longest pause.
RETRY_FIRST, RETRY_MAX = 5.0, 60.0

_RESOURCE = re.compile(
    r"(?P<method>\w+\.\w+): \(403\) ACCESS_REFUSED - (?:(?P<perm>configure|write|read) )?"
    r"access to (?P<kind>queue|exchange) '(?P<name>[^']*)' in vhost '(?P<vhost>[^']*)' "
    r"refused for user '(?P<user>[^']*)'"
)
_VHOST = re.compile(r"access to vhost '(?P<vhost>[^']*)' refused for user '(?P<user>[^']*)'")
#: RabbitMQ 3.x: "NOT_ALLOWED - vhost openstack not found"; 4.x quotes the name.
_NO_VHOST = re.compile(r"NOT_ALLOWED - vhost '?(?P<vhost>[^' ]*)'? not found")
_LOGIN = re.compile(r"Login was refused using authentication mechanism (?P<mechanism>[A-Z0-9-]+)")
_INEQUIVALENT = re.compile(
    r"PRECONDITION_FAILED - inequivalent arg '(?P<arg>[^']*)' for (?P<what>.*?) in vhost"
)
#: The permission each AMQP method needs, by the kind of resource refused.
_PERMISSION = {
    ("Queue.declare", "queue"): "configure",
    ("Exchange.declare", "exchange"): "configure",
    ("Queue.bind", "queue"): "write",
    ("Queue.bind", "exchange"): "read",
    ("Basic.consume", "queue"): "read",
    ("Basic.publish", "exchange"): "write",
}
#: OpenSSL's alerts from a broker that refused our client certificate.
_CLIENT_CERT_ALERTS = {
    "certificate expired": "it has expired",
    "unknown ca": "RabbitMQ does not trust the CA that issued it",
    "certificate revoked": "it is revoked",
    "bad certificate": "RabbitMQ rejected it",
    "unsupported certificate": "RabbitMQ rejected it",
    "certificate unknown": "RabbitMQ rejected it",
    "certificate required": "RabbitMQ requires one and none was sent",
}
RABBIT = "[oslo_messaging_rabbit]"


def explain(text: str) -> str | None:
    """What to fix, for an error that is RabbitMQ (or TLS) refusing us; else None."""
    lowered = text.lower()
    if "certificate verify failed" in lowered:
        reason = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return (
            f"RabbitMQ's TLS certificate is not trusted ({reason}): {RABBIT} ssl_ca_file "
            "must hold the CA that signed it (MOSK: the secret's ca_cert)"
        )
    for alert, why in _CLIENT_CERT_ALERTS.items():
        if f"alert {alert}" in lowered:
            return f"RabbitMQ refused the client certificate ({RABBIT} ssl_cert_file): {why}"
    if "eof occurred in violation of protocol" in lowered:
        # TLS 1.3: a broker that refuses our certificate may close before we read why.
        return (
            f"RabbitMQ closed the TLS handshake: it refused the client certificate ({RABBIT} "
            "ssl_cert_file: expired, revoked or from a CA it does not trust), or the port "
            "does not speak TLS"
        )
    if "wrong version number" in lowered:
        return (
            "the port of transport_url does not speak TLS (ssl = true): use RabbitMQ's TLS "
            "port (MOSK: the secret's port_amqp-tls)"
        )
    if match := _RESOURCE.search(text):
        return _resource(match)
    if match := _VHOST.search(text):
        return (
            f"user '{match['user']}' may not use vhost '{match['vhost']}': the vhost of "
            f"transport_url is wrong, or the user has no permissions there "
            f"(rabbitmqctl list_permissions -p {match['vhost']})"
        )
    if match := _NO_VHOST.search(text):
        return (
            f"RabbitMQ has no vhost '{match['vhost']}': the vhost of transport_url (the path "
            f"after host:port) is wrong, or it is not created yet "
            f"(rabbitmqctl add_vhost {match['vhost']})"
        )
    if match := _LOGIN.search(text):
        if match["mechanism"] == "EXTERNAL":
            return (
                "RabbitMQ refused the certificate login (rabbit_login_method = EXTERNAL): "
                "no RabbitMQ user is named after the client certificate's subject"
            )
        return "RabbitMQ refused the user name or password of transport_url"
    if "EXTERNAL" in text and "auth mechanism" in lowered:
        return (
            "RabbitMQ does not offer certificate logins (EXTERNAL): enable its "
            "rabbitmq_auth_mechanism_ssl plugin, or log in with the password"
        )
    if match := _INEQUIVALENT.search(text):
        return (
            f"{match['what']} exists with another '{match['arg']}': {RABBIT} "
            "amqp_durable_queues and rabbit_quorum_queue must match how it was declared"
        )
    return None


def _resource(match: re.Match[str]) -> str:
    permission = match["perm"] or _PERMISSION.get((match["method"], match["kind"]), "a")
    line = (
        f"user '{match['user']}' lacks the {permission} permission on {match['kind']} "
        f"'{match['name']}' in vhost '{match['vhost']}', which {match['method']} needs"
    )
    if match["kind"] == "queue" and permission == "configure":
        line += (
            ": grant it, or consume a queue made for this user "
            "([oslo_messaging_notifications] pool, see docs/mosk.md)"
        )
    return line


def start(listener: Any, stop: threading.Event, observer: Observer | None = None) -> bool:
    """``listener.start()``, again after each refusal; False if stopped while waiting.

    An error that is not a refusal propagates, as before.
    """
    delay = RETRY_FIRST
    while True:
        try:
            listener.start()
            return True
        except Exception as error:
            hint = explain(str(error))
            if hint is None:
                raise
            reason = str(error)
        # The broker's own words last, for whoever searches the log for them.
        LOG.error(
            "RabbitMQ refused k2hr3-osnl: %s; trying again in %.0fs (%s)", hint, delay, reason
        )
        if observer is not None:
            observer.broker_lost(hint)
        # A server whose start failed half-way starts again only after stop and wait.
        listener.stop()
        listener.wait()
        if stop.wait(delay):
            return False
        delay = min(delay * 2, RETRY_MAX)
