"""``k2hr3-osnl mosk-config``: from MOSK's external notification secret to this daemon's config.

Mirantis OpenStack for Kubernetes hands an outside consumer one Kubernetes secret per
notification topic (``openstack-external/openstack-<topic>-notifications``, as its own
listing names it). Its page lists the keys: ``hosts``, ``port_amqp``, ``port_amqp-tls``,
``vhost``, ``username``, ``password``, ``ca_cert`` ("the client CA certificate"),
``client_cert`` and ``client_key``, and shows such a secret with 4 data items: so only
what the chosen connection and login use is required. This module reads that secret
(``kubectl -o json`` or ``-o yaml``), writes the PEM files the daemon will read (mode
0600: one of them is a private key) and prints the configuration sections that use
them. docs/mosk.md walks through the result and marks what the page does not say.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import kombu

from k2hr3_osnl.core import events

#: MOSK's rule for topic names: "lowercase alphanumeric characters, -, or ." (its own
#: example, ``external-consumer-A``, has a capital: accepted); ``notifications`` is
#: reserved.
TOPIC = re.compile(r"^[A-Za-z0-9.-]+$")
#: How MOSK names the secret of a topic, from the listing on its page.
SECRET_NAME = re.compile(r"^openstack-(?P<topic>.+)-notifications$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
#: ``host:port``, ``[v6]:port`` or ``[v6]``: a host of ``hosts`` may carry its port.
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\s]+))(?::(?P<port>\d+))?$")
#: The exchanges nova and neutron publish their notifications to.
EXCHANGES = tuple(events.exchanges())
#: What oslo.messaging hands kombu unescaped (it quotes with ``safe="/"`` and passes the
#: vhost raw), so that kombu would misread it: refused rather than failing at connect.
_UNSAFE = {"username": "/", "password": "/", "vhost": "?#%;"}
#: The files written, by secret field (``server_ca``: ``--server-ca``).
FILES = {
    "ca_cert": "ca.pem",
    "server_ca": "server-ca.pem",
    "client_cert": "client.pem",
    "client_key": "client.key",
}
#: The queue declared when MOSK's are not there (or not to be used).
DEFAULT_POOL = "k2hr3_osnl"
#: Seconds the TLS check may wait for a host.
CHECK_TIMEOUT = 5.0
#: Object identifier 2.5.4.3 (commonName), DER-encoded.
_CN = b"\x55\x04\x03"


class SecretError(ValueError):
    """What is wrong with the secret, in one line."""


@dataclass(frozen=True)
class Choice:
    """How the daemon will connect and log in: what decides which keys are needed."""

    tls: bool = True
    certificate: bool = False
    #: ``--server-ca``: the broker is verified with this CA, not the secret's ca_cert.
    server_ca: str = ""

    def needs(self) -> dict[str, str]:
        """Each key the secret must have, and why."""
        need = {
            "hosts": "the addresses to connect to",
            "vhost": "the virtual host MOSK made the topic's queues on",
        }
        if self.tls:
            need["port_amqp-tls"] = (
                "the port of the TLS connection (or --connection plain, on data.port_amqp)"
            )
            if not self.server_ca:
                need["ca_cert"] = (
                    "it verifies RabbitMQ's certificate (or --server-ca FILE with the CA "
                    "that signed it)"
                )
        else:
            need["port_amqp"] = "the port of the plain connection (--connection plain)"
        if self.certificate:
            need["client_cert"] = "the certificate login (--auth certificate) presents it"
            need["client_key"] = "the certificate login (--auth certificate) signs with it"
        else:
            need["username"] = "the password login sends it (or --auth certificate)"
            need["password"] = "the password login sends it (or --auth certificate)"
        return need


@dataclass(frozen=True)
class Endpoint:
    """One MOSK external notification topic, as its secret and the choice describe it."""

    topic: str
    #: ``(host, port)``: the chosen connection's port.
    hosts: tuple[tuple[str, int], ...]
    vhost: str
    username: str = ""
    password: str = ""
    tls: bool = True
    #: PEM text; empty when the secret has none (or the connection does not use it).
    ca_cert: str = ""
    server_ca: str = ""
    client_cert: str = ""
    client_key: str = ""

    def transport_url(self, *, password: bool = True) -> str:
        """Every host; without the password for EXTERNAL (and the user, if there is none)."""
        user = urllib.parse.quote(self.username, safe="")
        if password and self.password:
            user += ":" + urllib.parse.quote(self.password, safe="")
        at = f"{user}@" if user else ""
        hosts = ",".join(
            f"{at}{_url_host(host)}:{port}" for host, port in _parsable(self.hosts, at)
        )
        return f"rabbit://{hosts}/{urllib.parse.quote(self.vhost, safe='')}"

    def verifying_ca(self) -> str:
        """The field whose CA verifies the broker: ``server_ca`` or ``ca_cert``."""
        return "server_ca" if self.server_ca else "ca_cert"


def load(text: str) -> dict[str, Any]:
    """``kubectl get secret -o json`` or ``-o yaml`` output, as a mapping."""
    try:
        document = json.loads(text)
    except ValueError as json_error:
        import yaml  # only here: the daemon itself never reads YAML

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            at = f" at line {where.line + 1}" if where is not None else ""
            problem = getattr(error, "problem", None) or type(error).__name__
            raise SecretError(
                f"neither JSON ({json_error}) nor YAML ({problem}{at}): give the output "
                "of 'kubectl get secret NAME -o json' or '-o yaml'"
            ) from None
    if not isinstance(document, dict):
        raise SecretError("not a Kubernetes secret: a JSON or YAML object is expected")
    items = document.get("items")
    if document.get("kind") == "List" and isinstance(items, list):
        raise SecretError(
            f"a list of {len(items)} objects, not one secret: give the secret's name "
            "(kubectl -n openstack-external get secret openstack-TOPIC-notifications -o json)"
        )
    return document


def parse(text: str, topic: str | None = None, choice: Choice | None = None) -> Endpoint:
    """The secret, read for ``choice``, or :class:`SecretError` naming what is wrong.

    ``topic`` (``--topic``) wins over the one the secret's name gives.
    """
    choice = choice or Choice()
    secret = load(text)
    values = {name: value for name, value in _values(secret).items() if value.strip()}
    missing = [
        f"data.{name} is missing or empty: {why}"
        for name, why in choice.needs().items()
        if name not in values
    ]
    if missing:
        raise SecretError("; ".join(missing))
    topic = check_topic(topic) if topic else topic_of(secret.get("metadata"))
    port_key = "port_amqp-tls" if choice.tls else "port_amqp"
    client_cert, client_key = values.get("client_cert", ""), values.get("client_key", "")
    if choice.tls and bool(client_cert) != bool(client_key):
        pair = ("client_cert", "client_key")
        have, lacking = pair if client_cert else pair[::-1]
        raise SecretError(f"data.{lacking} is missing or empty: data.{have} needs it")
    if choice.tls:
        for name in ("ca_cert", "client_cert"):
            if name in values:
                _check_certificate(f"data.{name}", values[name])
        if client_key:
            _check_key(client_key)
    return Endpoint(
        topic=topic,
        hosts=_hosts(values["hosts"], _port(values, port_key)),
        vhost=values["vhost"].strip(),
        username=values.get("username", "").strip(),
        password=values.get("password", "").strip() if not choice.certificate else "",
        tls=choice.tls,
        ca_cert=values.get("ca_cert", "") if choice.tls and not choice.server_ca else "",
        server_ca=choice.server_ca if choice.tls else "",
        client_cert=client_cert if choice.tls else "",
        client_key=client_key if choice.tls else "",
    )


def check_topic(topic: str, what: str = "--topic") -> str:
    """``topic`` if MOSK could have made it, else :class:`SecretError`."""
    if not TOPIC.match(topic) or topic == "notifications":
        raise SecretError(
            f"{what} {topic!r} is not a MOSK topic name (letters, digits, '-' and '.'; "
            "not 'notifications', which MOSK keeps for itself)"
        )
    return topic


def topic_of(metadata: object) -> str:
    """The topic from the secret's name, as MOSK's own listing names it.

    MOSK's page lists ``openstack-external-consumer-A-notifications`` for the topic
    ``external-consumer-A``. A name of another form is refused rather than taken as the
    topic: nova and neutron would publish elsewhere, and the daemon would wait in silence.
    """
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise SecretError("metadata.name missing: give the topic with --topic")
    found = SECRET_NAME.match(name)
    if not found:
        raise SecretError(
            f"metadata.name {name!r} is not MOSK's 'openstack-<topic>-notifications': "
            "give the topic with --topic"
        )
    return check_topic(found["topic"], f"metadata.name {name!r}: its topic")


def _check_certificate(what: str, text: str) -> None:
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise SecretError(f"{what}: not a PEM certificate")
    try:
        ssl.create_default_context(cadata=text)
    except (ssl.SSLError, ValueError) as error:
        raise SecretError(f"{what}: the certificate does not parse ({error})") from None


def _check_key(text: str) -> None:
    if "PRIVATE KEY-----" not in text:
        raise SecretError("data.client_key: not a PEM private key")
    if "ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:
        raise SecretError(
            "data.client_key is encrypted, and oslo.messaging has no option for its "
            "passphrase: decrypt it (openssl pkey -in encrypted.key -out client.key) and "
            "give it as stringData.client_key in the secret's file"
        )


def check_usable(endpoint: Endpoint, *, password: bool) -> None:
    """:class:`SecretError` if oslo.messaging could not pass a value to RabbitMQ intact."""
    for name, unsafe in _UNSAFE.items():
        if name == "password" and not password:
            continue
        bad = sorted({c for c in getattr(endpoint, name) if c in unsafe})
        if bad:
            hint = "; use --auth certificate" if name == "password" else ""
            raise SecretError(
                f"data.{name} contains {', '.join(map(repr, bad))}, which oslo.messaging "
                f"does not escape on its way to RabbitMQ{hint}"
            )


def _values(secret: Mapping[str, Any]) -> dict[str, str]:
    """``data`` decoded from base64, with ``stringData`` (plain text) on top."""
    data, plain = secret.get("data") or {}, secret.get("stringData") or {}
    if not isinstance(data, dict) or not isinstance(plain, dict) or not (data or plain):
        raise SecretError("not a Kubernetes secret: no 'data' object")
    values: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str):
            raise SecretError(f"data.{name}: a base64 string is expected")
        try:
            values[name] = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SecretError(f"data.{name}: not base64 of UTF-8 text") from None
    for name, value in plain.items():
        if not isinstance(value, str):
            raise SecretError(f"stringData.{name}: a string is expected")
        values[name] = value
    return values


def _hosts(text: str, port: int) -> tuple[tuple[str, int], ...]:
    """A JSON list, or addresses separated by commas or white space; each may carry a port.

    The page does not say which form ``hosts`` takes, nor whether a host carries a port:
    a port on a host is used for that host, the port key for the others.
    """
    try:
        listed = json.loads(text)
    except ValueError:
        listed = re.split(r"[,\s]+", text.strip())
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list) or not listed:
        raise SecretError("data.hosts: a list of addresses is expected")
    hosts: list[tuple[str, int]] = []
    for item in listed:
        entry = str(item).strip()
        try:
            hosts.append((str(ipaddress.ip_address(entry.strip("[]"))), port))
            continue
        except ValueError:
            pass
        found = _HOST_PORT.match(entry)
        host = (found["v6"] or found["host"]) if found else entry
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if not found or found["v6"] or not _HOSTNAME.match(host):
                raise SecretError(f"data.hosts: {entry!r} is not an address") from None
        if found and found["port"]:
            hosts.append((host, _port({"hosts": found["port"]}, "hosts", entry)))
        else:
            hosts.append((host, port))
    return tuple(hosts)


def _port(values: Mapping[str, str], name: str, shown: str | None = None) -> int:
    text = values[name].strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SecretError(f"data.{name}: {shown or text!r} is not a port number")
    return int(text)


def _parsable(hosts: tuple[tuple[str, int], ...], at: str) -> list[tuple[str, int]]:
    """The hosts in an order every supported Python's URL parser takes.

    Debian 12's Python 3.11.2 checks one bracketed host only: the one after the last
    ``@``, or the first of the list when there is no user; any other IPv6 host in the
    list makes ``urlparse`` refuse the URL, and the daemon could not start. The order
    means nothing to the daemon: oslo.messaging shuffles the hosts.
    """
    v6 = [entry for entry in hosts if ":" in entry[0]]
    v4 = [entry for entry in hosts if ":" not in entry[0]]
    return v4 + v6 if at else v6 + v4


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def write_files(endpoint: Endpoint, directory: Path) -> dict[str, Path]:
    """The PEM files the config names, mode 0600, each replaced at once; the pair checked."""
    fields = [field for field in FILES if getattr(endpoint, field)]
    if not fields:
        return {}  # plain AMQP with a password: no file, no directory
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for field in fields:
            staged[field] = _stage(directory, FILES[field], getattr(endpoint, field))
        if "client_cert" in staged:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                context.load_cert_chain(staged["client_cert"], staged["client_key"], password=_no)
            except (ssl.SSLError, ValueError) as error:
                raise SecretError(
                    "data.client_cert and data.client_key: not a certificate with its "
                    f"matching unencrypted private key ({error})"
                ) from None
        written = {}
        for field in fields:
            os.replace(staged.pop(field), directory / FILES[field])
            written[field] = directory / FILES[field]
        return written
    finally:
        for path in staged.values():
            path.unlink(missing_ok=True)


def _stage(directory: Path, name: str, text: str) -> Path:
    fd, path = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text if text.endswith("\n") else text + "\n")
    return Path(path)


def _no() -> bytes:
    raise ValueError("the private key is encrypted")


def certificate_names(pem: str) -> list[str]:
    """The common names in a PEM certificate's subject (DER read by hand: no library)."""
    first = pem[pem.index("-----BEGIN CERTIFICATE-----") :]  # a chain: the leaf comes first
    end = "-----END CERTIFICATE-----"
    der = ssl.PEM_cert_to_DER_cert(first[: first.index(end) + len(end)])
    _, start, end = _tlv(der, 0)  # Certificate
    _, start, end = _tlv(der, start)  # TBSCertificate
    fields = list(_children(der, start, end))
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    _, start, end = fields[4]  # serial, signature, issuer, validity, subject
    names = []
    for _, rdn_start, rdn_end in _children(der, start, end):  # SET OF
        for _, at_start, at_end in _children(der, rdn_start, rdn_end):  # SEQUENCE
            (_, o_start, o_end), (_, v_start, v_end) = list(_children(der, at_start, at_end))
            if der[o_start:o_end] == _CN:
                names.append(der[v_start:v_end].decode("utf-8", "replace"))
    return names


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, where the value starts, where it ends) of the DER element at ``at``."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _children(der: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    while start < end:
        element = _tlv(der, start)
        yield element
        start = element[2]


def login_mismatch(endpoint: Endpoint) -> str | None:
    """Why a certificate login may not be ``username``; None when the names agree.

    The page does not say how MOSK maps the certificate to a user: RabbitMQ takes the
    user from the certificate's subject (``ssl_cert_login_from``: the whole distinguished
    name by default, or its common name), not from ``username``.
    """
    try:
        names = certificate_names(endpoint.client_cert)
    except (ValueError, IndexError):
        return "could not read the client certificate's subject to compare it with data.username"
    if not endpoint.username or endpoint.username in names:
        return None
    if any(f"CN={name}" in endpoint.username for name in names):
        return None  # a distinguished name that holds it
    shown = ", ".join(map(repr, names)) or "none"
    return (
        f"the client certificate's common name ({shown}) is not data.username "
        f"{endpoint.username!r}: RabbitMQ logs a certificate in as the user named after its "
        "subject, so this login needs a RabbitMQ user of that name"
    )


def check_broker(
    endpoint: Endpoint,
    ca_file: Path,
    client: tuple[Path, Path] | None = None,
    timeout: float = CHECK_TIMEOUT,
) -> str | None:
    """Connect to the hosts as the daemon will and verify RabbitMQ's certificate.

    :class:`SecretError` if the CA does not verify it (the daemon could never connect);
    a line to show if no host could be asked; None when one verified.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # The rabbit driver checks the chain, not the host name (MOSK's hosts are addresses).
    context.check_hostname = False
    context.load_verify_locations(ca_file)
    if client:
        context.load_cert_chain(*client)  # a broker may insist on one before it answers
    where = "--server-ca" if endpoint.server_ca else "data.ca_cert"
    failures = []
    for host, port in endpoint.hosts:
        try:
            with (
                socket.create_connection((host, port), timeout=timeout) as sock,
                context.wrap_socket(sock) as tls,
            ):
                tls.getpeercert()
            return None
        except ssl.SSLCertVerificationError as error:
            raise SecretError(
                f"{_url_host(host)}:{port}: RabbitMQ's certificate is not signed by the CA "
                f"of {where} ({error.verify_message}): give the CA that signed it with "
                "--server-ca FILE"
            ) from None
        except ssl.SSLError as error:
            if error.reason != "WRONG_VERSION_NUMBER":
                failures.append(f"{_url_host(host)}:{port}: {error}")
                continue
            raise SecretError(
                f"{_url_host(host)}:{port} does not speak TLS: is data.port_amqp-tls "
                "the plain port? (--connection plain connects without TLS)"
            ) from None
        except OSError as error:
            failures.append(f"{_url_host(host)}:{port}: {error.strerror or error}")
    return (
        f"RabbitMQ's certificate not checked ({'; '.join(failures)}): the daemon checks it "
        "at its first connection (--no-check skips this)"
    )


@dataclass(frozen=True)
class Queues:
    """Where the daemon consumes, and how it declares: what the broker already has."""

    #: ``""``: MOSK's own ``<topic>.<priority>`` queues.
    pool: str
    durable: bool | None = None
    quorum: bool | None = None
    why: str = ""


def choose_queues(
    endpoint: Endpoint, files: Mapping[str, Path], *, certificate: bool, pool: str | None
) -> tuple[Queues, str | None]:
    """MOSK's queues when they exist (``pool`` not given), declared as they are declared.

    Also a line to show when the broker could not tell.
    """
    from k2hr3_osnl.rabbit import survey  # kombu: only for this command

    fallback = Queues(DEFAULT_POOL if pool is None else pool)
    mosk_queue = f"{endpoint.topic}.info"
    found: dict[str, survey.Declared] = {}
    failures = []
    for host, port in endpoint.hosts:
        connection = kombu.Connection(
            hostname=_url_host(host),
            port=port,
            userid=endpoint.username or None,
            password=endpoint.password if not certificate else None,
            virtual_host=endpoint.vhost,
            ssl=_ssl_options(endpoint, files),
            login_method="EXTERNAL" if certificate else "AMQPLAIN",
            connect_timeout=CHECK_TIMEOUT,
            transport_options={"max_retries": 0},
        )
        try:
            found = survey.survey(connection, [mosk_queue], EXCHANGES)
            break
        except survey.SurveyError as error:
            failures.append(f"{_url_host(host)}:{port}: {error}")
    if not found:
        return fallback, (
            f"could not ask RabbitMQ what MOSK declared ({'; '.join(failures)}): "
            f"pool = {fallback.pool}, amqp_durable_queues left as it is"
        )
    queue = found[mosk_queue]
    unknown = [f"{name}: {d.unknown}" for name, d in found.items() if d.unknown]
    existing = [d for d in found.values() if d.exists and not d.unknown]
    durable = {d.durable for d in existing}
    quorum = any(d.quorum for d in existing)
    if len(durable) > 1:
        unknown.append(
            "MOSK declared these exchanges and queues with different durability, which "
            "one amqp_durable_queues cannot match"
        )
    if unknown:
        return fallback, "; ".join(unknown)
    consume = pool if pool is not None else ("" if queue.exists else DEFAULT_POOL)
    if consume == "":
        state = "exists: consumed" if queue.exists else "is not there yet: the daemon declares it"
    elif queue.exists:
        state = f"exists, but --pool {consume} was given"
    else:
        state = "is not there: the daemon declares a queue of its own"
    why = f"MOSK's queue {mosk_queue!r} {state}"
    return Queues(consume, durable.pop() if durable else None, quorum or None, why), None


def _ssl_options(endpoint: Endpoint, files: Mapping[str, Path]) -> dict[str, Any] | bool:
    """What oslo.messaging's rabbit driver hands kombu: verify the chain, present the pair."""
    if not endpoint.tls:
        return False
    options: dict[str, Any] = {
        "ca_certs": str(files[endpoint.verifying_ca()]),
        "cert_reqs": ssl.CERT_REQUIRED,
    }
    if "client_cert" in files:
        options.update(certfile=str(files["client_cert"]), keyfile=str(files["client_key"]))
    return options


def render(
    endpoint: Endpoint,
    files: Mapping[str, Path],
    *,
    certificate: bool,
    queues: Queues,
    notes: tuple[str, ...] = (),
) -> str:
    """The sections to paste into the daemon's configuration file.

    Comments stand on lines of their own: oslo.config keeps an inline one in the value.
    """
    login = "the client certificate (SASL EXTERNAL)" if certificate else "the password"
    over = "TLS" if endpoint.tls else "plain AMQP, unencrypted"
    lines = [
        f"# MOSK topic {endpoint.topic!r}, vhost {endpoint.vhost!r}: {login}, over {over}.",
        *(f"# NOTE: {note}" for note in notes),
        "[oslo_messaging_notifications]",
        f"transport_url = {endpoint.transport_url(password=not certificate)}",
        "# MOSK's services publish to the topic on their own exchanges (assumed: nova's",
        "# and neutron's); check with (docs/mosk.md, section 4)",
        f"#   rabbitmqctl list_bindings -p {endpoint.vhost} source_name routing_key",
        f"exchange = {', '.join(EXCHANGES)}",
        f"topic = {endpoint.topic}",
        "# The queue this daemon declares and consumes; empty: MOSK's own",
        f"# '{endpoint.topic}.<priority>' queues (docs/mosk.md, section 5).",
        *([f"# Found: {queues.why}."] if queues.why else []),
        f"pool = {queues.pool}",
        "",
        "[oslo_messaging_rabbit]",
        f"ssl = {'true' if endpoint.tls else 'false'}",
    ]
    if queues.durable is not None:
        lines += [
            "# As MOSK declared its exchanges and queues (RabbitMQ refuses a difference).",
            f"amqp_durable_queues = {'true' if queues.durable else 'false'}",
        ]
        if queues.quorum:
            lines.append("rabbit_quorum_queue = true")
    if endpoint.tls:
        lines.append(f"ssl_ca_file = {files[endpoint.verifying_ca()]}")
        if "client_cert" in files:
            lines += [
                f"ssl_cert_file = {files['client_cert']}",
                f"ssl_key_file = {files['client_key']}",
            ]
    if certificate:
        lines.append("rabbit_login_method = EXTERNAL")
    lines += [
        "",
        "[reconcile]",
        '# MOSK\'s page: notification delivery "can not be guaranteed"; it recommends',
        '# "Periodic polling of the OpenStack API". This asks Nova for the servers deleted',
        "# since the last pass, at start and every interval_seconds (README).",
        "enabled = true",
        "",
        "[service_credentials]",
        "# An OpenStack account that may list every project's deleted servers",
        "# (GET /servers/detail?deleted=True&all_tenants=True): uncomment and fill in",
        "# the four lines below (until auth_url is there, --check-config refuses this).",
        "auth_type = password",
        "#auth_url = https://KEYSTONE:5000/v3",
        "#username = USER",
        "#password = PASSWORD",
        "#project_name = PROJECT",
        "user_domain_name = Default",
        "project_domain_name = Default",
        "# Nova's endpoint in the catalog: public (the default), internal or admin.",
        "interface = public",
    ]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``k2hr3-osnl mosk-config SECRET``: 0, or 2 with one line on what is wrong."""
    out, err = out or sys.stdout, err or sys.stderr
    source = "standard input" if args.secret == "-" else args.secret
    certificate = args.auth == "certificate"
    tls = args.connection == "tls"
    try:
        if certificate and not tls:
            raise SecretError("--auth certificate needs TLS: it cannot go with --connection plain")
        server_ca = _server_ca(args.server_ca) if args.server_ca else ""
        if args.secret == "-":
            text = sys.stdin.read()
        else:
            with open(args.secret, encoding="utf-8") as handle:
                text = handle.read()
        endpoint = parse(text, args.topic, Choice(tls, certificate, server_ca))
        check_usable(endpoint, password=not certificate)
        notes: list[str] = []
        if certificate:
            mismatch = login_mismatch(endpoint)
            if mismatch:
                notes.append(mismatch)
        directory = Path(args.dir or f"/etc/k2hr3-osnl/{endpoint.topic}").absolute()
        files = write_files(endpoint, directory)
        queues = Queues(DEFAULT_POOL if args.pool is None else args.pool)
        unchecked = None
        if tls and not args.no_check:
            pair = (files["client_cert"], files["client_key"]) if "client_cert" in files else None
            unchecked = check_broker(endpoint, files[endpoint.verifying_ca()], pair)
        if unchecked:
            notes.append(unchecked)
        elif not args.no_check:
            queues, unsure = choose_queues(endpoint, files, certificate=certificate, pool=args.pool)
            if unsure:
                notes.append(unsure)
    except SecretError as error:
        print(f"k2hr3-osnl mosk-config: {source}: {error}", file=err)
        return 2
    except (OSError, UnicodeDecodeError) as error:
        print(f"k2hr3-osnl mosk-config: {error}", file=err)
        return 2
    for note in notes:
        print(f"k2hr3-osnl mosk-config: warning: {note}", file=err)
    out.write(render(endpoint, files, certificate=certificate, queues=queues, notes=tuple(notes)))
    return 0


def _server_ca(path: str) -> str:
    """The text of ``--server-ca``, or :class:`SecretError` naming the option."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SecretError(
            f"--server-ca {path}: {getattr(error, 'strerror', None) or error}"
        ) from None
    _check_certificate(f"--server-ca {path}", text)
    return text


def add_parser(commands: Any) -> None:
    """The ``mosk-config`` subcommand, for cli.py."""
    m = commands.add_parser(
        "mosk-config",
        help="write the TLS files of a MOSK notification secret and print the config",
        description="Read 'kubectl -n openstack-external get secret "
        "openstack-TOPIC-notifications -o json' (or -o yaml), write the CA, client "
        "certificate and key the connection uses (mode 0600) and print the configuration "
        "sections that use them.",
    )
    m.add_argument("secret", metavar="SECRET", help="the secret's JSON or YAML file, or '-'")
    m.add_argument(
        "--topic",
        help="the topic, when the secret's name is not MOSK's 'openstack-TOPIC-notifications'",
    )
    m.add_argument(
        "--dir", metavar="DIR", help="where to write the PEM files (default /etc/k2hr3-osnl/TOPIC)"
    )
    m.add_argument(
        "--connection",
        choices=("tls", "plain"),
        default="tls",
        help="TLS on port_amqp-tls (default), or unencrypted AMQP on port_amqp",
    )
    m.add_argument(
        "--auth",
        choices=("password", "certificate"),
        default="password",
        help="log in with the secret's password, or with the client certificate (EXTERNAL)",
    )
    m.add_argument(
        "--server-ca",
        metavar="FILE",
        help="verify RabbitMQ's certificate with this CA instead of the secret's ca_cert "
        "(which MOSK calls the client CA certificate)",
    )
    m.add_argument(
        "--no-check",
        action="store_true",
        help="do not connect to the hosts (to verify RabbitMQ's certificate and ask what "
        "MOSK declared)",
    )
    m.add_argument(
        "--pool",
        help=f"the queue to declare and consume ('': MOSK's own); default: MOSK's own if "
        f"they exist, else {DEFAULT_POOL}",
    )
