"""Configuration: k2hr3_osnl 1.0.8 files keep working, and every bad value is caught early.

An operator upgrading from k2hr3_osnl 1.0.8 keeps the old file; options that no longer
make sense are accepted with a warning that says what replaced them.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from oslo_log import versionutils
from support import paths
from support.daemon import with_broker

from k2hr3_osnl import config
from k2hr3_osnl.commands import cli
from k2hr3_osnl.config import opts
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.process import service

NEUTRON_CONTEXT = {"project_id": "project_string", "is_admin": True}
NEUTRON_METADATA = {"message_id": "msgidfff-ffff-ffff-ffff-ffffffffffff"}

#: Every option k2hr3_osnl 1.0.8 read, with values an operator of it would have set.
OLD_CONFIG = r"""
[DEFAULT]
debug_level = debug
log_file = {log_file}
libs_debug_level = warn

[oslo_messaging_notifications]
event_type = ^port\.delete\.end$
publisher_id = ^network.*$
context = project_id:^project_string$
metadata = message_id:^msgid
payload = port_id:^.+$
transport_url = rabbit://k2hr3:s3cret@mq.example.com:5672/
topic = notifications
exchange = neutron
executor = threading
pool = k2hr3_osnl
allow_requeue = True

[k2hr3]
api_url = https://k2hr3.example.com:443/v1/role
timeout_seconds = 30
max_retries = 3
retry_interval_seconds = 60
allow_self_signed_cert = False
requeue_on_error = False
"""

#: Accepted, read, and reported as deprecated (with their replacement named).
DEPRECATED = {
    ("oslo_messaging_notifications", "allow_requeue"): "parked",
    ("k2hr3", "max_retries"): "retry_budget_seconds",
    ("k2hr3", "requeue_on_error"): "parked",
}


def _verification(client: RoleClient) -> object:
    """What the client verifies K2HR3's certificate with (True: the system's CAs)."""
    # Read from whichever HTTP layer the client is built on (requests or bare urllib3).
    if hasattr(client, "verify"):
        return client.verify
    return client.session.verify


def write(tmp_path: Path, text: str, name: str = "k2hr3-osnl.conf") -> str:
    path = tmp_path / name
    path.write_text(with_broker(textwrap.dedent(text)), encoding="utf-8")
    return str(path)


@pytest.fixture
def old_config(tmp_path: Path) -> str:
    return write(tmp_path, OLD_CONFIG.format(log_file=tmp_path / "k2hr3_osnl.log"))


@pytest.fixture
def fresh_deprecations(monkeypatch: pytest.MonkeyPatch) -> None:
    """oslo.config (and oslo.log) report each deprecation once per process: reset both."""
    for group, group_opts in opts.list_opts():
        for opt in group_opts:
            if (group, opt.name) in DEPRECATED:
                monkeypatch.setattr(opt, "_logged_deprecation", False)
    monkeypatch.setattr(versionutils, "_deprecated_messages_sent", {})


# --- k2hr3_osnl 1.0.8 files -------------------------------------------------------------


def test_old_config_loads_without_problems(old_config: str) -> None:
    conf = config.load([old_config])
    assert config.problems(conf) == []
    config.check(conf)


def test_old_config_means_the_same(old_config: str, tmp_path: Path) -> None:
    conf = config.load([old_config])
    assert conf.debug_level == "debug"
    assert conf.libs_debug_level == "warn"
    assert conf.log_file == str(tmp_path / "k2hr3_osnl.log")

    n = conf.oslo_messaging_notifications
    # A single exchange and topic, as 1.0.8 took them, are one-element lists now.
    assert n.exchange == ["neutron"]
    assert n.topic == ["notifications"]
    assert n.pool == "k2hr3_osnl"
    assert n.transport_url == "rabbit://k2hr3:s3cret@mq.example.com:5672/"
    assert n.context == {"project_id": "^project_string$"}

    k = conf.k2hr3
    assert k.api_url == "https://k2hr3.example.com:443/v1/role"
    client = service.make_client(conf)
    try:
        assert client.timeout[1] == 30
        assert _verification(client) is True  # allow_self_signed_cert = False
        assert client.api_url == k.api_url
    finally:
        client.close()
    # retry_interval_seconds was the pause between retries; now it caps probe spacing.
    assert service.make_handler(conf).breaker.max_interval == 60


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("", True),
        ("allow_self_signed_cert = True", False),
        ("ca_file = {ca}", "{ca}"),
        ("ca_file = {ca}\nallow_self_signed_cert = True", False),
    ],
)
def test_certificate_verification(tmp_path: Path, options: str, expected: object) -> None:
    """Verification is on unless the operator turns it off; ca_file replaces the system CAs."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here", encoding="utf-8")
    text = "[k2hr3]\napi_url = https://k2hr3.example.com/v1/role\n" + options.format(ca=ca)
    client = service.make_client(config.load([write(tmp_path, text)]))
    try:
        assert _verification(client) == (
            expected.format(ca=ca) if isinstance(expected, str) else expected
        )
    finally:
        client.close()


def test_old_filter_still_selects_the_same_notifications(old_config: str) -> None:
    """The five filter options feed oslo.messaging's NotificationFilter unchanged."""
    rule = service.make_filter(config.load([old_config]))
    neutron = ("network.node1.example.com", "port.delete.end")
    payload = {"port_id": "p-1", "port": {}}
    assert rule.match(NEUTRON_CONTEXT, *neutron, NEUTRON_METADATA, payload)
    assert not rule.match(
        NEUTRON_CONTEXT, "compute.h1", "port.delete.end", NEUTRON_METADATA, payload
    )
    assert not rule.match(
        NEUTRON_CONTEXT, "network.n1", "port.create.end", NEUTRON_METADATA, payload
    )
    assert not rule.match({"project_id": "other"}, *neutron, NEUTRON_METADATA, payload)
    assert not rule.match(NEUTRON_CONTEXT, *neutron, {"message_id": "zzz"}, payload)
    assert not rule.match(NEUTRON_CONTEXT, *neutron, NEUTRON_METADATA, {"port": {}})


def test_old_config_targets_one_exchange_and_topic(old_config: str, tmp_path: Path) -> None:
    conf = config.load([old_config])
    conf.set_override("transport_url", "fake://", group="oslo_messaging_notifications")
    conf.set_override("state_dir", str(tmp_path), group="k2hr3")
    daemon = service.build(conf)
    try:
        assert [(t.exchange, t.topic) for t in daemon.targets] == [("neutron", "notifications")]
    finally:
        daemon.transport.cleanup()
        daemon.handler.client.close()


def test_deprecated_options_say_what_replaced_them(
    old_config: str, fresh_deprecations: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    conf = config.load([old_config])
    assert config.problems(conf) == []  # reads every option, as the daemon does at start
    # The old values are still readable, for anyone who inspects them.
    assert conf.k2hr3.max_retries == 3
    assert conf.k2hr3.requeue_on_error is False
    assert conf.oslo_messaging_notifications.allow_requeue is True
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for (group, name), replacement in DEPRECATED.items():
        (line,) = [w for w in warnings if f'"{name}"' in w]
        assert group in line
        assert "deprecated" in line.lower()
        assert replacement in line


def test_options_that_are_not_set_are_not_reported(
    tmp_path: Path, fresh_deprecations: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    conf = config.load([write(tmp_path, "[k2hr3]\napi_url = https://k/v1/role\n")])
    assert config.problems(conf) == []
    assert not [r for r in caplog.records if "deprecated" in r.getMessage().lower()]


def test_unsupported_executor_is_replaced_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = config.load([write(tmp_path, "[oslo_messaging_notifications]\nexecutor = eventlet\n")])
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl")
    config.check(conf)
    assert any(
        "eventlet" in r.getMessage() and "threading" in r.getMessage() for r in caplog.records
    )


# --- the new forms ---------------------------------------------------------------------


def test_comma_separated_exchanges_and_topics(tmp_path: Path) -> None:
    conf = config.load(
        [
            write(
                tmp_path,
                """
                [oslo_messaging_notifications]
                exchange = neutron, nova
                topic = notifications,versioned_notifications
                """,
            )
        ]
    )
    assert config.problems(conf) == []
    n = conf.oslo_messaging_notifications
    assert n.exchange == ["neutron", "nova"]
    assert n.topic == ["notifications", "versioned_notifications"]


def test_defaults_cover_all_three_deletions(tmp_path: Path) -> None:
    conf = config.load([write(tmp_path, "[k2hr3]\n")])
    assert config.problems(conf) == []
    n = conf.oslo_messaging_notifications
    assert n.pool == "k2hr3_osnl"
    rule = service.make_filter(conf)
    for publisher_id, event_type in [
        ("network.node1.example.com", "port.delete.end"),
        ("nova-compute:compute", "instance.delete.end"),
        ("nova-api:fake-mini", "instance.delete.end"),
        ("compute.overcloud-compute-0", "compute.instance.delete.end"),
    ]:
        assert rule.match({}, publisher_id, event_type, {}, {}), (publisher_id, event_type)
    for event_type in ("port.delete.start", "instance.delete.start", "instance.soft_delete.end"):
        assert not rule.match({}, "nova-compute:compute", event_type, {}, {})


# --- problems() ---------------------------------------------------------------------------


def problems_of(tmp_path: Path, text: str) -> list[str]:
    return config.problems(config.load([write(tmp_path, text)]))


def test_bad_regex_is_a_problem(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[oslo_messaging_notifications]\nevent_type = ^(port\n")
    assert len(found) == 1
    assert "[oslo_messaging_notifications] event_type" in found[0]


def test_bad_regex_in_a_dict_option_is_a_problem(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[oslo_messaging_notifications]\npayload = port_id:[a-\n")
    assert len(found) == 1
    assert "payload.port_id" in found[0]


@pytest.mark.parametrize(
    "url",
    [
        "rabbit://k2hr3:s3cretpw@mq.example.com:port/",
        "rabbit://k2hr3:s3cretpw@[::1/",
        "k2hr3:s3cretpw@mq.example.com:5672",
    ],
)
def test_malformed_transport_url_is_a_problem_without_the_password(
    tmp_path: Path, url: str
) -> None:
    found = problems_of(tmp_path, f"[oslo_messaging_notifications]\ntransport_url = {url}\n")
    assert len(found) == 1
    assert "transport_url" in found[0]
    assert "s3cretpw" not in found[0]


@pytest.mark.parametrize(
    "url", ["ftp://k2hr3.example.com/v1/role", "k2hr3.example.com/v1/role", "https:///v1/role"]
)
def test_non_http_api_url_is_a_problem(tmp_path: Path, url: str) -> None:
    found = problems_of(tmp_path, f"[k2hr3]\napi_url = {url}\n")
    assert len(found) == 1
    assert "[k2hr3] api_url" in found[0]


def test_api_url_must_name_the_role_api(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[k2hr3]\napi_url = https://k2hr3.example.com/v1/resource\n")
    assert len(found) == 1
    assert "/v1/role" in found[0]


def test_unreadable_ca_file_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    found = problems_of(tmp_path, f"[k2hr3]\nca_file = {missing}\n")
    assert found == [f"[k2hr3] ca_file: {missing} is not readable"]


@pytest.mark.parametrize("exchange", ["neutron, no va", "neutron, nova/evil", "neutron,,nova"])
def test_bad_exchange_name_is_a_problem(tmp_path: Path, exchange: str) -> None:
    found = problems_of(tmp_path, f"[oslo_messaging_notifications]\nexchange = {exchange}\n")
    assert found
    assert all("[oslo_messaging_notifications] exchange" in f for f in found)


def test_empty_topic_list_is_a_problem(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[oslo_messaging_notifications]\ntopic =\n")
    assert found == ["[oslo_messaging_notifications] topic: must name at least one"]


def test_bad_typed_value_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[k2hr3]\ntimeout_seconds = soon\ndry_run = maybe\n")
    assert len(found) == 2
    assert any("timeout_seconds" in f for f in found)
    assert any("dry_run" in f for f in found)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """An operator fixes the file in one go, not one error per restart."""
    found = problems_of(
        tmp_path,
        """
        [oslo_messaging_notifications]
        event_type = ^(port
        exchange = bad name
        [k2hr3]
        api_url = ftp://k2hr3/v1/role
        """,
    )
    assert len(found) == 3


# --- load() and the command line ------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load([str(tmp_path / "missing.conf")])


def test_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[k2hr3\napi_url = https://k/v1/role\n")
    with pytest.raises(config.ConfigError) as error:
        config.load([path])
    assert path in str(error.value)


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="not a regular file"):
        config.load([str(tmp_path)])


@pytest.mark.parametrize("content", [None, "[k2hr3\n", "no section at all\n", "[k2hr3]\n= value\n"])
def test_cli_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
    content: str | None,
) -> None:
    path = tmp_path / "k2hr3-osnl.conf"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert cli.main(["-c", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("k2hr3-osnl: ")
    assert err.count("\n") == 1, err
    assert str(path) in err


def test_check_config_lists_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    path = write(
        tmp_path,
        """
        [oslo_messaging_notifications]
        transport_url = rabbit://k2hr3:s3cretpw@mq:port/
        [k2hr3]
        api_url = ftp://k2hr3/v1/role
        """,
    )
    assert cli.main(["-c", path, "--check-config"]) == 1
    out = capsys.readouterr().out
    assert "transport_url" in out and "api_url" in out and "2 problem(s)" in out
    assert "s3cretpw" not in out


def test_check_config_accepts_the_old_file(
    old_config: str, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    assert cli.main(["-c", old_config, "--check-config"]) == 0
    assert "configuration OK" in capsys.readouterr().out


def test_invalid_values_stop_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """Without --check-config, the same problems stop the command with exit status 2."""
    path = write(tmp_path, "[k2hr3]\napi_url = ftp://k2hr3/v1/role\n")
    sample = paths.TESTS / "samples" / "neutron" / "designate__port.delete.end.json"
    assert cli.main(["-c", path, "replay", "--dry-run", str(sample)]) == 2
    captured = capsys.readouterr()
    assert "api_url" in captured.err
    assert captured.out == ""


_BUILD_AND_LIST = """
import sys
from k2hr3_osnl import config
from k2hr3_osnl.process import service
daemon = service.build(config.load([sys.argv[1]]))
print("keystoneauth1" in sys.modules)
daemon.handler.client.close()
"""


@pytest.mark.parametrize(
    ("credentials", "loaded"),
    [("", "False"), ("[service_credentials]\nauth_type = password\n", "True")],
    ids=["without", "with"],
)
def test_keystoneauth1_is_loaded_only_for_a_config_with_service_credentials(
    tmp_path: Path, credentials: str, loaded: str
) -> None:
    """6 MB and 60 ms that a daemon which never asks OpenStack does not pay (issue 21).

    (requests comes with it here; on Debian 12 dnspython, under eventlet, loads it anyway.)
    """
    import subprocess
    import sys

    path = write(tmp_path, "[k2hr3]\napi_url = http://127.0.0.1:9/v1/role\n" + credentials)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_AND_LIST, path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == loaded
