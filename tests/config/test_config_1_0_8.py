"""k2hr3_osnl 1.0.8's four sample files, every option switched on, load and run (issue 14).

1.0.8 ignored options it did not register, so its samples carry names it never read
(``[k2hr3] retries``, ``[DEFAULT] debug``...). An operator who switched them on must be
able to start this daemon on the same file: those names load with one deprecation
warning each, ``log_format`` keeps the meaning the sample gave it (a logging format
string), and any other unknown name is still refused, so a misspelled ``dry_run`` cannot
send a daemon live. The files are in ``tests/k2hr3_osnl_1_0_8`` (see its README).
"""

from __future__ import annotations

import io
import logging
import re
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import paths
from support.broker import queue_counts
from support.daemon import Daemon, with_broker
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import (
    neutron_port_delete,
    nova_legacy_delete,
    nova_versioned,
    nova_versioned_delete,
)
from support.waiting import wait_until

from k2hr3_osnl import config
from k2hr3_osnl.commands import cli
from k2hr3_osnl.config import opts, strict
from k2hr3_osnl.observability import logs

SAMPLES_1_0_8 = paths.TESTS / "k2hr3_osnl_1_0_8"
FILES = ("k2hr3_osnl", "neutron", "compute", "nova_compute")
#: Names each file carries that 1.0.8 never read: each is one deprecation warning.
IGNORED_IN = {
    "k2hr3_osnl": {"debug", "log_dir", "log_level", "libraries_log_level", "retries"},
    "neutron": {"retries"},
    "compute": {"retries"},
    "nova_compute": {"retries"},
}
#: The 1.0.8 format string of the generic sample.
FORMAT_1_0_8 = "%(asctime)-15s %(levelname)s %(name)s %(message)s"


def sample(name: str) -> Path:
    return SAMPLES_1_0_8 / f"{name}.conf"


def deprecation_lines(lines: list[str]) -> dict[str, str]:
    """``{name: line}`` of the ignored-name warnings among ``lines``."""
    found = {}
    for line in lines:
        match = re.search(r"\[(?:DEFAULT|k2hr3)\] (\w+): deprecated, ignored as k2hr3_osnl", line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} warned twice"
            found[match.group(1)] = line
    return found


# --- loading -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_each_sample_loads_with_one_warning_per_ignored_name(name: str) -> None:
    conf = config.load([str(sample(name))])
    assert config.problems(conf) == []
    warnings = deprecation_lines(config.warnings(conf))
    assert set(warnings) == IGNORED_IN[name]
    for option, line in warnings.items():
        # One line that says where, and what to set instead.
        assert "\n" not in line
        assert f"{sample(name)} line " in line
        assert line.split("; ", 1)[1].strip(), f"no advice for {option}"


def test_the_samples_mean_what_they_meant_to_1_0_8() -> None:
    generic = config.load([str(sample("k2hr3_osnl"))])
    assert generic.log_format == FORMAT_1_0_8
    assert generic.log_file == "sys.stdout"
    assert generic.debug_level == "info"  # `debug = False` and `log_level` change nothing
    n = generic.oslo_messaging_notifications
    assert (n.exchange, n.topic, n.pool) == (["neutron"], ["notifications"], "k2hr3_osnl")

    neutron = config.load([str(sample("neutron"))])
    assert (neutron.debug_level, neutron.libs_debug_level) == ("error", "warning")

    compute = config.load([str(sample("compute"))])
    assert compute.oslo_messaging_notifications.exchange == ["nova"]
    assert compute.k2hr3.allow_self_signed_cert is True

    versioned = config.load([str(sample("nova_compute"))])
    assert versioned.oslo_messaging_notifications.topic == ["versioned_notifications"]


def test_a_typo_next_to_the_old_names_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "typo.conf"
    text = sample("k2hr3_osnl").read_text()
    path.write_text(text.replace("retries = 3", "retries = 3\ndyr_run = false\nretires = 3"))
    found = config.problems(config.load([str(path)]))
    assert len(found) == 2, found
    assert found[0].startswith("[k2hr3] dyr_run: unknown option") and "dry_run?" in found[0]
    assert found[1].startswith("[k2hr3] retires: unknown option")


def test_the_old_names_are_ignored_only_in_their_own_section(tmp_path: Path) -> None:
    path = tmp_path / "misplaced.conf"
    path.write_text(with_broker("[DEFAULT]\nretries = 3\n[k2hr3]\nlog_dir = logs\n"))
    found = config.problems(config.load([str(path)]))
    assert [line.split(":")[0] for line in found] == ["[DEFAULT] retries", "[k2hr3] log_dir"]


#: Characters a value on one line of a file may hold (in hypothesis 6.67's terms too).
_PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x2FFF).filter(str.isprintable)
_OPTION_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,24}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(
    name=_OPTION_NAME,
    value=st.text(_PRINTABLE, max_size=30),
)
def test_any_name_in_k2hr3_is_known_ignored_with_a_warning_or_refused(
    name: str, value: str
) -> None:
    """The three outcomes of an option line in [k2hr3], whatever its name and value."""
    conf = config.new_conf()
    conf([], default_config_files=[], use_env=False)
    known = strict.known_options(conf, opts.list_opts())
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as file:
        file.write(f"[k2hr3]\n{name} = {value.strip()}\n")
        file.flush()
        found = strict.check_files([file.name], known, opts.IGNORED_1_0_8)
    if name in known["k2hr3"]:
        assert found == strict.Findings()
    elif ("k2hr3", name) in opts.IGNORED_1_0_8:
        assert found.problems == [] and len(found.warnings) == 1
    else:
        assert found.warnings == [] and len(found.problems) == 1
        assert found.problems[0].startswith(f"[k2hr3] {name}: unknown option")


# --- log_format ----------------------------------------------------------------------

_RECORD_FIELDS = ("asctime", "levelname", "name", "message", "process", "lineno", "module")


@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            st.sampled_from([f"%({field})s" for field in _RECORD_FIELDS]),
            st.sampled_from(["%(levelname)-8s", "%(asctime)-15s", "%(lineno)d"]),
            st.text(_PRINTABLE.filter(lambda c: c != "%"), max_size=5),
        ),
        min_size=1,
        max_size=6,
    ).filter(lambda parts: any(p.startswith("%(") for p in parts))
)
def test_a_logging_format_string_is_a_log_format(parts: list[str]) -> None:
    fmt = "".join(parts)
    assert logs.check_format(fmt) == fmt


@pytest.mark.parametrize(
    "bad",
    ["jsn", "TEXT", "%(message)", "%(no_such_field)s %(message)s", "plain words", "%(message)q"],
)
def test_anything_else_is_refused_at_start_with_exit_2(
    bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(f"[DEFAULT]\nlog_format = {bad}\n")
    assert cli.main(["-c", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "[DEFAULT] log_format:" in err[0] and "neither text, json nor a logging format" in err[0]


def test_the_1_0_8_format_string_formats_the_lines(tmp_path: Path, restore_logging: None) -> None:
    log_file = tmp_path / "k2hr3-osnl.log"
    logs.setup("info", "warn", str(log_file), FORMAT_1_0_8)
    logging.getLogger("k2hr3_osnl.test").info("hello %s", "operator")
    line = log_file.read_text().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO k2hr3_osnl.test hello operator", line
    )


def test_text_and_json_keep_their_meaning(tmp_path: Path, restore_logging: None) -> None:
    for log_format, pattern in (
        ("text", r".* \d+ INFO k2hr3_osnl.test hi"),
        ("json", r'\{"time".*"message": "hi"\}'),
    ):
        log_file = tmp_path / f"{log_format}.log"
        logs.setup("info", "warn", str(log_file), log_format)
        logging.getLogger("k2hr3_osnl.test").info("hi")
        assert re.fullmatch(pattern, log_file.read_text().strip())


def test_log_file_sys_stdout_is_standard_output(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    logs.setup("info", "warn", "sys.stdout")
    logging.getLogger("k2hr3_osnl.test").info("to stdout")
    assert "to stdout" in out.getvalue() and err.getvalue() == ""
    assert logs.to_stream("sys.stdout") and logs.to_stream("sys.stderr")
    assert not logs.to_stream("/var/log/k2hr3-osnl.log")


# --- the daemon on each file ----------------------------------------------------------


def _overrides(e2e: Harness, k2hr3: FakeK2HR3, exchange: str, topic: str) -> Path:
    """Only what a test on the shared broker must change: its own names and K2HR3."""
    path = e2e.tmp_path / "shared-broker.conf"
    path.write_text(
        "[oslo_messaging_notifications]\n"
        f"exchange = {exchange}\ntopic = {topic}\npool = {e2e.pool}\n"
        f"[k2hr3]\napi_url = {k2hr3.url}\nstate_dir = {e2e.state_dir}\n"
        # No /metrics server: the default port may belong to another daemon or test.
        "[metrics]\nport = 0\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", FILES)
def test_the_daemon_runs_on_each_sample_and_deletes(
    name: str, e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """Started on the sample (plus the shared broker's names), it consumes and deletes."""
    cuk = str(uuid.uuid4())
    if name in ("k2hr3_osnl", "neutron"):
        exchange, topic = e2e.neutron, e2e.notifications
        wanted, expected = neutron_port_delete(cuk, ["10.0.0.7"]), (cuk, ("10.0.0.7",))
        unwanted = nova_legacy_delete(str(uuid.uuid4()))  # another event type
    elif name == "compute":
        exchange, topic = e2e.nova, e2e.notifications
        wanted, expected = nova_legacy_delete(cuk), (cuk, None)
        unwanted = neutron_port_delete(str(uuid.uuid4()), ["10.0.0.8"])
    else:
        exchange, topic = e2e.nova, e2e.versioned
        wanted, expected = nova_versioned_delete(cuk), (cuk, None)
        unwanted = nova_versioned("instance-delete-start", str(uuid.uuid4()))
    # The samples log to stdout or stderr: the daemon's output is its log. `-d info`, as
    # an operator would type it, because three samples set debug_level = error and the
    # harness waits for the info line that says the daemon listens.
    daemon = Daemon(
        sample(name),
        e2e.tmp_path / "daemon.out",
        [e2e.pool],
        e2e.broker,
        args=["-c", str(_overrides(e2e, k2hr3, exchange, topic)), "-d", "info"],
    )
    e2e.daemons.append(daemon)
    daemon.start()

    e2e.notify(exchange, topic, "messagingv2", unwanted)
    e2e.notify(exchange, topic, "messaging", wanted)
    assert k2hr3.wait_for(1, timeout=20), daemon.report("the deletion did not reach K2HR3")
    wait_until(lambda: queue_counts(e2e.pool) == (0, 0, 1), 30, f"queue {e2e.pool} drained", 0.5)
    assert k2hr3.deleted() == [expected]
    assert daemon.stop() == 0

    log = daemon.log(since_start=False).splitlines()
    assert set(deprecation_lines(log)) == IGNORED_IN[name], daemon.report("warnings")
    if name == "k2hr3_osnl":  # the sample's own format: no pid after the time
        listening = next(
            line for line in log if line.endswith("k2hr3_osnl.process.service listening")
        )
        assert re.fullmatch(r"\S+ \S+ INFO k2hr3_osnl.process.service listening", listening)
