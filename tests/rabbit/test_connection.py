"""rabbit/connection.py: our own connections reach the listener's broker, its way.

Read from the same options as oslo.messaging's (``transport_url`` and
``[oslo_messaging_rabbit]``): each broker of a cluster URL in turn, its login, vhost,
port (5671 under TLS unless named) and TLS files; and such a connection really opens on
the real broker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from oslo_config import cfg

from k2hr3_osnl import config
from k2hr3_osnl.rabbit import connection

CLUSTER = "rabbit://alice:pw1@rabbit-1:5673,bob:pw2@rabbit-2,carol:pw3@rabbit-3:5675/openstack"


def load(
    tmp_path: Path, transport_url: str, rabbit: dict[str, object] | None = None
) -> cfg.ConfigOpts:
    lines = [
        "[oslo_messaging_notifications]",
        f"transport_url = {transport_url}",
        "[k2hr3]",
        "api_url = http://127.0.0.1:1/v1/role",
        f"state_dir = {tmp_path / 'state'}",
        "[oslo_messaging_rabbit]",
        *(f"{key} = {value}" for key, value in (rabbit or {}).items()),
    ]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config.load([str(path)])


def test_a_cluster_url_names_as_many_brokers_as_it_has_hosts(tmp_path: Path) -> None:
    assert connection.hosts(load(tmp_path, CLUSTER)) == 3


def test_each_broker_of_a_cluster_in_turn_with_its_own_login(tmp_path: Path) -> None:
    conf = load(tmp_path, CLUSTER)
    seen = [connection.connect(conf, index) for index in range(4)]
    assert [(c.hostname, c.port, c.userid, c.password) for c in seen] == [
        ("rabbit-1", 5673, "alice", "pw1"),
        ("rabbit-2", 5672, "bob", "pw2"),
        ("rabbit-3", 5675, "carol", "pw3"),
        ("rabbit-1", 5673, "alice", "pw1"),
    ]
    assert {c.virtual_host for c in seen} == {"openstack"}
    assert {c.ssl for c in seen} == {False}


def test_no_vhost_in_the_url_is_rabbitmqs_default(tmp_path: Path) -> None:
    conf = load(tmp_path, "rabbit://guest:guest@127.0.0.1:5672/")
    assert connection.connect(conf).virtual_host == "/"


def test_tls_takes_the_listeners_files_and_port(tmp_path: Path) -> None:
    rabbit = {
        "ssl": "true",
        "ssl_ca_file": "/etc/k2hr3-osnl/ca.pem",
        "ssl_cert_file": "/etc/k2hr3-osnl/client.pem",
        "ssl_key_file": "/etc/k2hr3-osnl/client.key",
        "rabbit_login_method": "EXTERNAL",
    }
    made = connection.connect(load(tmp_path, "rabbit://u:p@rabbit-1/", rabbit))
    assert made.port == 5671
    assert made.ssl == {
        "ca_certs": "/etc/k2hr3-osnl/ca.pem",
        "certfile": "/etc/k2hr3-osnl/client.pem",
        "keyfile": "/etc/k2hr3-osnl/client.key",
    }
    assert made.login_method == "EXTERNAL"


def test_tls_without_files_is_tls_with_the_system_cas(tmp_path: Path) -> None:
    made = connection.connect(load(tmp_path, "rabbit://u:p@rabbit-1:5999/", {"ssl": "true"}))
    assert (made.port, made.ssl) == (5999, True)


@pytest.mark.rabbitmq
def test_it_opens_on_the_real_broker(tmp_path: Path, rabbitmq: str) -> None:
    made = connection.connect(load(tmp_path, rabbitmq), heartbeat=30)
    try:
        made.connect()
        assert made.connected
    finally:
        made.release()
