"""``--check-config`` on ``[service_credentials]`` and ``[reconcile]``: keystoneauth1's options,
checked like ours, and the password never printed."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from support.daemon import with_broker

from k2hr3_osnl.commands import cli

#: ``check(text)``: ``--check-config`` on that file, in process: (exit status, stdout lines).
Check = Callable[[str], tuple[int, list[str]]]


@pytest.fixture
def check(capsys: pytest.CaptureFixture[str], tmp_path: Path, restore_logging: None) -> Check:
    def run_check(text: str) -> tuple[int, list[str]]:
        path = tmp_path / "k2hr3-osnl.conf"
        path.write_text(with_broker(textwrap.dedent(text).lstrip()), encoding="utf-8")
        status = cli.main(["-c", str(path), "--check-config", "-f", str(tmp_path / "log")])
        return status, capsys.readouterr().out.splitlines()

    return run_check


def test_reconciliation_without_an_account_is_a_problem(check: Check) -> None:
    status, out = check("[reconcile]\nenabled = true\nverify_deletions = true\n")
    assert status == 1
    assert any(
        line.startswith("[reconcile] enabled: true, but [service_credentials]") for line in out
    )
    assert any(line.startswith("[reconcile] verify_deletions: true") for line in out)


def test_credentials_check_out_and_the_password_is_never_printed(
    check: Check, tmp_path: Path
) -> None:
    credentials = """
        [reconcile]
        enabled = true
        interval_seconds = 5
        [service_credentials]
        auth_type = password
        auth_url = http://127.0.0.1:5000/v3
        username = k2hr3-osnl
        password = Pa55-never-shown
        user_domain_name = Default
        project_name = admin
        project_domain_name = Default
        interface = internal
        region_name = RegionOne
        """
    status, out = check(credentials)
    assert (status, out) == (0, ["configuration OK (no warnings)"])
    status, out = check(credentials.replace("username", "usrname"))
    assert status == 1
    assert any("[service_credentials] usrname: unknown option" in line for line in out), out
    assert any("did you mean username?" in line for line in out), out
    assert "Pa55-never-shown" not in "\n".join(out)
    assert "Pa55-never-shown" not in (tmp_path / "log").read_text()


def test_a_bad_auth_plugin_or_missing_auth_url_is_a_problem(check: Check) -> None:
    status, out = check("[reconcile]\nenabled = true\n[service_credentials]\nauth_type = nope\n")
    assert status == 1 and any("nope" in line for line in out), out
    status, out = check(
        "[reconcile]\nenabled = true\n[service_credentials]\nauth_type = password\n"
    )
    assert status == 1 and any("auth_url" in line for line in out), out


def test_interval_below_five_seconds_is_refused(check: Check) -> None:
    status, out = check("[reconcile]\ninterval_seconds = 4\n")
    assert status == 1 and any("[reconcile] interval_seconds" in line for line in out), out


def test_unused_credentials_are_a_warning(check: Check) -> None:
    status, out = check(
        "[service_credentials]\nauth_type = password\nauth_url = http://127.0.0.1:5000/v3\n"
    )
    assert status == 0
    assert any("nothing uses it" in line for line in out), out
