"""``k2hr3-osnl mosk-config``: MOSK's secret in, PEM files and config sections out.

The secret is shaped like ``kubectl -n openstack-external get secret TOPIC -o json``
(base64 ``data``); the printed sections must load as the daemon's own configuration and
name every host, the TLS port and the vhost. Bad input is one line and exit 2.
"""

from __future__ import annotations

import io
import itertools
import json
import stat
import subprocess
import sys
import types
import urllib.parse
from pathlib import Path

import oslo_messaging
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oslo_config import cfg
from support.mosk_secret import as_yaml, secret
from support.tls_certs import Pki, client_certificate, make_pki

from k2hr3_osnl import config
from k2hr3_osnl.commands import cli, mosk

TOPIC = "external-consumer-a"
HOSTS = ["10.10.0.11", "10.10.0.12", "fd00::13"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"))


def mosk_secret(pki: Pki, **overrides: str | None) -> dict[str, object]:
    return secret(
        TOPIC,
        hosts=HOSTS,
        port_amqp=5672,
        port_tls=5671,
        vhost="openstack",
        username="external-consumer-a",
        password="s3cret;with:odd@chars%",
        ca_cert=pki.ca,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        overrides=overrides,
    )


def run(
    tmp_path: Path, document: object, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    path = tmp_path / "secret.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    # --no-check: the hosts are made up, nothing is to be asked there.
    command = ["mosk-config", str(path), "--dir", str(tmp_path / "tls"), "--no-check", *args]
    status = cli.main(command)
    out, err = capsys.readouterr()
    return status, out, err


#: What --check-config says of the printed [service_credentials] until it is filled in.
AUTH_URL_TO_FILL_IN = (
    "[service_credentials]: Auth plugin requires parameters which were not given: auth_url"
)


def load_printed(tmp_path: Path, printed: str) -> config.cfg.ConfigOpts:
    path = tmp_path / "pasted.conf"
    path.write_text(printed)
    return config.load([str(path)])


def test_writes_the_pem_files_mode_0600(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(tmp_path, mosk_secret(pki), capsys=capsys)
    assert (status, err) == (0, "")
    for name, source in (
        ("ca.pem", pki.ca),
        ("client.pem", pki.client_cert),
        ("client.key", pki.client_key),
    ):
        written = tmp_path / "tls" / name
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, name
        assert written.read_text() == source.read_text()
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == [
        "ca.pem",
        "client.key",
        "client.pem",
    ]


def test_printed_sections_load_as_the_daemons_configuration(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(tmp_path, mosk_secret(pki), capsys=capsys)
    assert status == 0
    conf = load_printed(tmp_path, out)
    assert config.problems(conf) == [AUTH_URL_TO_FILL_IN]
    n, r = conf.oslo_messaging_notifications, conf.oslo_messaging_rabbit
    url = oslo_messaging.TransportURL.parse(conf, n.transport_url)
    assert [(h.hostname, h.port) for h in url.hosts] == [(h, 5671) for h in HOSTS]
    assert {(h.username, h.password) for h in url.hosts} == {
        ("external-consumer-a", "s3cret;with:odd@chars%")
    }
    assert url.virtual_host == "openstack"
    assert (n.exchange, n.topic, n.pool) == (["neutron", "nova"], [TOPIC], "k2hr3_osnl")
    assert r.ssl is True
    assert (r.ssl_ca_file, r.ssl_cert_file, r.ssl_key_file) == (
        str(tmp_path / "tls" / "ca.pem"),
        str(tmp_path / "tls" / "client.pem"),
        str(tmp_path / "tls" / "client.key"),
    )
    assert r.rabbit_login_method == "AMQPLAIN"  # the default: the password
    assert "rabbitmqctl list_bindings -p openstack" in out


def test_certificate_authentication_is_external_and_prints_no_password(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(tmp_path, mosk_secret(pki), "--auth", "certificate", capsys=capsys)
    assert status == 0
    conf = load_printed(tmp_path, out)
    assert conf.oslo_messaging_rabbit.rabbit_login_method == "EXTERNAL"
    assert "s3cret" not in out
    url = oslo_messaging.TransportURL.parse(conf, conf.oslo_messaging_notifications.transport_url)
    assert [h.password for h in url.hosts] == [None, None, None]


def test_reads_the_secret_from_standard_input(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(mosk_secret(pki))))
    assert cli.main(["mosk-config", "-", "--dir", str(tmp_path / "tls"), "--no-check"]) == 0
    assert f"topic = {TOPIC}" in capsys.readouterr().out


GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "neither JSON (Expecting property name"),
        ("[1, 2]", "a JSON or YAML object is expected"),
        ({"kind": "Secret", "metadata": {"name": TOPIC}}, "no 'data' object"),
        (
            {"kind": "List", "items": [{}, {}]},
            "a list of 2 objects, not one secret: give the secret's name",
        ),
        ({"password": None}, "data.password is missing or empty: the password login sends it"),
        (
            {"hosts": "", "vhost": None},
            "data.hosts is missing or empty: the addresses to connect to; "
            "data.vhost is missing or empty: the virtual host MOSK made the topic's queues on",
        ),
        ({"ca_cert": GARBAGE_PEM}, "data.ca_cert: the certificate does not parse"),
        ({"ca_cert": "hello"}, "data.ca_cert: not a PEM certificate"),
        ({"client_cert": GARBAGE_PEM}, "data.client_cert: the certificate does not parse"),
        ({"client_key": "nothing"}, "data.client_key: not a PEM private key"),
        ({"port_amqp-tls": "56x"}, "data.port_amqp-tls: '56x' is not a port number"),
        ({"port_amqp-tls": "70000"}, "data.port_amqp-tls: '70000' is not a port number"),
        ({"hosts": '["10.0.0.1", "bad host"]'}, "data.hosts: 'bad host' is not an address"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    document: object,
    expected: str,
) -> None:
    if isinstance(document, dict) and "kind" not in document:
        document = mosk_secret(pki, **document)
    status, out, err = run(tmp_path, document, capsys=capsys)
    assert status == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert expected in err
    assert not (tmp_path / "tls").exists() or not list((tmp_path / "tls").iterdir())


def test_a_key_of_another_certificate_is_refused_and_nothing_is_written(
    tmp_path: Path, pki: Pki, other_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    document = mosk_secret(pki, client_key=other_pki.client_key.read_text())
    status, _, err = run(tmp_path, document, capsys=capsys)
    assert status == 2
    assert "not a certificate with its matching unencrypted private key" in err
    assert list((tmp_path / "tls").iterdir()) == []


def test_secret_field_not_base64_and_bad_topic(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    document = mosk_secret(pki)
    document["data"]["vhost"] = "%%%"  # type: ignore[index]
    status, _, err = run(tmp_path, document, capsys=capsys)
    assert (status, err.strip()) == (
        2,
        f"k2hr3-osnl mosk-config: {tmp_path / 'secret.json'}: data.vhost: not base64 of UTF-8 text",
    )
    document = mosk_secret(pki)
    document["metadata"] = {"name": "openstack-notifications-notifications"}
    status, _, err = run(tmp_path, document, capsys=capsys)
    assert status == 2 and "its topic 'notifications' is not a MOSK topic name" in err


def test_the_topic_is_taken_from_the_name_mosk_gives_the_secret(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """MOSK's listing: the topic ``external-consumer-A`` has the secret
    ``openstack-external-consumer-A-notifications``; nova and neutron publish on the topic."""
    document = mosk_secret(pki)
    assert document["metadata"] == {  # type: ignore[comparison-overlap]
        "name": f"openstack-{TOPIC}-notifications",
        "namespace": "openstack-external",
    }
    status, out, _ = run(tmp_path, document, capsys=capsys)
    assert status == 0
    assert load_printed(tmp_path, out).oslo_messaging_notifications.topic == [TOPIC]
    document["metadata"] = {"name": "openstack-external-consumer-A-notifications"}
    status, out, _ = run(tmp_path, document, capsys=capsys)
    assert load_printed(tmp_path, out).oslo_messaging_notifications.topic == ["external-consumer-A"]


def test_a_secret_named_otherwise_needs_the_topic_given(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name not of MOSK's form is not guessed into a topic nobody publishes on."""
    document = mosk_secret(pki)
    document["metadata"] = {"name": TOPIC, "namespace": "openstack-external"}
    status, out, err = run(tmp_path, document, capsys=capsys)
    assert (status, out) == (2, "")
    assert err.strip().endswith(
        f"metadata.name '{TOPIC}' is not MOSK's 'openstack-<topic>-notifications': "
        "give the topic with --topic"
    )
    status, out, _ = run(tmp_path, document, "--topic", "billing.events", capsys=capsys)
    assert status == 0
    assert load_printed(tmp_path, out).oslo_messaging_notifications.topic == ["billing.events"]
    status, _, err = run(tmp_path, document, "--topic", "notifications", capsys=capsys)
    assert status == 2 and "--topic 'notifications' is not a MOSK topic name" in err


def test_missing_secret_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["mosk-config", str(tmp_path / "absent.json")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


#: Printable text that UTF-8 can carry: no surrogates, no control characters. Written
#: with the arguments hypothesis 6.67 (Debian 12) already has.
TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xD7FF).filter(
        lambda c: not 0x7F <= ord(c) <= 0x9F
    ),
    min_size=1,
)


def kombu_sees(endpoint: mosk.Endpoint, password: bool) -> list[tuple[str, str | None, str]]:
    """What kombu reads from the URLs oslo.messaging's rabbit driver builds from ours."""
    from kombu.utils.url import url_to_parts
    from oslo_messaging._drivers import impl_rabbit

    url = oslo_messaging.TransportURL.parse(
        config.new_conf(), endpoint.transport_url(password=password)
    )
    # The driver's own transformation, on a stand-in for its instance: releases up to 14
    # (Debian 12) also ask it to bracket an IPv6 host, which uses no state.
    driver = impl_rabbit.Connection
    instance = types.SimpleNamespace(
        _parse_url_hostname=lambda name: driver._parse_url_hostname(None, name)
    )
    seen = []
    for host in url.hosts:
        parts = url_to_parts(driver._transform_transport_url(instance, url, host))
        seen.append((parts.username, parts.password if password else None, parts.path))
    return seen


@settings(max_examples=300, deadline=None)
@given(username=TEXT, password=TEXT, vhost=TEXT, certificate=st.booleans())
def test_what_mosk_config_accepts_reaches_rabbitmq_unchanged(
    username: str, password: str, vhost: str, certificate: bool
) -> None:
    """Any user, password and vhost either arrive intact at kombu, or are refused."""
    endpoint = mosk.Endpoint(TOPIC, tuple((h, 5671) for h in HOSTS), vhost, username, password)
    try:
        mosk.check_usable(endpoint, password=not certificate)
    except mosk.SecretError as error:
        assert "does not escape" in str(error)
        return
    expected = (username, None if certificate else password, vhost)
    assert kombu_sees(endpoint, not certificate) == [expected] * len(HOSTS)


def test_a_password_with_a_slash_is_refused_unless_certificates_log_in(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    document = mosk_secret(pki, password="a/b")
    status, _, err = run(tmp_path, document, capsys=capsys)
    assert status == 2
    assert err.strip().endswith(
        "data.password contains '/', which oslo.messaging does not escape on its way to "
        "RabbitMQ; use --auth certificate"
    )
    assert run(tmp_path, document, "--auth", "certificate", capsys=capsys)[0] == 0


# --- issue 22: MOSK as MOSK documents it ---------------------------------------------


def config_of(tmp_path: Path, printed: str) -> dict[str, dict[str, str]]:
    """The printed sections, option by option, as the daemon would read them."""
    conf = load_printed(tmp_path, printed)
    n, r = conf.oslo_messaging_notifications, conf.oslo_messaging_rabbit
    url = oslo_messaging.TransportURL.parse(conf, n.transport_url)
    return {
        "url": {
            "hosts": " ".join(f"{h.hostname}:{h.port}" for h in url.hosts),
            "users": " ".join(sorted({f"{h.username}:{h.password}" for h in url.hosts})),
            "vhost": url.virtual_host or "",
        },
        "rabbit": {
            "ssl": str(r.ssl),
            "files": " ".join(
                Path(f).name if f else "-" for f in (r.ssl_ca_file, r.ssl_cert_file, r.ssl_key_file)
            ),
            "login": r.rabbit_login_method,
        },
    }


@pytest.mark.parametrize(
    ("removed", "args", "expected"),
    [
        # TLS and password: the plain port and the client pair are not used.
        (
            ["port_amqp", "client_cert", "client_key"],
            [],
            {"ssl": "True", "files": "ca.pem - -", "login": "AMQPLAIN"},
        ),
        # TLS and certificate: no password is sent, so none is needed.
        (
            ["port_amqp", "password"],
            ["--auth", "certificate"],
            {"ssl": "True", "files": "ca.pem client.pem client.key", "login": "EXTERNAL"},
        ),
        # Plain AMQP: no TLS key at all.
        (
            ["port_amqp-tls", "ca_cert", "client_cert", "client_key"],
            ["--connection", "plain"],
            {"ssl": "False", "files": "- - -", "login": "AMQPLAIN"},
        ),
    ],
)
def test_only_the_keys_the_connection_and_login_use_are_required(
    tmp_path: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    removed: list[str],
    args: list[str],
    expected: dict[str, str],
) -> None:
    document = mosk_secret(pki, **dict.fromkeys(removed))
    status, out, err = run(tmp_path, document, *args, capsys=capsys)
    assert status == 0 and "missing" not in err
    assert config_of(tmp_path, out)["rabbit"] == expected
    tls = tmp_path / "tls"
    written = sorted(p.name for p in tls.iterdir()) if tls.exists() else []
    assert written == sorted(f for f in expected["files"].split() if f != "-")


@pytest.mark.parametrize(
    ("removed", "args", "expected"),
    [
        (
            ["port_amqp-tls"],
            [],
            "data.port_amqp-tls is missing or empty: the port of the TLS connection "
            "(or --connection plain, on data.port_amqp)",
        ),
        (
            ["ca_cert"],
            [],
            "data.ca_cert is missing or empty: it verifies RabbitMQ's certificate "
            "(or --server-ca FILE with the CA that signed it)",
        ),
        (
            ["client_key"],
            ["--auth", "certificate"],
            "data.client_key is missing or empty: the certificate login (--auth certificate) "
            "signs with it",
        ),
        (["client_key"], [], "data.client_key is missing or empty: data.client_cert needs it"),
        (
            ["port_amqp"],
            ["--connection", "plain"],
            "data.port_amqp is missing or empty: the port of the plain connection "
            "(--connection plain)",
        ),
        (
            ["username", "password"],
            [],
            "data.username is missing or empty: the password login sends it (or --auth "
            "certificate); data.password is missing or empty: the password login sends it "
            "(or --auth certificate)",
        ),
        (
            [],
            ["--auth", "certificate", "--connection", "plain"],
            "--auth certificate needs TLS: it cannot go with --connection plain",
        ),
    ],
)
def test_a_missing_key_is_named_with_what_needs_it(
    tmp_path: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    removed: list[str],
    args: list[str],
    expected: str,
) -> None:
    status, out, err = run(
        tmp_path, mosk_secret(pki, **dict.fromkeys(removed)), *args, capsys=capsys
    )
    assert (status, out) == (2, "")
    assert err.strip().endswith(expected), err
    assert len(err.splitlines()) == 1


def test_kubectl_yaml_reads_as_its_json(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """Operators paste either ``-o json`` or ``-o yaml``: the same configuration."""
    document = mosk_secret(pki)
    status, from_json, _ = run(tmp_path, document, capsys=capsys)
    assert status == 0
    status, from_yaml, err = run(tmp_path, as_yaml(document), capsys=capsys)
    assert (status, err) == (0, "")
    assert from_yaml == from_json
    status, out, err = run(tmp_path, "kind: Secret\ndata: {hosts: [\n", capsys=capsys)
    assert (status, out) == (2, "")
    assert "neither JSON (" in err and "nor YAML (" in err and "-o yaml" in err
    assert len(err.splitlines()) == 1


def test_the_printed_configuration_polls_nova_once_the_account_is_filled_in(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """MOSK's page recommends periodic polling: printed, with the account to fill in."""
    status, out, _ = run(tmp_path, mosk_secret(pki), capsys=capsys)
    assert status == 0
    # oslo.config keeps an inline comment in the value: comments stand alone.
    assert [line for line in out.splitlines() if "#" in line.lstrip("#")] == []
    conf = load_printed(tmp_path, out)
    assert conf.reconcile.enabled is True
    assert config.problems(conf) == [AUTH_URL_TO_FILL_IN]
    filled = out
    for line, value in (
        ("#auth_url = https://KEYSTONE:5000/v3", "auth_url = https://keystone.example:5000/v3"),
        ("#username = USER", "username = k2hr3-osnl"),
        ("#password = PASSWORD", "password = secret"),
        ("#project_name = PROJECT", "project_name = admin"),
    ):
        assert line in filled
        filled = filled.replace(line, value)
    conf = load_printed(tmp_path, filled)
    assert config.problems(conf) == []
    c = conf.service_credentials
    assert (c.auth_type, conf.reconcile.enabled) == ("password", True)


def test_server_ca_verifies_the_broker_instead_of_the_client_ca(
    tmp_path: Path, pki: Pki, other_pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """MOSK calls ca_cert "the client CA certificate": the broker's may be another one."""
    document = mosk_secret(pki, ca_cert=None)
    status, out, err = run(tmp_path, document, "--server-ca", str(other_pki.ca), capsys=capsys)
    assert (status, err) == (0, "")
    assert config_of(tmp_path, out)["rabbit"]["files"] == "server-ca.pem client.pem client.key"
    assert (tmp_path / "tls" / "server-ca.pem").read_text() == other_pki.ca.read_text()
    status, out, err = run(tmp_path, document, "--server-ca", str(pki.client_key), capsys=capsys)
    assert (status, out) == (2, "")
    assert err.strip().endswith(f": --server-ca {pki.client_key}: not a PEM certificate")
    status, out, err = run(tmp_path, document, "--server-ca", str(tmp_path / "no"), capsys=capsys)
    assert (status, out) == (2, "")
    assert err.strip().endswith(f": --server-ca {tmp_path / 'no'}: No such file or directory")


def test_certificate_login_says_when_the_certificate_names_another_user(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    """RabbitMQ takes the user from the certificate, not from data.username."""
    # pki.client_cert is CN=k2hr3-osnl-client; the secret's username is the topic.
    status, out, err = run(tmp_path, mosk_secret(pki), "--auth", "certificate", capsys=capsys)
    assert status == 0
    expected = (
        "the client certificate's common name ('k2hr3-osnl-client') is not data.username "
        "'external-consumer-a': RabbitMQ logs a certificate in as the user named after its "
        "subject, so this login needs a RabbitMQ user of that name"
    )
    assert err == f"k2hr3-osnl mosk-config: warning: {expected}\n"
    assert f"# NOTE: {expected}" in out
    cert, key = client_certificate(pki.ca.parent, "named", "external-consumer-a")
    document = mosk_secret(pki, client_cert=cert.read_text(), client_key=key.read_text())
    status, out, err = run(tmp_path, document, "--auth", "certificate", capsys=capsys)
    assert (status, err) == (0, "")
    assert "NOTE" not in out


@pytest.mark.parametrize(
    "cn", ["a", "external-consumer-a", "x" * 64, "name.with.dots", "CN with spaces"]
)
def test_common_names_are_read_as_openssl_wrote_them(pki: Pki, cn: str) -> None:
    cert, _ = client_certificate(pki.ca.parent, f"cn{len(cn)}", cn)
    assert mosk.certificate_names(cert.read_text()) == [cn]
    # A client certificate followed by its chain: the leaf's name.
    assert mosk.certificate_names(cert.read_text() + pki.ca.read_text()) == [cn]


def test_an_encrypted_client_key_says_how_to_decrypt_it(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(pki.client_key), "-aes256", "-passout", "pass:x",
         "-out", str(encrypted)],
        check=True, capture_output=True,
    )  # fmt: skip
    status, out, err = run(
        tmp_path, mosk_secret(pki, client_key=encrypted.read_text()), capsys=capsys
    )
    assert (status, out) == (2, "")
    assert err.strip().endswith(
        "data.client_key is encrypted, and oslo.messaging has no option for its passphrase: "
        "decrypt it (openssl pkey -in encrypted.key -out client.key) and give it as "
        "stringData.client_key in the secret's file"
    )
    # ...which mosk-config reads on top of data:
    document = mosk_secret(pki, client_key=encrypted.read_text())
    document["stringData"] = {"client_key": pki.client_key.read_text()}
    assert run(tmp_path, document, capsys=capsys)[0] == 0


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        ('["10.0.0.1:5671", "[fd00::13]:5673", "rabbit.example"]',
         "10.0.0.1:5671 rabbit.example:5671 fd00::13:5673"),
        ("10.0.0.1:5999, 10.0.0.2", "10.0.0.1:5999 10.0.0.2:5671"),
        ("fd00::13 [fd00::14]", "fd00::13:5671 fd00::14:5671"),
        ("- 10.0.0.1\n- 10.0.0.2\n", None),
    ],
)  # fmt: skip
def test_hosts_may_carry_their_port_and_come_as_a_json_list(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str], hosts: str, expected: str | None
) -> None:
    """The page does not say which form ``hosts`` takes: the forms an operator meets."""
    status, out, err = run(tmp_path, mosk_secret(pki, hosts=hosts), capsys=capsys)
    if expected is None:
        assert status == 2 and "data.hosts: '-' is not an address" in err
        return
    assert (status, err) == (0, "")
    assert config_of(tmp_path, out)["url"]["hosts"] == expected


@pytest.mark.parametrize("username", ["k2hr3", ""], ids=["user", "no-user"])
@pytest.mark.parametrize(
    "order", list(itertools.permutations(["10.0.0.1", "fd00::1", "r.example"]))
)
def test_a_url_with_ipv6_hosts_is_one_every_supported_python_parses(
    username: str, order: tuple[str, ...]
) -> None:
    """Debian 12's Python checks one bracketed host only (after the last ``@``, or the first).

    Any other IPv6 host in the list makes ``urlparse`` refuse the whole URL there.
    """
    endpoint = mosk.Endpoint(TOPIC, tuple((h, 5671) for h in order), "/", username, "secret")
    url = endpoint.transport_url()
    assert urllib.parse.urlsplit(url).netloc.rpartition("@")[2].startswith("[")
    parsed = oslo_messaging.TransportURL.parse(cfg.ConfigOpts(), url)
    assert sorted(h.hostname for h in parsed.hosts) == sorted(order)
