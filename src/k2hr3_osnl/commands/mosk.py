"""``k2hr3-osnl mosk-config``: from MOSK's external notification secret to this daemon's config.

Mirantis OpenStack for Kubernetes hands an outside consumer one Kubernetes secret per
notification topic (``openstack-external/openstack-<topic>-notifications``, as its own
listing names it): the RabbitMQ ``hosts``, its plain
and TLS ports, ``vhost``, ``username``, ``password`` and the PEM ``ca_cert``,
``client_cert`` and ``client_key``. This module checks that secret, writes the three PEM
files where the daemon will read them (mode 0600: one of them is a private key) and
prints the configuration sections that use them. docs/mosk.md walks through the result.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import json
import os
import re
import ssl
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

FIELDS = (
    "hosts",
    "port_amqp",
    "port_amqp-tls",
    "vhost",
    "username",
    "password",
    "ca_cert",
    "client_cert",
    "client_key",
)
#: MOSK's rule for topic names: "lowercase alphanumeric characters, -, or ." (its own
#: example, ``external-consumer-A``, has a capital: accepted); ``notifications`` is
#: reserved.
TOPIC = re.compile(r"^[A-Za-z0-9.-]+$")
#: How MOSK names the secret of a topic, from the listing on its page.
SECRET_NAME = re.compile(r"^openstack-(?P<topic>.+)-notifications$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
#: The exchanges nova and neutron publish their notifications to.
EXCHANGES = ("nova", "neutron")
#: What oslo.messaging hands kombu unescaped (it quotes with ``safe="/"`` and passes the
#: vhost raw), so that kombu would misread it: refused rather than failing at connect.
_UNSAFE = {"username": "/", "password": "/", "vhost": "?#%;"}
#: The files written, by secret field.
FILES = {"ca_cert": "ca.pem", "client_cert": "client.pem", "client_key": "client.key"}


class SecretError(ValueError):
    """What is wrong with the secret, in one line."""


@dataclass(frozen=True)
class Endpoint:
    """One MOSK external notification topic, as its secret describes it."""

    topic: str
    hosts: tuple[str, ...]
    port_amqp: int
    port_tls: int
    vhost: str
    username: str
    password: str
    ca_cert: str
    client_cert: str
    client_key: str

    def transport_url(self, *, tls: bool = True, password: bool = True) -> str:
        """Every host on the TLS (or plain) port; without the password for EXTERNAL."""
        user = urllib.parse.quote(self.username, safe="")
        if password:
            user += ":" + urllib.parse.quote(self.password, safe="")
        port = self.port_tls if tls else self.port_amqp
        hosts = ",".join(f"{user}@{_url_host(host)}:{port}" for host in self.hosts)
        return f"rabbit://{hosts}/{urllib.parse.quote(self.vhost, safe='')}"


def parse(text: str, topic: str | None = None) -> Endpoint:
    """The secret (``kubectl get secret -o json``: base64 ``data``) or :class:`SecretError`.

    ``topic`` (``--topic``) wins over the one the secret's name gives.
    """
    try:
        secret = json.loads(text)
    except ValueError as error:
        raise SecretError(f"not JSON ({error})") from None
    if not isinstance(secret, dict):
        raise SecretError("not a Kubernetes secret: a JSON object is expected")
    values = _values(secret)
    missing = [name for name in FIELDS if not values.get(name, "").strip()]
    if missing:
        raise SecretError(f"missing or empty: {', '.join('data.' + m for m in missing)}")
    topic = check_topic(topic) if topic else topic_of(secret.get("metadata"))
    for name in ("ca_cert", "client_cert"):
        if "-----BEGIN CERTIFICATE-----" not in values[name]:
            raise SecretError(f"data.{name}: not a PEM certificate")
    if "PRIVATE KEY-----" not in values["client_key"]:
        raise SecretError("data.client_key: not a PEM private key")
    try:
        ssl.create_default_context(cadata=values["ca_cert"])
    except (ssl.SSLError, ValueError) as error:
        raise SecretError(f"data.ca_cert: the certificate does not parse ({error})") from None
    return Endpoint(
        topic=topic,
        hosts=_hosts(values["hosts"]),
        port_amqp=_port(values, "port_amqp"),
        port_tls=_port(values, "port_amqp-tls"),
        vhost=values["vhost"].strip(),
        username=values["username"].strip(),
        password=values["password"].strip(),
        ca_cert=values["ca_cert"],
        client_cert=values["client_cert"],
        client_key=values["client_key"],
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


def _values(secret: Mapping[str, Any]) -> dict[str, str]:
    """``data`` decoded from base64, with ``stringData`` (plain text) on top."""
    data, plain = secret.get("data", {}), secret.get("stringData", {})
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


def _hosts(text: str) -> tuple[str, ...]:
    """A JSON list, or addresses separated by commas or white space."""
    try:
        listed = json.loads(text)
    except ValueError:
        listed = re.split(r"[,\s]+", text.strip())
    if isinstance(listed, str):
        listed = [listed]
    if not isinstance(listed, list) or not listed:
        raise SecretError("data.hosts: a list of addresses is expected")
    hosts: list[str] = []
    for host in listed:
        host = str(host).strip().strip("[]")
        try:
            hosts.append(str(ipaddress.ip_address(host)))
        except ValueError:
            if not _HOSTNAME.match(host):
                raise SecretError(f"data.hosts: {host!r} is not an address") from None
            hosts.append(host)
    return tuple(hosts)


def _port(values: Mapping[str, str], name: str) -> int:
    text = values[name].strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SecretError(f"data.{name}: {text!r} is not a port number")
    return int(text)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def write_files(endpoint: Endpoint, directory: Path) -> dict[str, Path]:
    """The PEM files, mode 0600, each replaced at once; the client pair is checked first."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for field, name in FILES.items():
            staged[field] = _stage(directory, name, getattr(endpoint, field))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_cert_chain(staged["client_cert"], staged["client_key"], password=_no)
        except (ssl.SSLError, ValueError) as error:
            raise SecretError(
                "data.client_cert and data.client_key: not a certificate with its matching "
                f"unencrypted private key ({error})"
            ) from None
        written = {}
        for field, name in FILES.items():
            os.replace(staged.pop(field), directory / name)
            written[field] = directory / name
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


def render(endpoint: Endpoint, files: Mapping[str, Path], *, certificate: bool, pool: str) -> str:
    """The sections to paste into the daemon's configuration file."""
    how = (
        "client certificate (SASL EXTERNAL: RabbitMQ takes the user from the certificate)"
        if certificate
        else "password, over TLS with the client certificate"
    )
    lines = [
        f"# MOSK topic {endpoint.topic!r}: vhost {endpoint.vhost!r}, user "
        f"{endpoint.username!r}, {how}.",
        "# exchange: where nova and neutron publish; check with",
        f"#   rabbitmqctl list_bindings -p {endpoint.vhost}   (docs/mosk.md)",
        "[oslo_messaging_notifications]",
        f"transport_url = {endpoint.transport_url(password=not certificate)}",
        f"exchange = {', '.join(EXCHANGES)}",
        f"topic = {endpoint.topic}",
        "# The queue this daemon declares and consumes; empty: MOSK's own",
        f"# '{endpoint.topic}.<priority>' queues (when the account may not declare one).",
        f"pool = {pool}",
        "",
        "[oslo_messaging_rabbit]",
        "ssl = true",
        f"ssl_ca_file = {files['ca_cert']}",
        f"ssl_cert_file = {files['client_cert']}",
        f"ssl_key_file = {files['client_key']}",
    ]
    if certificate:
        lines.append("rabbit_login_method = EXTERNAL")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``k2hr3-osnl mosk-config SECRET``: 0, or 2 with one line on what is wrong."""
    out, err = out or sys.stdout, err or sys.stderr
    source = "standard input" if args.secret == "-" else args.secret
    try:
        if args.secret == "-":
            text = sys.stdin.read()
        else:
            with open(args.secret, encoding="utf-8") as handle:
                text = handle.read()
        endpoint = parse(text, args.topic)
        check_usable(endpoint, password=args.auth == "password")
        directory = Path(args.dir or f"/etc/k2hr3-osnl/{endpoint.topic}").absolute()
        files = write_files(endpoint, directory)
    except SecretError as error:
        print(f"k2hr3-osnl mosk-config: {source}: {error}", file=err)
        return 2
    except (OSError, UnicodeDecodeError) as error:
        print(f"k2hr3-osnl mosk-config: {error}", file=err)
        return 2
    out.write(render(endpoint, files, certificate=args.auth == "certificate", pool=args.pool))
    return 0


def add_parser(commands: Any) -> None:
    """The ``mosk-config`` subcommand, for cli.py."""
    m = commands.add_parser(
        "mosk-config",
        help="write the TLS files of a MOSK notification secret and print the config",
        description="Read the JSON of 'kubectl -n openstack-external get secret "
        "openstack-TOPIC-notifications -o json', "
        "write its CA, client certificate and key (mode 0600) and print the configuration "
        "sections that use them.",
    )
    m.add_argument("secret", metavar="SECRET", help="the secret's JSON file, or '-'")
    m.add_argument(
        "--topic",
        help="the topic, when the secret's name is not MOSK's 'openstack-TOPIC-notifications'",
    )
    m.add_argument(
        "--dir", metavar="DIR", help="where to write the PEM files (default /etc/k2hr3-osnl/TOPIC)"
    )
    m.add_argument(
        "--auth",
        choices=("password", "certificate"),
        default="password",
        help="log in with the secret's password, or with the client certificate (EXTERNAL)",
    )
    m.add_argument(
        "--pool", default="k2hr3_osnl", help="the queue to consume (default %(default)s)"
    )
