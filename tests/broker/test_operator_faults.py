"""Faults an operator meets first (issue 18): each is one line that names the fix.

Never a traceback, never a false "OK", and nothing lost; through the real daemon and
command line, on the real broker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from support import paths
from support.broker import TcpProxy
from support.daemon import Daemon, write_config
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import nova_legacy_delete, wire_body
from support.scrape import free_port, healthz
from support.waiting import wait_until

from k2hr3_osnl import config


def test_a_vhost_that_does_not_exist_is_one_line_and_a_retried_start(e2e: Harness) -> None:
    """RabbitMQ closes the connection with NOT_ALLOWED: a config fault, retried slowly."""
    vhost = f"{e2e.unique}_nowhere"
    daemon = e2e.daemon(e2e.config(transport_url=f"{e2e.transport_url}{vhost}"))
    daemon.start(wait=False)
    said = f"RabbitMQ has no vhost '{vhost}': the vhost of transport_url"
    wait_until(lambda: said in daemon.log(), 30, "the refusal's line")
    assert daemon.alive, daemon.report("exited on a missing vhost")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log(), daemon.report("a traceback")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2hr3_osnl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", [("--check-config",), ()], ids=["check-config", "daemon"])
def test_no_configuration_file_is_refused_naming_where_it_looked(args: tuple[str, ...]) -> None:
    """Built-in defaults alone would listen as guest on the default vhost, live."""
    if any(os.path.exists(p) for p in config.DEFAULT_CONFIG_FILES):
        pytest.skip("this host has a default configuration file")
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr == (
        "k2hr3-osnl: no configuration file: neither /etc/k2hr3/k2hr3_osnl.conf nor "
        "/etc/k2hr3-osnl/k2hr3-osnl.conf exists; give one with -c FILE\n"
    )
    assert "OK" not in done.stdout


def _without_notifications_url(e2e: Harness, config: Path) -> Path:
    """The file as OpenStack services write it: no [oslo_messaging_notifications] URL."""
    text = config.read_text("utf-8").replace(f"transport_url = {e2e.transport_url}\n", "", 1)
    config.write_text(text, "utf-8")
    return config


def test_default_transport_url_is_the_broker_when_notifications_has_none(e2e: Harness) -> None:
    """Where every OpenStack service keeps it: [DEFAULT] transport_url."""
    proxy = TcpProxy().start()
    try:
        config = e2e.config(sections={"DEFAULT": {"transport_url": proxy.url}})
        daemon = e2e.daemon(_without_notifications_url(e2e, config)).start()
        assert proxy.connections > 0, daemon.report("did not connect to [DEFAULT]'s broker")
        assert f"RabbitMQ rabbit://127.0.0.1:{proxy.port} vhost '/' [" in daemon.log()
        assert daemon.stop() == 0
    finally:
        proxy.stop()


def test_notifications_transport_url_wins_over_default(e2e: Harness) -> None:
    """As in oslo.messaging: the notifications group's URL, when set, is the one used."""
    proxy = TcpProxy().start()
    try:
        nowhere = f"rabbit://guest:guest@127.0.0.1:{proxy.port}/"
        proxy.stop()  # [DEFAULT]'s broker is down: a daemon using it would never listen
        config = e2e.config(sections={"DEFAULT": {"transport_url": nowhere}})
        daemon = e2e.daemon(config).start()
        assert "RabbitMQ rabbit://127.0.0.1:5672 vhost '/' [" in daemon.log()
        assert daemon.stop() == 0
    finally:
        proxy.stop()


def test_a_file_without_any_transport_url_is_refused_in_one_line(e2e: Harness) -> None:
    config = _without_notifications_url(e2e, e2e.config())
    said = (
        "[oslo_messaging_notifications] transport_url: not set, nor [DEFAULT] transport_url: "
        "set one to rabbit://user:password@host:port/vhost"
    )
    checked = e2e.cli(config, "--check-config")
    assert (checked.returncode, checked.stdout) == (1, f"{said}\n1 problem(s)\n")
    started = e2e.cli(config)
    assert started.returncode == 2
    assert started.stderr == f"k2hr3-osnl: invalid configuration: {said}\n"


def _credentials_config(
    tmp_path: Path, api_url: str = "http://127.0.0.1:9/v1/role", **values: str
) -> Path:
    """A config whose [service_credentials] reconciliation uses, with ``values`` over it."""
    credentials = {
        "auth_type": "password",
        "auth_url": "http://127.0.0.1:9/v3",
        "username": "k2hr3",
        "password": "secret",
        "project_name": "admin",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        **values,
    }
    return write_config(
        tmp_path / "k2hr3-osnl.conf",
        transport_url="rabbit://guest:guest@127.0.0.1:5672/",
        api_url=api_url,
        exchanges=["nova"],
        topics=["versioned_notifications"],
        pool="k2hr3_osnl",
        state_dir=tmp_path / "state",
        log_file=tmp_path / "k2hr3-osnl.log",
        sections={"reconcile": {"enabled": "true"}, "service_credentials": credentials},
    )


#: A bad value and the pattern of the one line that names it.
BAD_CREDENTIALS = [
    (
        {"interface": "intern"},
        re.escape(
            "[service_credentials] interface: Valid values are [public, internal, admin], "
            "but found 'intern'"
        ),
    ),
    # keystoneauth1 5.0 (Debian 12) reads timeout as an integer, later releases as a float.
    (
        {"timeout": "abc"},
        r"\[service_credentials\] timeout: (could not convert string to float|invalid literal "
        r"for int\(\) with base 10): 'abc'",
    ),
    (
        {"insecure": "maybe"},
        re.escape("[service_credentials] insecure: Unexpected boolean value 'maybe'"),
    ),
    (
        {"auth_url": "keystone.example.com:5000/v3"},
        re.escape(
            "[service_credentials] auth_url: 'keystone.example.com:5000/v3' is not an http(s) URL"
        ),
    ),
]


@pytest.mark.parametrize(("values", "said"), BAD_CREDENTIALS)
def test_a_bad_credentials_value_is_one_line_in_check_config(
    tmp_path: Path, values: dict[str, str], said: str
) -> None:
    done = _run("-c", str(_credentials_config(tmp_path, **values)), "--check-config")
    assert (done.returncode, done.stderr) == (1, "")
    assert re.match(said, done.stdout), done.stdout
    assert done.stdout.endswith("\n1 problem(s)\n")


@pytest.mark.parametrize("command", [("reconcile",), ()], ids=["reconcile", "daemon"])
def test_a_bad_credentials_value_is_one_line_in_reconcile_and_at_start(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    values, said = BAD_CREDENTIALS[0]
    done = _run("-c", str(_credentials_config(tmp_path, **values)), *command)
    assert done.returncode == 2
    assert re.match(f"k2hr3-osnl: invalid configuration: {said}", done.stderr), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_an_api_url_port_out_of_range_is_a_problem_not_parked_deletions(tmp_path: Path) -> None:
    config = _credentials_config(tmp_path, api_url="http://127.0.0.1:99999/v1/role")
    done = _run("-c", str(config), "--check-config")
    assert done.returncode == 1
    assert done.stdout.startswith(
        "[k2hr3] api_url: 'http://127.0.0.1:99999/v1/role' has no valid port (1-65535)\n"
    )


def _publish_legacy_deletions(e2e: Harness, cuks: list[str]) -> None:
    bodies = [wire_body(*nova_legacy_delete(cuk)) for cuk in cuks]
    e2e.broker.publish_raw(e2e.nova, f"{e2e.notifications}.info", bodies)


def _warnings(daemon: Daemon, needle: str) -> list[str]:
    return [line for line in daemon.log().splitlines() if " WARNING " in line and needle in line]


def test_a_k2hr3_outage_is_said_at_warning_once_when_it_starts_and_once_when_it_ends(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """`journalctl -p warning` must show an outage: the per-call lines are INFO."""
    daemon = e2e.start()
    k2hr3.status = 503
    cuks = [str(uuid.uuid4()) for _ in range(3)]
    _publish_legacy_deletions(e2e, cuks)
    wait_until(lambda: sum(c.status == 503 for c in k2hr3.calls) >= 4, 30, "retries")
    k2hr3.status = 204
    wait_until(lambda: {c for c, _ in k2hr3.deleted()} >= set(cuks), 30, "the deletions")
    wait_until(lambda: _warnings(daemon, "K2HR3 works again"), 10, "the recovery's line")
    assert daemon.stop() == 0
    failing = _warnings(daemon, "K2HR3 failing (status 503")
    assert len(failing) == 1, daemon.report("one 'failing' line per outage")
    assert "deletions wait and are retried" in failing[0]
    assert len(_warnings(daemon, "K2HR3 works again after")) == 1


def test_an_api_url_password_is_masked_by_check_config_and_the_refusal(tmp_path: Path) -> None:
    """Issue 17: a user and password in api_url were printed as written."""
    config = _credentials_config(tmp_path, api_url="https://k2hr3:s3cret@k2hr3.example.com/v1/rol")
    said = "[k2hr3] api_url: 'https://k2hr3:***@k2hr3.example.com/v1/rol' does not end in /v1/role"
    checked = _run("-c", str(config), "--check-config")
    assert checked.returncode == 1
    assert said in checked.stdout.splitlines()
    started = _run("-c", str(config))
    assert started.returncode == 2
    assert said in started.stderr
    assert "s3cret" not in checked.stdout + checked.stderr + started.stdout + started.stderr


@pytest.mark.parametrize(
    ("api_url", "warned"),
    [
        ("http://k2hr3.example.com/v1/role", True),
        ("http://192.0.2.10:8080/v1/role", True),
        ("http://127.0.0.1:18080/v1/role", False),
        ("http://localhost/v1/role", False),
        ("https://k2hr3.example.com/v1/role", False),
    ],
)
def test_a_plain_http_k2hr3_over_the_network_is_a_warning(
    tmp_path: Path, api_url: str, warned: bool
) -> None:
    config = _credentials_config(tmp_path, api_url=api_url)
    done = _run("-c", str(config), "--check-config")
    assert done.returncode == 0, done.stdout + done.stderr
    warning = (
        "warning: [k2hr3] api_url: http:// over the network: anyone on the path can read "
        "the calls, and forge K2HR3's answers; use https://"
    )
    assert (warning in done.stdout.splitlines()) is warned, done.stdout


LATIN1 = "# K2HR3 de l'équipe\n".encode("latin-1")  # 0xe9: not UTF-8


def test_a_non_utf8_byte_is_one_line_at_start_and_in_check_config(e2e: Harness) -> None:
    config = e2e.config()
    config.write_bytes(config.read_bytes() + LATIN1)
    lines = len(config.read_bytes().splitlines())
    said = f"{config}: line {lines}: byte 0xe9 is not UTF-8; save the file as UTF-8"
    for args in (("--check-config",), ()):
        done = e2e.cli(config, *args)
        assert (done.returncode, done.stderr) == (2, f"k2hr3-osnl: {said}\n")


def test_sighup_with_a_non_utf8_byte_rejects_the_reload_and_goes_on(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """Issue 17 item 10: it killed the daemon (exit 1)."""
    config = e2e.config()
    daemon = e2e.daemon(config).start()
    config.write_bytes(config.read_bytes() + LATIN1)
    os.kill(daemon.pid, signal.SIGHUP)
    said = "reload rejected, still running on the previous configuration: "
    wait_until(lambda: said in daemon.log(), 20, "the rejected reload")
    assert "byte 0xe9 is not UTF-8" in daemon.log()
    cuk = str(uuid.uuid4())
    _publish_legacy_deletions(e2e, [cuk])
    assert k2hr3.wait_for(1), daemon.report("nothing delivered after the reload")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log()


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def test_idle_connections_do_not_shut_out_healthz_and_metrics(e2e: Harness) -> None:
    """Issue 17: 16 connections that never send a request took every slot."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    daemon = e2e.daemon(e2e.config(sections={"metrics": {"port": port}})).start()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        assert _get(port, "/healthz") == 200, daemon.report("/healthz shut out")
        assert _get(port, "/metrics") == 200, daemon.report("/metrics shut out")
    finally:
        for conn in idle:
            conn.close()
    assert daemon.stop() == 0


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    (value,) = [float(line.split()[-1]) for line in text.splitlines() if line.split(" ")[0] == name]
    return value


def test_a_dry_run_is_seen_at_a_glance_in_healthz_and_metrics(e2e: Harness) -> None:
    """Issue 18 item 8: it showed K2HR3 "ok" with a last success, and nothing was sent."""
    port = free_port()
    sections = {"metrics": {"port": port}, "k2hr3": {"dry_run": "true"}}
    daemon = e2e.daemon(e2e.config(sections=sections), queues=[f"{e2e.pool}-dry-run"]).start()
    _publish_legacy_deletions(e2e, [str(uuid.uuid4())])
    wait_until(lambda: "deleted (dry run: not sent)" in daemon.log(), 20, "the dry-run call")
    status, body = healthz(port)
    assert status == 200
    assert body["dry_run"] is True
    assert body["reason"] == "consuming, dry run: K2HR3 is not called"
    assert body["k2hr3"]["state"] == "dry run: not called"
    assert body["k2hr3"]["last_success"] is None
    assert _metric(port, "k2hr3_osnl_dry_run") == 1
    assert _metric(port, "k2hr3_osnl_last_success_timestamp_seconds") == 0
    assert daemon.stop() == 0


def test_a_live_daemon_says_it_is_not_a_dry_run(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections={"metrics": {"port": port}})).start()
    _publish_legacy_deletions(e2e, [str(uuid.uuid4())])
    assert k2hr3.wait_for(1), daemon.report("nothing delivered")
    status, body = healthz(port)
    assert (status, body["dry_run"], body["k2hr3"]["state"]) == (200, False, "ok")
    assert _metric(port, "k2hr3_osnl_dry_run") == 0
    assert daemon.stop() == 0


def test_a_state_dir_where_nothing_can_be_parked_is_unhealthy_and_loses_nothing(
    e2e: Harness, k2hr3: FakeK2HR3, tmp_path: Path
) -> None:
    """Issue 18 item 6: a rejected deletion came back every ~8 s while /healthz said 200.

    A file appears where the state directory should be, after the start (root writes
    anywhere, so permissions alone cannot make this test's directory unwritable)."""
    port = free_port()
    state = tmp_path / "not-a-directory"
    sections = {"metrics": {"port": port}, "k2hr3": {"state_dir": state}}
    daemon = e2e.daemon(e2e.config(sections=sections)).start()
    if state.is_dir():
        state.rmdir()
    state.write_text("", "utf-8")
    k2hr3.status = 400
    cuk = str(uuid.uuid4())
    _publish_legacy_deletions(e2e, [cuk])
    wait_until(lambda: "cannot be parked" in daemon.log(), 30, "the failed park")
    status, body = healthz(port)
    assert status == 503
    assert (
        f"cannot park deletions in {state}/parked ({state} is not a directory)" in (body["reason"])
    )
    assert _metric(port, "k2hr3_osnl_up") == 0
    assert _metric(port, "k2hr3_osnl_parking_writable") == 0
    k2hr3.status = 204  # handed back, not lost: delivered once K2HR3 takes it
    assert k2hr3.wait_for(1, timeout=60), daemon.report("the deletion was lost")
    assert k2hr3.deleted() == [(cuk, None)]
    assert daemon.stop() == 0


def test_check_config_checks_the_state_dir(e2e: Harness, tmp_path: Path) -> None:
    """Issue 18 item 6: --check-config said OK for a state_dir nothing can be parked in."""
    afile = tmp_path / "afile"
    afile.write_text("", "utf-8")
    config = e2e.config(sections={"k2hr3": {"state_dir": afile / "state"}})
    done = e2e.cli(config, "--check-config")
    assert (done.returncode, done.stdout) == (
        1,
        f"[k2hr3] state_dir: {afile} is not a directory: deletions that must be parked "
        "cannot be\n1 problem(s)\n",
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_check_config_warns_about_a_state_dir_its_user_cannot_write(
    e2e: Harness, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    done = e2e.cli(e2e.config(sections={"k2hr3": {"state_dir": locked}}), "--check-config")
    assert done.returncode == 0
    assert f"warning: [k2hr3] state_dir: {locked} is not writable for user " in done.stdout


NEUTRON_SAMPLE = paths.TESTS / "samples/neutron/k2hr3_osnl__notifications_neutron.json"
NEUTRON_CUK = "12345678-1234-5678-1234-567812345678"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "rabbit://guest:n0t-th3-pw@127.0.0.1:5672/",
            "not published: RabbitMQ refused the user name or password of transport_url",
        ),
        (
            "rabbit://guest:guest@127.0.0.1:5672/{unique}_nowhere",
            "not published: RabbitMQ has no vhost",
        ),
        ("rabbit://guest:guest@127.0.0.1:{closed}/", "not published: RabbitMQ: "),
    ],
    ids=["password", "vhost", "down"],
)
def test_publish_that_fails_says_so_in_one_line_and_exits_1(
    e2e: Harness, url: str, said: str
) -> None:
    """Issue 18 item 2: a traceback, then "published ...", and exit 0."""
    config = e2e.config(transport_url=url.format(unique=e2e.unique, closed=free_port()))
    done = e2e.cli(config, "publish", str(NEUTRON_SAMPLE))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    ours = [line for line in done.stderr.splitlines() if line.startswith("k2hr3-osnl: ")]
    assert ours == [line for line in ours if said in line] and len(ours) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "n0t-th3-pw" not in done.stderr


def test_publish_uses_the_files_rabbit_options_and_a_daemon_receives_it(
    tmp_path: Path, rabbitmq: str, k2hr3: FakeK2HR3, unique: str
) -> None:
    """Durable queues from [oslo_messaging_rabbit]: publish ignored them, RabbitMQ refused
    the non-durable declaration (PRECONDITION_FAILED), and it still said "published"."""
    with Harness(tmp_path, unique, k2hr3.url, rabbitmq, durable=True) as harness:
        config = harness.config()
        daemon = harness.daemon(config).start()
        done = harness.cli(
            config,
            "publish",
            "--exchange",
            harness.neutron,
            "--topic",
            harness.notifications,
            str(NEUTRON_SAMPLE),
        )
        assert done.returncode == 0, done.stderr
        assert k2hr3.wait_for(1), daemon.report("the published deletion never arrived")
        assert k2hr3.deleted()[0][0] == NEUTRON_CUK
        assert daemon.stop() == 0


def test_publish_gives_a_sample_without_publisher_id_the_one_its_service_sends(
    e2e: Harness, k2hr3: FakeK2HR3, tmp_path: Path
) -> None:
    """The daemon's publisher_id filter dropped such samples without a word."""
    sample = json.loads(NEUTRON_SAMPLE.read_text("utf-8"))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({k: sample[k] for k in ("event_type", "payload")}), "utf-8")
    config = e2e.config()
    daemon = e2e.daemon(config).start()
    done = e2e.cli(
        config, "publish", "--exchange", e2e.neutron, "--topic", e2e.notifications, str(bare)
    )
    assert done.returncode == 0, done.stderr
    assert "(the sample has no publisher_id: sent as 'network.k2hr3-osnl-publish')" in done.stdout
    assert k2hr3.wait_for(1), daemon.report("the published deletion was dropped")
    assert daemon.stop() == 0
