"""``k2hr3-osnl --check-config``: every problem, with its section and option, before going live.

oslo.config ignores keys it does not know, so the strictness under test here is ours:
misspelled options and sections, options in the wrong section, bad regexes, TLS files
that cannot be used, values out of range. The daemon runs the same checks at start.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from support import paths
from support.daemon import with_broker
from support.tls_certs import Pki, make_pki

from k2hr3_osnl import config
from k2hr3_osnl.commands import cli

ROOT = paths.ROOT
#: ``check(text)``: ``--check-config`` on that file, in process: (exit status, stdout lines).
Check = Callable[[str], tuple[int, list[str]]]


def write(tmp_path: Path, text: str, name: str = "k2hr3-osnl.conf") -> Path:
    path = tmp_path / name
    path.write_text(with_broker(textwrap.dedent(text).lstrip()), encoding="utf-8")
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "k2hr3_osnl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def check(capsys: pytest.CaptureFixture[str], tmp_path: Path, restore_logging: None) -> Check:
    def run_check(text: str) -> tuple[int, list[str]]:
        path = write(tmp_path, text)
        status = cli.main(["-c", str(path), "--check-config", "-f", str(tmp_path / "log")])
        return status, capsys.readouterr().out.splitlines()

    return run_check


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_misspelled_option_fails_with_the_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [k2hr3]
        api_url = https://k2hr3.example.com/v1/role
        dyr_run = false
        """,
    )
    result = run("--check-config", "-c", path)
    assert result.returncode == 1, result
    assert result.stdout.splitlines() == [
        f"[k2hr3] dyr_run: unknown option ({path} line 3); did you mean dry_run?",
        "1 problem(s)",
    ]


def test_the_daemon_refuses_to_start_on_a_misspelled_option(tmp_path: Path) -> None:
    """Fatal at start, not a warning: dry_run misspelled would otherwise go live."""
    log = tmp_path / "k2hr3-osnl.log"
    path = write(
        tmp_path,
        f"""
        [DEFAULT]
        log_file = {log}
        [oslo_messaging_notifications]
        # Nothing listens here: the daemon must stop before it tries.
        transport_url = rabbit://guest:guest@127.0.0.1:9/
        [k2hr3]
        dyr_run = true
        """,
    )
    result = run("-c", path)
    assert result.returncode == 2, result
    text = log.read_text()
    assert "[k2hr3] dyr_run: unknown option" in text and "did you mean dry_run?" in text
    assert "listening" not in text and "starting" not in text


def test_unknown_options_in_oslo_messaging_groups(check: Check) -> None:
    status, out = check(
        """
        [oslo_messaging_rabbit]
        rabbit_qos_prefetch_cout = 10
        heartbeat_timeout_treshold = 30
        sssl = true
        # Deprecated names are still read by oslo.config: not unknown.
        kombu_reconnect_timeout = 60
        [oslo_messaging_notifications]
        transport_ulr = rabbit://guest:guest@127.0.0.1:5672/
        [DEFAULT]
        rpc_thread_pool_size = 8
        """
    )
    assert status == 1
    assert out[0].startswith("[oslo_messaging_rabbit] rabbit_qos_prefetch_cout: unknown option (")
    assert out[0].endswith(" line 2); did you mean rabbit_qos_prefetch_count?")
    assert "did you mean heartbeat_timeout_threshold?" in out[1]
    assert "[oslo_messaging_rabbit] sssl: unknown option" in out[2]
    assert "did you mean ssl?" in out[2]
    assert "[oslo_messaging_notifications] transport_ulr" in out[3]
    assert "did you mean transport_url?" in out[3]
    assert out[-1] == "4 problem(s)"


def test_an_option_in_the_wrong_section_says_where_it_belongs(check: Check) -> None:
    status, out = check("[DEFAULT]\ndry_run = true\n")
    assert status == 1
    assert out[0].startswith("[DEFAULT] dry_run: unknown option")
    assert out[0].endswith("it belongs in [k2hr3]")


def test_sections_misspelled_fail_unrelated_ones_warn(check: Check) -> None:
    status, out = check(
        """
        [k2rh3]
        dry_run = true
        [default]
        debug_level = debug
        """
    )
    assert status == 1
    assert out[0].startswith("[k2rh3]: unknown section (")
    assert out[0].endswith("so none of its options is read; did you mean [k2hr3]?")
    assert out[1].endswith("did you mean [DEFAULT]?")

    # A file shared with another service may carry its sections: only a warning.
    status, out = check("[keystone_authtoken]\nauth_url = http://keystone:5000/\n")
    assert status == 0
    assert out[0].startswith("warning: [keystone_authtoken]: unknown section, ignored (")
    assert out[-1] == "configuration OK (1 warning(s))"


def test_bad_regex_and_value_out_of_range(check: Check) -> None:
    status, out = check(
        """
        [oslo_messaging_notifications]
        publisher_id = ^(network
        [metrics]
        port = 70000
        """
    )
    assert status == 1
    assert out[0].startswith("[metrics] port: ")
    assert "less than or equal to 65535" in out[0]
    # Values that do not parse hide the checks that read them: fix, then run again.
    status, out = check("[oslo_messaging_notifications]\npublisher_id = ^(network\n")
    assert status == 1
    assert out[0].startswith("[oslo_messaging_notifications] publisher_id: '^(network' is not")


@pytest.mark.parametrize("user", ["guest:secret@", ""], ids=["user", "no-user"])
def test_a_list_of_hosts_with_ipv6_first_says_where_to_put_it(check: Check, user: str) -> None:
    """Debian 12's Python refuses this URL; a newer 3.11 takes it. Each gets a true answer."""
    hosts = [f"{user}10.0.0.1:5672", f"{user}[fd00::1]:5672", f"{user}10.0.0.2:5672"]
    url = "rabbit://" + ",".join(hosts) + "/"
    try:
        urllib.parse.urlsplit(url)
    except ValueError:
        refused = True
    else:
        refused = False
    status, out = check(f"[oslo_messaging_notifications]\ntransport_url = {url}\n")
    problems = [line for line in out if "transport_url" in line]
    if refused:
        assert status == 1 and len(problems) == 1, out
        assert "secret" not in problems[0]
        assert "only when one comes last (first without a user)" in problems[0]
    else:
        assert problems == []


def test_unusable_tls_files(check: Check, pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    status, out = check(
        f"""
        [oslo_messaging_rabbit]
        ssl = true
        ssl_ca_file = {missing}
        ssl_cert_file = {pki.client_cert}
        ssl_key_file = {pki.client_key}
        [k2hr3]
        ca_file = {garbage}
        cert_file = {pki.server_cert}
        key_file = {pki.client_key}
        """
    )
    assert status == 1
    assert out[0].startswith(f"[k2hr3] ca_file: {garbage} holds no PEM certificate (")
    assert out[1].startswith(
        f"[k2hr3] cert_file: {pki.server_cert} and {pki.client_key}: not a PEM certificate "
        "with its matching private key ("
    )
    assert out[2:] == [
        f"[oslo_messaging_rabbit] ssl_ca_file: {missing} is not readable "
        "(No such file or directory)",
        "3 problem(s)",
    ]


def test_tls_files_are_checked_only_when_rabbit_ssl_is_on(check: Check, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    status, out = check(f"[oslo_messaging_rabbit]\nssl_ca_file = {missing}\n")
    assert status == 0
    assert out[0] == (
        "warning: [oslo_messaging_rabbit] ssl_ca_file: ignored because ssl = false; "
        "set ssl = true to connect over TLS"
    )


def test_certificate_login_needs_a_client_certificate(check: Check) -> None:
    status, out = check("[oslo_messaging_rabbit]\nrabbit_login_method = EXTERNAL\n")
    assert status == 1
    assert out == [
        "[oslo_messaging_rabbit] rabbit_login_method: EXTERNAL logs in with the client "
        "certificate: set ssl = true and ssl_cert_file (docs/mosk.md)",
        "1 problem(s)",
    ]


def test_clean_configs_pass(pki: Pki, tmp_path: Path) -> None:
    result = run("--check-config", "-c", ROOT / "etc" / "k2hr3-osnl.conf")
    assert (result.returncode, result.stdout) == (0, "configuration OK (no warnings)\n"), result

    path = write(
        tmp_path,
        f"""
        [DEFAULT]
        log_file = {tmp_path / "k2hr3-osnl.log"}
        [oslo_messaging_notifications]
        transport_url = rabbit://k2hr3:secret@mq.example.com:5671/
        exchange = neutron, nova
        topic = notifications, versioned_notifications
        [oslo_messaging_rabbit]
        ssl = true
        ssl_ca_file = {pki.ca}
        ssl_cert_file = {pki.client_cert}
        ssl_key_file = {pki.client_key}
        [k2hr3]
        api_url = https://k2hr3.example.com/v1/role
        ca_file = {pki.ca}
        cert_file = {pki.client_cert}
        key_file = {pki.client_key}
        [metrics]
        bind_address = ::1
        port = 9840
        """,
    )
    result = run("--check-config", "-c", path)
    assert (result.returncode, result.stdout) == (0, "configuration OK (no warnings)\n"), result


def test_files_of_a_config_dir_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path, "[k2hr3]\napi_url = https://k/v1/role\n")
    extra = write(tmp_path / "conf.d", "[k2hr3]\nretry_budget = 60\n", name="50-retry.conf")
    conf = config.load([str(tmp_path / "k2hr3-osnl.conf")], [str(tmp_path / "conf.d")])
    assert config.problems(conf) == [
        f"[k2hr3] retry_budget: unknown option ({extra} line 2); did you mean retry_budget_seconds?"
    ]


def test_a_malformed_metrics_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """'10.0.0..1' fails in the idna codec (UnicodeError), not in the resolver: it is
    still a configuration error of one line, never a traceback."""
    path = write(
        tmp_path,
        f"""
        [metrics]
        bind_address = 10.0.0..1
        [k2hr3]
        state_dir = {tmp_path / "state"}
        """,
    )
    result = run("-c", path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "[metrics] bind_address: '10.0.0..1' is not an address to listen on" in result.stderr
