"""reconcile/view.py: verify_deletions starts only with an account that sees every project.

Against the OpenStack stand-in over real HTTP: an account that sees other projects'
servers and their ports starts; one that Nova refuses all_tenants, or whose Neutron
lists none of the ports Nova shows addresses for, is refused in one line that says the
fix; an OpenStack that does not answer at start refuses nothing (it is checked later).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import with_broker
from support.openstack_standin import PROJECT, OpenStackStandIn

from k2hr3_osnl import config
from k2hr3_osnl.openstack import session
from k2hr3_osnl.reconcile.view import ViewTooNarrow, check_view


@pytest.fixture
def cloud_standin() -> Iterator[OpenStackStandIn]:
    standin = OpenStackStandIn().start()
    yield standin
    standin.stop()


def connect(tmp_path: Path, standin: OpenStackStandIn, **overrides: object) -> session.Cloud:
    lines = ["[service_credentials]"]
    lines += [f"{k} = {v}" for k, v in standin.credentials(**overrides).items()]
    lines += [
        "[k2hr3]",
        f"state_dir = {tmp_path / 'state'}",
        "api_url = http://127.0.0.1:1/v1/role",
    ]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("\n".join(lines) + "\n"), encoding="utf-8")
    return session.connect(config.load([str(path)]))


def test_an_account_that_sees_another_projects_server_and_its_ports_starts(
    tmp_path: Path, cloud_standin: OpenStackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    server = cloud_standin.create(project=PROJECT)
    cloud_standin.add_port(server, "10.0.0.5")
    assert check_view(connect(tmp_path, cloud_standin)) is True
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_neutron_that_lists_none_of_the_ports_nova_shows_is_too_narrow(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    server = cloud_standin.create(project=PROJECT)
    cloud_standin.add_port(server, "10.0.0.5")
    cloud_standin.neutron_sees_all = False
    with pytest.raises(ViewTooNarrow) as refused:
        check_view(connect(tmp_path, cloud_standin))
    assert str(refused.value).startswith(
        "[reconcile] verify_deletions: Neutron lists no port of 1 server(s) of other "
        "projects that Nova shows with addresses: its view is too narrow; "
    )


def test_an_account_nova_refuses_all_tenants_is_refused_with_the_fix(
    tmp_path: Path, cloud_standin: OpenStackStandIn
) -> None:
    with pytest.raises(ViewTooNarrow) as refused:
        check_view(connect(tmp_path, cloud_standin, project_name=PROJECT))
    assert str(refused.value).startswith("[reconcile] verify_deletions: ")
    assert ": the account cannot see every project; " in str(refused.value)


def test_a_cloud_with_no_other_project_starts_with_a_warning(
    tmp_path: Path, cloud_standin: OpenStackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="k2hr3_osnl.reconcile.view"):
        assert check_view(connect(tmp_path, cloud_standin)) is True
    assert any(
        "could not prove that the account sees every project" in r.getMessage()
        and "(fine if it is the only one with VMs)" in r.getMessage()
        for r in caplog.records
    )


def test_an_openstack_that_does_not_answer_at_start_refuses_nothing(
    tmp_path: Path, cloud_standin: OpenStackStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    cloud = connect(tmp_path, cloud_standin)
    cloud_standin.fail_with = 503
    with caplog.at_level(logging.WARNING, logger="k2hr3_osnl.reconcile.view"):
        assert check_view(cloud) is False
    assert any(
        r.getMessage().startswith("cannot check at start that the account sees every project")
        and r.getMessage().endswith("verifying as it can, and checking again later")
        for r in caplog.records
    )
