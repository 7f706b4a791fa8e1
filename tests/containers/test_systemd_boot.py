"""The container of ``support/systemd_boot.py``: a real PID 1 that leaves the host alone.

These promises matter on a shared machine: no second RabbitMQ (or any of the host's
enabled services) starts inside, nothing written inside reaches the host's files, and
nothing is left behind (processes, cgroups) once it is shut down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import tools
from support.systemd_boot import TARGET, Machine, booted, unavailable

pytestmark = pytest.mark.systemd
tools.skip_module_without(unavailable())


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    tools.require(unavailable())
    with booted(tmp_path) as machine:
        yield machine


def test_pid_1_is_systemd_and_it_reached_its_own_target_only(machine: Machine) -> None:
    assert machine.run("cat", "/proc/1/comm").stdout.strip() == "systemd"
    assert machine.run("systemctl", "is-active", TARGET).stdout.strip() == "active"
    for unit in ("default.target", "multi-user.target", "rabbitmq-server.service"):
        state = machine.run("systemctl", "is-active", unit, check=False).stdout.strip()
        assert state == "inactive", f"{unit} is {state}"


def test_writes_inside_never_reach_the_host(machine: Machine) -> None:
    probe = f"/etc/k2hr3-systemd-boot-probe-{uuid.uuid4().hex}"
    machine.write(probe, "inside\n")
    assert machine.run("cat", probe).stdout == "inside\n"
    assert not Path(probe).exists()


def test_shutdown_leaves_no_process_and_no_cgroup(tmp_path: Path) -> None:
    tools.require(unavailable())
    machine = Machine(tmp_path).boot()
    leader = machine.leader
    cgroups = machine.cgroups
    assert cgroups and all(c.is_dir() for c in cgroups)
    machine.shutdown()
    assert not Path(f"/proc/{leader}").exists()
    assert not any(c.exists() for c in cgroups)


def test_what_the_host_left_behind_is_absent_inside_and_kept_outside(tmp_path: Path) -> None:
    tools.require(unavailable())
    leftover = Path(f"/var/lib/k2hr3-systemd-boot-leftover-{uuid.uuid4().hex}")
    (leftover / "checkpoint").mkdir(parents=True)
    try:
        with booted(tmp_path, absent=[str(leftover)]) as machine:
            inside = machine.run("test", "-e", str(leftover), check=False)
            assert inside.returncode != 0, f"{leftover} is visible inside"
            machine.run("mkdir", "-p", str(leftover / "fresh"))
        assert (leftover / "checkpoint").is_dir() and not (leftover / "fresh").exists()
    finally:
        (leftover / "checkpoint").rmdir()
        leftover.rmdir()
