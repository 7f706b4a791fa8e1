"""The .deb, built from this tree and run by a real systemd on Debian 12 (issue 14).

The package is built once per run, as README's "Install on Debian 12" says
(``dpkg-buildpackage`` with dh-python on bookworm's own setuptools), then each test
boots a fresh container (``support/systemd_boot.py``: this machine's root under a
throw-away overlay, its systemd as PID 1, the host's network) and installs it there
with ``dpkg -i``: nothing but what the package brings and Debian's own libraries. The
service talks to the real RabbitMQ on 127.0.0.1 and to a K2HR3 stand-in on the host.

Without root, systemd-nspawn or the build tools these tests skip with one line naming
what to install (``support/tools.py``); CI installs them and makes that a failure.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import debian_package, tools
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete
from support.systemd_boot import K2HR3_OSNL_PATHS, Machine, booted, unavailable
from support.waiting import wait_until

pytestmark = [pytest.mark.debian, pytest.mark.timeout(300)]

#: Why the package cannot be built and booted here, if it cannot.
_MISSING = "; ".join(r for r in (unavailable(), debian_package.unavailable()) if r) or None
tools.skip_module_without(_MISSING)

UNIT = "k2hr3-osnl.service"
CONFIG = "/etc/k2hr3-osnl/k2hr3-osnl.conf"
STATE_DIR = "/var/lib/k2hr3-osnl"
#: Where the container sees the built package (a name without "k2hr3" in it, so that
#: the purge test's search for leftovers does not find it).
DEB_DIR = "/run/package-under-test"
#: Where a purged package may have left a file named after it (not /tmp: other tests').
SEARCHED = ("/etc", "/usr", "/lib", "/var/lib", "/var/log", "/var/cache", "/run")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> debian_package.Built:
    tools.require(_MISSING)
    return debian_package.build(tmp_path_factory.mktemp("deb"))


@pytest.fixture
def machine(package: debian_package.Built, tmp_path: Path) -> Iterator[Machine]:
    """A fresh container with the package installed by dpkg, as an operator would."""
    with booted(
        tmp_path / "machine",
        read_only_binds={package.deb.parent: DEB_DIR},
        absent=K2HR3_OSNL_PATHS,
    ) as machine:
        # This machine is a container image whose policy-rc.d forbids every service
        # action to maintainer scripts (exit 101, Docker's default); a gateway node has
        # none, so the node in the container has none either.
        machine.run("rm", "-f", "/usr/sbin/policy-rc.d")
        machine.run("dpkg", "-i", f"{DEB_DIR}/{package.deb.name}", timeout=180)
        yield machine


@pytest.fixture
def node(machine: Machine, e2e: Harness, k2hr3: FakeK2HR3) -> Iterator[Node]:
    """The installed package, configured to go live on this test's broker names."""
    node = Node(machine, e2e)
    node.configure()
    yield node
    machine.systemctl("stop", UNIT, check=False)


class Node:
    """The gateway node in the container: its config file, its unit and its journal."""

    def __init__(self, machine: Machine, harness: Harness) -> None:
        self.machine = machine
        self.harness = harness
        self.cursor = machine.cursor()

    def configure(self, **default: object) -> None:
        """Replace the conffile's contents (owner and mode stay the package's)."""
        written = self.harness.config(
            sections={
                "DEFAULT": {"log_file": "sys.stderr", **default},
                "k2hr3": {"state_dir": STATE_DIR, "dry_run": "false"},
            }
        )
        self.machine.path(CONFIG).write_text(written.read_text())

    def show(self, *properties: str) -> dict[str, str]:
        return self.machine.show(UNIT, *properties)

    def journal(self) -> str:
        return self.machine.journal(UNIT, after=self.cursor)

    def delete(self, cuk: str, ip: str) -> None:
        h = self.harness
        h.notify(h.neutron, h.notifications, "messagingv2", neutron_port_delete(cuk, [ip]))

    def consumers(self) -> int:
        info = self.harness.broker.queue_info(self.harness.pool)
        return 0 if info is None else info[1]

    def report(self, what: str) -> str:
        return f"{what}\n--- journal ---\n{self.journal()}"


# --- the package itself ----------------------------------------------------------------


def test_the_package_is_lintian_clean_and_depends_on_debian_12_only(
    package: debian_package.Built,
) -> None:
    assert package.deb.name == f"k2hr3-osnl_{_debian_version()}_all.deb"
    assert debian_package.lintian(package.changes) == []

    depends = debian_package.field(package.deb, "Depends")
    for group in depends.split(","):
        name, _, constraint = group.split("|")[0].strip().partition(" ")
        name = name.removesuffix(":any")
        policy = subprocess.run(
            ["apt-cache", "policy", name], capture_output=True, text=True, check=True
        ).stdout
        candidate = re.search(r"Candidate: (\S+)", policy)
        assert candidate and candidate.group(1) != "(none)", f"{name}: not in apt\n{policy}"
        assert re.search(r"debian\.org/\S+ bookworm(-\w+)?/main", policy), policy
        if constraint:
            op, version = constraint.strip("()").split()
            assert _version_holds(candidate.group(1), op, version), (name, constraint)

    files = debian_package.contents(package.deb)
    assert files["/usr/bin/k2hr3-osnl"].startswith("-rwxr-xr-x root/root")
    assert files[CONFIG].startswith("-rw-r----- root/root")
    for path in (
        f"/lib/systemd/system/{UNIT}",
        "/usr/lib/sysusers.d/k2hr3-osnl.conf",
        "/usr/share/man/man8/k2hr3-osnl.8.gz",
        "/usr/share/doc/k2hr3-osnl/README.Debian",
        "/usr/share/doc/k2hr3-osnl/k2hr3-osnl.conf.sample",
        "/usr/share/doc/k2hr3-osnl/k2hr3-osnl-alerts.yml",
        "/usr/lib/python3/dist-packages/k2hr3_osnl/commands/cli.py",
    ):
        assert path in files, f"{path} is not in the package"
    for guide in ("operations", "observability", "scale-out", "mosk"):
        # dh_compress gzips the larger ones.
        names = (
            f"/usr/share/doc/k2hr3-osnl/{guide}.md",
            f"/usr/share/doc/k2hr3-osnl/{guide}.md.gz",
        )
        assert any(name in files for name in names), f"docs/{guide}.md is not in the package"
    # Nothing from a pip install or a virtualenv.
    assert not [p for p in files if p.startswith(("/usr/local", "/opt"))]


def test_install_creates_the_user_keeps_the_config_private_and_starts_nothing(
    machine: Machine,
) -> None:
    assert machine.systemctl("is-enabled", UNIT, check=False).stdout.strip() == "disabled"
    assert machine.systemctl("is-active", UNIT, check=False).stdout.strip() == "inactive"
    values = machine.show(UNIT, "ExecStart", "User", "FragmentPath")
    assert f"argv[]=/usr/bin/k2hr3-osnl -c {CONFIG} " in values["ExecStart"]
    assert values["FragmentPath"] == f"/lib/systemd/system/{UNIT}"

    assert machine.run("stat", "--format=%U:%G %a", CONFIG).stdout.split() == [
        "root:k2hr3-osnl",
        "640",
    ]
    conffiles = machine.run("dpkg-query", "-W", "-f=${Conffiles}", "k2hr3-osnl").stdout
    assert CONFIG in conffiles
    # The service's user reads it; anyone else is refused with one line, exit 2.
    check = machine.run(
        "runuser", "-u", "k2hr3-osnl", "--", "k2hr3-osnl", "--check-config", "-c", CONFIG,
        check=False,
    )  # fmt: skip
    assert check.returncode == 0 and "configuration OK" in check.stdout, check
    assert re.search(r"^dry_run = true$", machine.path(CONFIG).read_text(), re.M)
    refused = machine.run("runuser", "-u", "nobody", "--", "k2hr3-osnl", "-c", CONFIG, check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"k2hr3-osnl: {CONFIG}: permission denied"

    assert machine.run("man", "-w", "8", "k2hr3-osnl").stdout.strip().endswith("k2hr3-osnl.8.gz")


# --- the service it installs -----------------------------------------------------------


@pytest.mark.rabbitmq
def test_the_packaged_unit_deletes_reloads_and_stops(node: Node, k2hr3: FakeK2HR3) -> None:
    node.machine.systemctl("enable", "--now", UNIT, timeout=60)
    # READY=1 only once consuming: start has returned, so the consumer is there.
    assert node.consumers() == 1, node.report("start returned before the daemon consumed")
    started = node.show("MainPID", "ActiveState", "SubState", "User")
    assert started["ActiveState"] == "active" and started["SubState"] == "running"
    user = node.machine.run("ps", "-o", "user=", "-p", started["MainPID"]).stdout.strip()
    assert user == "k2hr3-osnl"

    cuk = str(uuid.uuid4())
    node.delete(cuk, "192.0.2.21")
    assert k2hr3.wait_for(1, timeout=20), node.report("no DELETE reached K2HR3")
    assert k2hr3.deleted() == [(cuk, ("192.0.2.21",))]

    # Reload into JSON log lines: the same process, and the next deletion's line is JSON.
    node.configure(log_format="json")
    node.machine.systemctl("reload", UNIT)
    wait_until(lambda: "reload: applied [DEFAULT] log_format" in node.journal(), 20, "the reload")
    assert node.show("MainPID")["MainPID"] == started["MainPID"]
    second = str(uuid.uuid4())
    node.delete(second, "192.0.2.22")
    assert k2hr3.wait_for(2, timeout=20), node.report("no second DELETE reached K2HR3")
    lines = wait_until(lambda: _json_lines_about(node.journal(), second), 20, "a JSON line")
    assert any(line.get("outcome") == "deleted" for line in lines), lines

    node.machine.systemctl("stop", UNIT, timeout=90)
    stopped = node.show("ActiveState", "Result", "ExecMainStatus")
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert node.consumers() == 0


@pytest.mark.rabbitmq
def test_upgrade_restarts_remove_stops_and_purge_leaves_nothing_behind(
    node: Node, package: debian_package.Built
) -> None:
    machine = node.machine
    machine.systemctl("enable", "--now", UNIT, timeout=60)
    first = node.show("MainPID")["MainPID"]

    # The same version again takes dpkg's upgrade path: a running service restarts.
    machine.run("dpkg", "-i", f"{DEB_DIR}/{package.deb.name}", timeout=180)
    wait_until(lambda: _restarted(node, first), 60, "the restart after the upgrade")
    assert machine.systemctl("is-enabled", UNIT, check=False).stdout.strip() == "enabled"

    machine.run("dpkg", "--remove", "k2hr3-osnl", timeout=180)
    assert machine.run("pgrep", "-u", "k2hr3-osnl", check=False).stdout == ""
    assert node.show("ActiveState")["ActiveState"] == "inactive"
    wait_until(lambda: node.consumers() == 0, 20, "the consumer gone")
    assert not machine.path("/usr/bin/k2hr3-osnl").exists()
    # remove keeps what is the operator's: the configuration and the state.
    assert machine.path(CONFIG).exists()
    assert machine.path(STATE_DIR).exists()

    machine.run("dpkg", "--purge", "k2hr3-osnl", timeout=180)
    left = machine.run(
        "find", *SEARCHED, "-xdev",
        "(", "-name", "*k2hr3-osnl*", "-o", "-name", "*k2hr3_osnl*", ")", check=False,
    ).stdout.split()  # fmt: skip
    assert left == []
    assert not machine.path("/var/lib/private/k2hr3-osnl").exists()
    assert CONFIG not in machine.run("dpkg-statoverride", "--list").stdout
    status = machine.run("dpkg-query", "-W", "-f=${Status}", "k2hr3-osnl", check=False)
    assert status.returncode != 0 or "not-installed" in status.stdout
    # What policy keeps: the system user, so that no later user inherits its files.
    assert machine.run("getent", "passwd", "k2hr3-osnl", check=False).returncode == 0


# --- helpers ---------------------------------------------------------------------------


def _debian_version() -> str:
    """pyproject's version as Debian writes it (2.0.0.dev0 -> 2.0.0~dev0): the two agree."""
    root = debian_package.ROOT
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    debian = re.sub(r"\.?(dev|a|b|rc)(\d+)$", r"~\1\2", version)
    changelog = (root / "debian" / "changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"k2hr3-osnl ({debian}) "), (changelog, version)
    return debian


def _json_lines_about(journal: str, cuk: str) -> list[dict[str, object]]:
    """The journal's JSON log lines that name ``cuk``."""
    found = []
    for line in journal.splitlines():
        start = line.find("{")
        if start >= 0 and cuk in line:
            with contextlib.suppress(ValueError):
                found.append(json.loads(line[start:]))
    return [entry for entry in found if entry.get("cuk") == cuk]


def _version_holds(version: str, op: str, wanted: str) -> bool:
    ops = {">=": "ge", "<=": "le", ">>": "gt", "<<": "lt", "=": "eq"}
    check = ["dpkg", "--compare-versions", version, ops[op], wanted]
    return subprocess.run(check, check=False).returncode == 0


def _restarted(node: Node, first: str) -> bool:
    values = node.show("MainPID", "ActiveState")
    return values["ActiveState"] == "active" and values["MainPID"] not in ("0", first)
