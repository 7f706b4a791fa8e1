"""The edge to OpenStack, against the stand-in over real HTTP: the session, paging, errors."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from support.daemon import with_broker
from support.openstack_standin import ADMIN_PROJECT, PROJECT, OpenStackStandIn

from k2hr3_osnl import config
from k2hr3_osnl.core import reconciliation
from k2hr3_osnl.openstack import neutron, nova, session
from k2hr3_osnl.openstack.session import OpenStackError


@pytest.fixture
def cloud_standin() -> Iterator[OpenStackStandIn]:
    standin = OpenStackStandIn().start()
    yield standin
    standin.stop()


def write_conf(tmp_path: Path, credentials: dict[str, object], **reconcile: object) -> Path:
    lines = ["[service_credentials]", *(f"{k} = {v}" for k, v in credentials.items())]
    lines += ["[reconcile]", *(f"{k} = {v}" for k, v in reconcile.items())]
    lines += [
        "[k2hr3]",
        f"state_dir = {tmp_path / 'state'}",
        "api_url = http://127.0.0.1:1/v1/role",
    ]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("\n".join(lines) + "\n"), encoding="utf-8")
    return path


def connect(tmp_path: Path, standin: OpenStackStandIn, **overrides: object) -> session.Cloud:
    conf = config.load([str(write_conf(tmp_path, standin.credentials(**overrides)))])
    return session.connect(conf)


def listed(cloud: session.Cloud, since: float, page_size: int = 1000) -> list[list[str]]:
    return [
        [server["id"] for server in page]
        for page in nova.deleted_servers(cloud, reconciliation.iso(since), page_size)
    ]


def test_deleted_servers_of_every_project_page_by_page(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    gone = [cloud_standin.create(project=f"p{i % 3}") for i in range(7)]
    for server in gone:
        cloud_standin.delete(server)
    soft = cloud_standin.create()
    cloud_standin.delete(soft, soft=True)
    alive = cloud_standin.create()
    cloud = connect(tmp_path, cloud_standin)

    pages = listed(cloud, since=0, page_size=3)

    assert [len(page) for page in pages] == [3, 3, 2]
    ids = [i for page in pages for i in page]
    assert sorted(ids) == sorted([s.id for s in gone] + [soft.id])
    assert alive.id not in ids
    # One token for the whole listing: discovery and the token, then one GET per page.
    assert cloud_standin.count("/v3/auth/tokens") == 1
    assert cloud_standin.count("/compute/v2.1/servers/detail") == 3
    # A last page that is full links to one more, empty, page.
    assert [len(page) for page in listed(cloud, since=0, page_size=4)] == [4, 4, 0]


def test_changes_since_leaves_out_older_deletions(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    old, new = cloud_standin.create(), cloud_standin.create()
    cloud_standin.delete(old, when=1_000_000)
    cloud_standin.delete(new, when=2_000_000)
    cloud = connect(tmp_path, cloud_standin)
    assert listed(cloud, since=1_500_000) == [[new.id]]
    assert sorted(listed(cloud, since=999_999)[0]) == sorted([old.id, new.id])


def test_without_admin_all_tenants_is_refused(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    cloud = connect(tmp_path, cloud_standin, project_name=PROJECT)
    with pytest.raises(OpenStackError, match="status 403"):
        listed(cloud, since=0)
    assert ADMIN_PROJECT != PROJECT


def test_wrong_password_is_keystone_refusing_and_never_shows_the_password(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    cloud = connect(tmp_path, cloud_standin, password="wrong-horse-battery")
    with pytest.raises(OpenStackError) as raised:
        listed(cloud, since=0)
    assert "Keystone refused the account" in str(raised.value)
    assert "wrong-horse" not in str(raised.value)


def test_nova_failing_and_keystone_down_are_openstack_errors(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    cloud = connect(tmp_path, cloud_standin)
    cloud_standin.fail_with = 503
    with pytest.raises(OpenStackError, match="status 503"):
        listed(cloud, since=0)
    cloud_standin.stop()
    down = connect(tmp_path, cloud_standin)
    with pytest.raises(OpenStackError, match="ConnectFailure"):
        listed(down, since=0)


def test_existence_of_servers_and_ports(tmp_path: Path, cloud_standin: OpenStackStandIn) -> None:
    alive = cloud_standin.create(ports=1)
    gone = cloud_standin.create(ports=1)
    soft = cloud_standin.create()
    cloud_standin.delete(gone)
    cloud_standin.delete(soft, soft=True)
    cloud = connect(tmp_path, cloud_standin)
    assert nova.server_exists(cloud, alive.id) is True
    assert nova.server_exists(cloud, soft.id) is True  # restorable: still there
    assert nova.server_exists(cloud, gone.id) is False
    assert neutron.port_exists(cloud, alive.ports[0]) is True
    assert neutron.port_exists(cloud, gone.ports[0]) is False


def test_a_devices_ports_and_their_addresses_as_each_account_may_see_them(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    vm = cloud_standin.create(project=PROJECT)
    port_id = cloud_standin.add_port(vm, "10.0.0.5", "2001:db8::5")
    admin = connect(tmp_path, cloud_standin)
    (port,) = neutron.ports(admin, device_id=vm.id)
    assert port["id"] == port_id
    assert [ip["ip_address"] for ip in port["fixed_ips"]] == ["10.0.0.5", "2001:db8::5"]
    # Another project's account sees none: an empty list that must not be read as "gone".
    member = connect(tmp_path, cloud_standin, project_name=ADMIN_PROJECT + "-not")
    assert neutron.ports(member, device_id=vm.id) == []
    cloud_standin.delete_port(port_id)
    assert neutron.ports(admin, device_id=vm.id) == []


def test_only_an_account_that_sees_every_project_lists_servers_of_all(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    vm = cloud_standin.create(project=PROJECT)
    admin = connect(tmp_path, cloud_standin)
    assert [s["id"] for s in nova.any_project_servers(admin, 10)] == [vm.id]
    member = connect(tmp_path, cloud_standin, project_name=PROJECT)
    with pytest.raises(OpenStackError) as refused:
        nova.any_project_servers(member, 10)
    assert refused.value.status == 403


def test_an_unknown_plugin_is_a_configuration_problem(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    path = write_conf(tmp_path, cloud_standin.credentials(auth_type="no-such-plugin"))
    conf = config.load([str(path)])
    assert any("no-such-plugin" in p for p in config.problems(conf))


def test_nova_refuses_a_request_without_a_token(cloud_standin: OpenStackStandIn) -> None:
    url = f"{cloud_standin.url}/compute/v2.1/servers/detail"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 401


def test_a_revoked_token_is_replaced_once_and_the_listing_goes_on(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    cloud_standin.delete(cloud_standin.create())
    cloud = connect(tmp_path, cloud_standin)
    assert len(listed(cloud, since=0)[0]) == 1
    cloud_standin.tokens.clear()  # Keystone restarted with new keys, or the token expired
    assert len(listed(cloud, since=0)[0]) == 1
    assert cloud_standin.count("/v3/auth/tokens") == 2


def test_a_changes_since_nova_cannot_parse_is_an_error(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    cloud = connect(tmp_path, cloud_standin)
    with pytest.raises(OpenStackError, match="status 400"):
        list(nova.deleted_servers(cloud, "yesterday", 10))


def _answer(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    return response


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (403, b"{}", "Nova GET /x answered status 403"),
        (200, b"<html>", "Nova GET /x: not a list of servers"),
        (200, b'{"servers": {}}', "Nova GET /x: 'servers' is not a list"),
    ],
)
def test_a_listing_that_is_not_one_is_an_error_naming_the_request(
    status: int, body: bytes, said: str
) -> None:
    with pytest.raises(OpenStackError) as raised:
        session.listed(_answer(status, body), "Nova GET /x", "servers")
    assert str(raised.value) == said
    assert raised.value.status == (status if status != 200 else None)


def test_a_listing_is_its_list() -> None:
    assert session.listed(_answer(200, b'{"ports": [{"id": "p"}]}'), "Neutron GET /p", "ports") == [
        {"id": "p"}
    ]
