"""MOSK's external notification endpoint, end to end, on a RabbitMQ node of the test's own.

The node looks like what MOSK gives an outside consumer: a TLS listener whose server
certificate comes from a CA in the secret, a vhost, a user allowed only on that vhost,
and the ``rabbitmq_auth_mechanism_ssl`` plugin for logins by client certificate. The
daemon is configured the way docs/mosk.md says: the secret's JSON through
``k2hr3-osnl mosk-config``, whose printed sections are pasted into a config file.

Each broken set-up must give one clear line in the daemon's log, naming what to fix,
and no crash loop: the daemon keeps running and retries, as it does for any broker fault.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.broker import PRIORITIES, Broker
from support.daemon import Daemon, write_config
from support.k2hr3_standin import FakeK2HR3
from support.mosk_secret import as_yaml, secret
from support.notifiers import Notifiers
from support.openstack_standin import OpenStackStandIn
from support.rabbitmq_node import Node, make_nodes, running
from support.samples import neutron_port_delete, nova_versioned_delete
from support.tls_certs import Pki, client_certificate, make_pki
from support.waiting import wait_until

pytestmark = [pytest.mark.mosk, pytest.mark.timeout(240)]

#: The installed console script, as the operator runs it.
COMMAND = str(Path(sys.executable).with_name("k2hr3-osnl"))
TOPIC = "external-consumer-a"
VHOST = "openstack"
USER, PASSWORD = TOPIC, "mosk-Pa55:w@rd;%"
ADMIN = "admin"
#: A user that exists but may not use the vhost.
OUTSIDER = "outsider"
#: A user that may declare the exchanges and MOSK's queues, but no queue of its own.
NO_QUEUE = "no-queue"
EXCHANGES = ("neutron", "nova")
#: A vhost whose publishers declare durable exchanges and queues (MOSK's durability is
#: not on its page: both kinds are tested).
VHOST_DURABLE = "openstack-durable"
#: ...and one whose publishers declare quorum queues.
VHOST_QUORUM = "openstack-quorum"

TLS_CONF = """
listeners.ssl.default = 127.0.0.1:{tls_port}
ssl_options.cacertfile = {ca}
ssl_options.certfile = {cert}
ssl_options.keyfile = {key}
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
load_definitions = {definitions}
"""


def _password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4)
    return b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _definitions() -> dict[str, object]:
    """What the cloud administrator set up: the vhost, its users and their rights."""
    users = [(ADMIN, "administrator"), (USER, ""), (OUTSIDER, ""), (NO_QUEUE, "")]
    everything = ".*"
    # MOSK's model: the exchanges and the queues made for the topic, nothing of its own.
    mosk_made = rf"^(nova|neutron|{TOPIC}\..+)$"
    return {
        "users": [
            {
                "name": name,
                "password_hash": _password_hash(PASSWORD if name != ADMIN else ADMIN),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": tags,
            }
            for name, tags in users
        ],
        "vhosts": [{"name": VHOST}, {"name": VHOST_DURABLE}, {"name": VHOST_QUORUM}],
        "permissions": [
            *({"user": name, "vhost": vhost, "configure": everything,
               "write": everything, "read": everything}
              for name in (ADMIN, USER) for vhost in (VHOST_DURABLE, VHOST_QUORUM)),
            {"user": ADMIN, "vhost": VHOST, "configure": everything, "write": everything,
             "read": everything},
            {"user": USER, "vhost": VHOST, "configure": everything, "write": everything,
             "read": everything},
            {"user": NO_QUEUE, "vhost": VHOST, "configure": mosk_made,
             "write": everything, "read": everything},
        ],
    }  # fmt: skip


@dataclass
class Mosk:
    """The node, its PKI and the client certificates of every scenario."""

    node: Node
    pki: Pki
    #: CN = USER: what an EXTERNAL login maps to the user.
    client: tuple[Path, Path]
    expired: tuple[Path, Path]
    #: A client certificate from a CA the broker does not trust.
    stranger: tuple[Path, Path]
    stranger_ca: Path

    def admin_url(self, scheme: str = "amqp") -> str:
        return self.node.amqp_url(ADMIN, ADMIN, VHOST, scheme)


@pytest.fixture(scope="module")
def mosk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosk]:
    base = tmp_path_factory.mktemp("mosk")
    pki = make_pki(base / "pki")
    other = make_pki(base / "other-pki")
    definitions = base / "definitions.json"
    definitions.write_text(json.dumps(_definitions()))
    conf = TLS_CONF.format(
        tls_port="{tls_port}",
        ca=pki.ca,
        cert=pki.server_cert,
        key=pki.server_key,
        definitions=definitions,
    )
    (node,) = make_nodes(base, 1, conf=conf, plugins=["rabbitmq_auth_mechanism_ssl"], tls=True)
    with running([node]):
        yield Mosk(
            node=node,
            pki=pki,
            client=client_certificate(base / "pki", "consumer", USER),
            expired=client_certificate(base / "pki", "expired", USER, days=-1),
            stranger=(other.client_cert, other.client_key),
            stranger_ca=other.ca,
        )


@dataclass
class Setup:
    """One test's daemon configured from the secret, and its publishers."""

    mosk: Mosk
    tmp_path: Path
    k2hr3: FakeK2HR3
    pool: str
    #: Keystone and Nova, for the [service_credentials] the operator fills in.
    openstack: OpenStackStandIn

    def __post_init__(self) -> None:
        self.broker = Broker(self.mosk.admin_url())
        self.notifiers = Notifiers(self.mosk.admin_url("rabbit"))
        self.daemons: list[Daemon] = []
        #: What the last mosk_config() said on standard error.
        self.warnings = ""

    def secret(self, fmt: str = "json", **overrides: str | None) -> Path:
        cert, key = self.mosk.client
        document = secret(
            TOPIC,
            hosts=["127.0.0.1"],
            port_amqp=self.mosk.node.port,
            port_tls=self.mosk.node.tls_port or 0,
            vhost=VHOST,
            username=USER,
            password=PASSWORD,
            ca_cert=self.mosk.pki.ca,
            client_cert=cert,
            client_key=key,
            overrides=overrides,
        )
        path = self.tmp_path / f"secret.{fmt}"
        path.write_text(json.dumps(document) if fmt == "json" else as_yaml(document))
        return path

    def run_mosk_config(
        self, secret_file: Path, *args: str, pool: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``k2hr3-osnl mosk-config``, as the operator runs it (``pool``: ``--pool`` ours)."""
        ours = ["--pool", self.pool] if pool else []
        return subprocess.run(
            [COMMAND, "mosk-config", str(secret_file),
             "--dir", str(self.tmp_path / "tls"), *ours, *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def mosk_config(self, secret_file: Path, *args: str, pool: bool = True) -> str:
        """The printed sections, with the account the operator fills in."""
        result = self.run_mosk_config(secret_file, *args, pool=pool)
        assert result.returncode == 0, result.stderr
        self.warnings = result.stderr
        return fill_in(result.stdout, self.openstack)

    def daemon(self, sections: str, queues: list[str] | None = None) -> Daemon:
        """The site's own config file, then the pasted MOSK sections (later files win)."""
        log_file = self.tmp_path / "k2hr3-osnl.log"
        base = write_config(
            self.tmp_path / "k2hr3-osnl.conf",
            transport_url="rabbit://replaced-by-mosk.conf",
            api_url=self.k2hr3.url,
            exchanges=["replaced"],
            topics=["replaced"],
            pool="replaced",
            state_dir=self.tmp_path / "state",
            log_file=log_file,
        )
        pasted = self.tmp_path / "mosk.conf"
        pasted.write_text(sections)
        daemon = Daemon(
            base, log_file, [self.pool] if queues is None else queues, self.broker,
            args=["-c", str(pasted)],
        )  # fmt: skip
        self.daemons.append(daemon)
        return daemon

    def publish_deletions(self) -> set[str]:
        """A nova and a neutron deletion, as MOSK's services publish them on TOPIC."""
        vm, port_vm = str(uuid.uuid4()), str(uuid.uuid4())
        event, publisher, payload = nova_versioned_delete(vm)
        self.notifiers.notify("nova", TOPIC, "messagingv2", event, payload, publisher)
        event, publisher, payload = neutron_port_delete(port_vm, ["10.0.0.5"])
        self.notifiers.notify("neutron", TOPIC, "messagingv2", event, payload, publisher)
        return {vm, port_vm}

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        self.notifiers.close()
        if self.pool:
            self.broker.delete([self.pool])


def fill_in(printed: str, openstack: OpenStackStandIn) -> str:
    """What the operator does to the printed [service_credentials]: the account's values."""
    account = openstack.credentials()
    for name in ("auth_url", "username", "password", "project_name"):
        line = next(ln for ln in printed.splitlines() if ln.startswith(f"#{name} = "))
        printed = printed.replace(line, f"{name} = {account[name]}")
    return printed.replace("interface = public", f"interface = {account['interface']}")


@pytest.fixture
def openstack() -> Iterator[OpenStackStandIn]:
    server = OpenStackStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def setup(
    mosk: Mosk, tmp_path: Path, k2hr3: FakeK2HR3, unique: str, openstack: OpenStackStandIn
) -> Iterator[Setup]:
    s = Setup(mosk, tmp_path, k2hr3, f"k2hr3_osnl_{unique}", openstack)
    yield s
    s.close()


def delivered(k2hr3: FakeK2HR3) -> set[str]:
    return {cuk for cuk, _ in k2hr3.deleted()}


def deliver(setup: Setup, daemon: Daemon) -> None:
    cuks = setup.publish_deletions()
    try:
        wait_until(lambda: delivered(setup.k2hr3) >= cuks, 30, "both deletions at K2HR3")
    except AssertionError as error:
        raise AssertionError(daemon.report(str(error))) from None


def lost_on_the_bus(setup: Setup) -> str:
    """A VM deleted in Nova whose notification never came: polling must find it."""
    server = setup.openstack.create()
    setup.openstack.delete(server)
    return server.id


def polled(setup: Setup, daemon: Daemon, lost: str) -> None:
    """The first pass, a few seconds after the daemon consumes, finds ``lost``."""
    try:
        wait_until(lambda: lost in delivered(setup.k2hr3), 60, "the polled deletion")
    except AssertionError as error:
        raise AssertionError(daemon.report(str(error))) from None


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_delivers_over_tls_with_the_secrets_password(setup: Setup, fmt: str) -> None:
    """The secret as MOSK names it, from kubectl -o json or -o yaml, to deletions."""
    lost = lost_on_the_bus(setup)
    sections = setup.mosk_config(setup.secret(fmt))
    assert setup.warnings == ""  # the broker's certificate verified, its queues asked for
    daemon = setup.daemon(sections).start()
    deliver(setup, daemon)
    polled(setup, daemon, lost)
    assert f":{setup.mosk.node.tls_port}" in daemon.log()  # the TLS port, as configured
    assert daemon.stop() == 0


def test_delivers_with_only_the_keys_a_tls_password_login_uses(setup: Setup) -> None:
    """No plain port and no client pair in the secret (where RabbitMQ does not ask for one)."""
    secret_file = setup.secret(port_amqp=None, client_cert=None, client_key=None)
    sections = setup.mosk_config(secret_file)
    assert "ssl_cert_file" not in sections and setup.warnings == ""
    daemon = setup.daemon(sections).start()
    deliver(setup, daemon)
    assert daemon.stop() == 0


def test_delivers_over_tls_with_certificate_authentication(setup: Setup) -> None:
    sections = setup.mosk_config(setup.secret(), "--auth", "certificate")
    assert "rabbit_login_method = EXTERNAL" in sections and PASSWORD not in sections
    assert setup.warnings == ""  # the broker checked and asked, with the certificate too
    lost = lost_on_the_bus(setup)
    daemon = setup.daemon(sections).start()
    deliver(setup, daemon)
    polled(setup, daemon, lost)
    users = setup.mosk.node.ctl("list_connections", "user", "auth_mechanism", "ssl", "-p", VHOST)
    assert f"{USER}\tEXTERNAL\ttrue" in users
    assert daemon.stop() == 0


#: What a refused client certificate may look like under TLS 1.3, where the broker can
#: close the connection before the client reads its alert: said once, as its own line.
HANDSHAKE_CLOSED = "RabbitMQ closed the TLS handshake: it refused the client certificate"


def failing(
    setup: Setup, daemon: Daemon | str, expected: str, stop: bool = True, alike: str = ""
) -> str:
    """The daemon keeps running and says ``expected`` (or ``alike``) in one line each."""
    if isinstance(daemon, str):
        daemon = setup.daemon(daemon)
    daemon.start(wait=False)
    wanted = [w for w in (expected, alike) if w]
    try:
        line = wait_until(
            lambda: next(
                (ln for ln in daemon.log().splitlines() if any(w in ln for w in wanted)), None
            ),
            45,
            f"a log line with {' or '.join(map(repr, wanted))}",
            interval=0.2,
        )
    except AssertionError as error:
        raise AssertionError(daemon.report(str(error))) from None
    time.sleep(3)
    assert daemon.alive, daemon.report("the daemon exited instead of retrying")
    log = daemon.log()
    assert "Traceback" not in log, daemon.report("a traceback instead of one line")
    assert "cannot start the listener" not in log, daemon.report("a start that gave up")
    for text in wanted:
        said = sum(text in ln for ln in log.splitlines())
        assert said <= 1, daemon.report(f"{text!r} said {said} times, not once")
    if stop:
        assert daemon.stop() == 0
    return line


def test_wrong_ca_is_one_line(setup: Setup) -> None:
    secret_file = setup.secret(ca_cert=setup.mosk.stranger_ca.read_text())
    sections = setup.mosk_config(secret_file, "--no-check")
    failing(setup, sections, "ssl_ca_file must hold the CA that signed it")


def test_mosk_config_says_when_the_secrets_ca_does_not_verify_the_broker(setup: Setup) -> None:
    """MOSK calls ca_cert "the client CA certificate": the broker's CA may be another."""
    secret_file = setup.secret(ca_cert=setup.mosk.stranger_ca.read_text())
    result = setup.run_mosk_config(secret_file)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"k2hr3-osnl mosk-config: {secret_file}: 127.0.0.1:{setup.mosk.node.tls_port}: "
        "RabbitMQ's certificate is not signed by the CA of data.ca_cert (self-signed "
        "certificate in certificate chain): give the CA that signed it with --server-ca FILE\n"
    )
    sections = setup.mosk_config(secret_file, "--server-ca", str(setup.mosk.pki.ca))
    daemon = setup.daemon(sections).start()
    deliver(setup, daemon)
    assert daemon.stop() == 0


def test_expired_client_certificate_is_one_line(setup: Setup) -> None:
    cert, key = setup.mosk.expired
    secret_file = setup.secret(client_cert=cert.read_text(), client_key=key.read_text())
    failing(
        setup,
        setup.mosk_config(secret_file, "--auth", "certificate"),
        "refused the client certificate ([oslo_messaging_rabbit] ssl_cert_file): it has expired",
        alike=HANDSHAKE_CLOSED,
    )


def test_client_certificate_of_another_ca_is_one_line(setup: Setup) -> None:
    cert, key = setup.mosk.stranger
    secret_file = setup.secret(client_cert=cert.read_text(), client_key=key.read_text())
    failing(
        setup,
        setup.mosk_config(secret_file, "--auth", "certificate"),
        "ssl_cert_file): RabbitMQ does not trust the CA that issued it",
        alike=HANDSHAKE_CLOSED,
    )


def test_vhost_access_refused_is_one_line_and_heals_once_granted(setup: Setup) -> None:
    secret_file = setup.secret(username=OUTSIDER)
    daemon = setup.daemon(setup.mosk_config(secret_file))
    failing(
        setup,
        daemon,
        f"user '{OUTSIDER}' may not use vhost '{VHOST}': the vhost of transport_url is wrong",
        stop=False,
    )
    node = setup.mosk.node
    node.ctl("set_permissions", "-p", VHOST, OUTSIDER, ".*", ".*", ".*")
    try:
        daemon.wait_listening(timeout=90)  # the next attempt, 5 s then 10 s later
        deliver(setup, daemon)
    finally:
        node.ctl("clear_permissions", "-p", VHOST, OUTSIDER)
    assert daemon.stop() == 0


def test_queue_declare_refused_names_the_permission(setup: Setup) -> None:
    secret_file = setup.secret(username=NO_QUEUE)
    failing(
        setup,
        setup.mosk_config(secret_file),
        f"user '{NO_QUEUE}' lacks the configure permission on queue '{setup.pool}'",
    )


def test_without_a_queue_of_its_own_it_consumes_the_queues_mosk_made(setup: Setup) -> None:
    """``pool =`` empty: the listener takes MOSK's ``<topic>.<priority>`` queues."""
    secret_file = setup.secret(username=NO_QUEUE)
    setup.pool = ""
    sections = setup.mosk_config(secret_file)
    assert "\npool = \n" in sections
    setup.publish_deletions()  # the publishers' side declares MOSK's queues
    daemon = setup.daemon(sections, queues=[f"{TOPIC}.{p}" for p in PRIORITIES]).start()
    deliver(setup, daemon)
    assert daemon.stop() == 0


def test_wrong_password_is_one_line(setup: Setup) -> None:
    secret_file = setup.secret(password="not-the-password")
    failing(
        setup,
        setup.mosk_config(secret_file),
        "RabbitMQ refused the user name or password of transport_url",
    )


def test_tls_on_the_plain_port_is_one_line(setup: Setup) -> None:
    secret_file = setup.secret(**{"port_amqp-tls": str(setup.mosk.node.port)})
    result = setup.run_mosk_config(secret_file)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"k2hr3-osnl mosk-config: {secret_file}: 127.0.0.1:{setup.mosk.node.port} does not "
        "speak TLS: is data.port_amqp-tls the plain port? (--connection plain connects "
        "without TLS)\n"
    )
    failing(
        setup,
        setup.mosk_config(secret_file, "--no-check"),
        "the port of transport_url does not speak TLS (ssl = true)",
    )


def test_mosk_config_consumes_mosks_own_queues_declared_as_they_are(setup: Setup) -> None:
    """MOSK's services made the topic's queues (durable here): the daemon reads them.

    oslo.messaging's notifier declares ``<topic>.<priority>`` bound to its exchange on
    its first notification, durable if its amqp_durable_queues says so. Without --pool,
    mosk-config finds them and prints ``pool =`` (empty) and their durability, so what
    MOSK kept before the daemon's first start is delivered too.
    """
    node = setup.mosk.node
    setup.notifiers.close()
    setup.notifiers = Notifiers(node.amqp_url(ADMIN, ADMIN, VHOST_DURABLE, "rabbit"), durable=True)
    setup.broker = Broker(node.amqp_url(ADMIN, ADMIN, VHOST_DURABLE))
    setup.pool = ""
    kept = setup.publish_deletions()  # before the daemon ever ran
    sections = setup.mosk_config(setup.secret(vhost=VHOST_DURABLE), pool=False)
    assert f"# Found: MOSK's queue '{TOPIC}.info' exists: consumed.\npool = \n" in sections
    assert "\namqp_durable_queues = true\n" in sections
    daemon = setup.daemon(sections, queues=[f"{TOPIC}.{p}" for p in PRIORITIES]).start()
    try:
        wait_until(lambda: delivered(setup.k2hr3) >= kept, 30, "what MOSK's queue kept")
    except AssertionError as error:
        raise AssertionError(daemon.report(str(error))) from None
    deliver(setup, daemon)
    assert daemon.stop() == 0


def test_mosk_config_declares_a_queue_of_its_own_when_mosk_made_none(setup: Setup) -> None:
    result = setup.run_mosk_config(setup.secret(), "--topic", "no-such-topic", pool=False)
    assert result.returncode == 0, result.stderr
    assert (
        "# Found: MOSK's queue 'no-such-topic.info' is not there: the daemon declares a queue "
        "of its own.\npool = k2hr3_osnl\n"
    ) in result.stdout


def test_mosk_config_finds_quorum_queues(setup: Setup) -> None:
    node = setup.mosk.node
    notifiers = Notifiers(
        node.amqp_url(ADMIN, ADMIN, VHOST_QUORUM, "rabbit"), durable=True, quorum=True
    )
    try:
        event, publisher, payload = nova_versioned_delete(str(uuid.uuid4()))
        notifiers.notify("nova", TOPIC, "messagingv2", event, payload, publisher)
    finally:
        notifiers.close()
    result = setup.run_mosk_config(setup.secret(vhost=VHOST_QUORUM), pool=False)
    assert result.returncode == 0, result.stderr
    assert "\npool = \n" in result.stdout
    assert "\namqp_durable_queues = true\nrabbit_quorum_queue = true\n" in result.stdout
