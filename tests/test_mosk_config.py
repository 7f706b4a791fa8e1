"""``k2hr3-osnl mosk-config``: MOSK's secret in, PEM files and config sections out.

The secret is shaped like ``kubectl -n openstack-external get secret TOPIC -o json``
(base64 ``data``); the printed sections must load as the daemon's own configuration and
name every host, the TLS port and the vhost. Bad input is one line and exit 2.
"""

from __future__ import annotations

import io
import json
import stat
import sys
import types
from pathlib import Path

import oslo_messaging
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.mosk_secret import secret
from support.tls_certs import Pki, make_pki

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
    status = cli.main(["mosk-config", str(path), "--dir", str(tmp_path / "tls"), *args])
    out, err = capsys.readouterr()
    return status, out, err


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
    assert config.problems(conf) == []
    n, r = conf.oslo_messaging_notifications, conf.oslo_messaging_rabbit
    url = oslo_messaging.TransportURL.parse(conf, n.transport_url)
    assert [(h.hostname, h.port) for h in url.hosts] == [(h, 5671) for h in HOSTS]
    assert {(h.username, h.password) for h in url.hosts} == {
        ("external-consumer-a", "s3cret;with:odd@chars%")
    }
    assert url.virtual_host == "openstack"
    assert (n.exchange, n.topic, n.pool) == (["nova", "neutron"], [TOPIC], "k2hr3_osnl")
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
    assert cli.main(["mosk-config", "-", "--dir", str(tmp_path / "tls")]) == 0
    assert f"topic = {TOPIC}" in capsys.readouterr().out


GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "a JSON object is expected"),
        ({"kind": "Secret", "metadata": {"name": TOPIC}}, "no 'data' object"),
        ({"password": None}, "missing or empty: data.password"),
        ({"hosts": "", "vhost": None}, "missing or empty: data.hosts, data.vhost"),
        ({"ca_cert": GARBAGE_PEM}, "data.ca_cert: the certificate does not parse"),
        ({"ca_cert": "hello"}, "data.ca_cert: not a PEM certificate"),
        ({"client_cert": GARBAGE_PEM}, "data.client_cert and data.client_key: not a certificate"),
        ({"client_key": "nothing"}, "data.client_key: not a PEM private key"),
        ({"port_amqp-tls": "56x"}, "data.port_amqp-tls: '56x' is not a port number"),
        ({"port_amqp": "70000"}, "data.port_amqp: '70000' is not a port number"),
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
    assert load_printed(tmp_path, out).oslo_messaging_notifications.topic == [
        "external-consumer-A"
    ]


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
    endpoint = mosk.Endpoint(TOPIC, tuple(HOSTS), 5672, 5671, vhost, username, password, "", "", "")
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
