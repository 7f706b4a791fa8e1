"""A real systemd booted as PID 1 of a throw-away container, to test unit files for real.

The container is ``systemd-nspawn`` on a non-recursive bind mount of this machine's ``/``
with ``--volatile=overlay``: it runs this machine's own systemd, Python and libraries,
but every write lands in a tmpfs that disappears with it, so installing units, users,
packages or files inside never touches the host. It keeps the host's network (no
``--private-network``), so a service inside reaches RabbitMQ and HTTP stand-ins on
127.0.0.1 as it would on the host.

It boots a target of its own (:data:`TARGET`, which wants only ``sysinit.target``), never
``default.target``: that would start this machine's enabled services, a second RabbitMQ
among them. Commands run inside with ``nsenter`` into the container's namespaces, so
``systemctl`` and ``journalctl`` are the real ones talking to the real PID 1.

Usage::

    reason = unavailable()          # None, or why no systemd can boot here (to skip)
    with booted(tmp_path, read_only_binds={wheels: "/run/wheels"}) as machine:
        machine.run("/usr/bin/python3", "-m", "venv", "/opt/foo")   # as root, inside
        machine.write("/etc/foo.conf", "[DEFAULT]\\n", mode=0o640)
        machine.install_unit(Path("systemd/foo.service"))         # copied unchanged
        machine.drop_in("foo.service", "test", "[Service]\\nWatchdogSec=3\\n")
        machine.daemon_reload()
        mark = machine.cursor()
        machine.systemctl("start", "foo.service")               # raises BootError if it fails
        machine.show("foo.service", "ActiveState", "SubState")  # {"ActiveState": "active", ...}
        machine.wait_for("foo.service", NRestarts="1", ActiveState="active")
        machine.journal("foo.service", "--priority=warning", after=mark)
        machine.path("/var/lib/foo/state")                      # the file, seen from the host

Each container's cgroups live under a directory of its own in every cgroup hierarchy of
the host (``k2hr3-systemd-boot-<id>``, next to the cgroup of the process that boots it),
so that containers booted at the same time do not meet, and :meth:`Machine.shutdown`
removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

#: The target the container boots: sysinit.target (journald, tmpfiles, sysusers), no more.
TARGET = "k2hr3-systemd-boot.target"
_TARGET_UNIT = """\
[Unit]
Description=What a k2hr3-osnl test container boots: sysinit.target and nothing else
Requires=sysinit.target
After=sysinit.target
AllowIsolate=yes
"""
SYSTEMD = Path("/lib/systemd/systemd")
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIT_DIR = "/etc/systemd/system"
#: What k2hr3-osnl installed or run by hand on the host may have left, which a container
#: testing a fresh install must not see (pass as ``absent`` to :func:`booted`).
K2HR3_OSNL_PATHS = (
    "/etc/k2hr3-osnl",
    "/var/lib/k2hr3-osnl",
    "/var/lib/private/k2hr3-osnl",
    "/var/log/k2hr3-osnl",
    "/opt/k2hr3-osnl",
    "/usr/local/bin/k2hr3-osnl",
)
#: The tag of the marks :meth:`Machine.cursor` logs.
_MARK = "k2hr3-systemd-boot-mark"


class BootError(RuntimeError):
    """The container did not boot, or a command inside failed; the message says why."""


def unavailable() -> str | None:
    """Why no systemd can boot in a container here, or None when it can."""
    if os.geteuid() != 0:
        return "booting systemd in a container needs root"
    if shutil.which("systemd-nspawn") is None:
        return (
            "booting systemd in a container needs systemd-nspawn: apt-get install systemd-container"
        )
    if shutil.which("nsenter") is None or shutil.which("unshare") is None:
        return "nsenter/unshare are not installed (util-linux)"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is not installed (Debian package systemd)"
    hierarchies = _cgroup_hierarchies()
    if not hierarchies:
        return f"no cgroup hierarchy for systemd under {CGROUP_ROOT}"
    for hierarchy in hierarchies:
        if not os.access(_own_cgroup(hierarchy), os.W_OK):
            return f"cannot make cgroups in {_own_cgroup(hierarchy)} (read-only?)"
    return None


def _cgroup_hierarchies() -> list[Path]:
    """The hierarchies systemd uses: cgroup2 (at the root or 'unified') and name=systemd."""
    mounts: list[Path] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            point, fstype = Path(fields[4]), fields[fields.index("-") + 1]
            options = fields[-1].split(",")
            if point.parent not in (CGROUP_ROOT, CGROUP_ROOT.parent):
                continue
            if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options):
                mounts.append(point)
    return mounts


def _own_cgroup(hierarchy: Path) -> Path:
    """This process's cgroup directory in ``hierarchy`` (as /proc/self/cgroup names it)."""
    wanted = "" if _is_cgroup2(hierarchy) else "name=systemd"
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == wanted:
            return hierarchy / path.lstrip("/")
    return hierarchy


def _is_cgroup2(hierarchy: Path) -> bool:
    return (hierarchy / "cgroup.controllers").exists()


class Machine:
    """One container running systemd as PID 1; :meth:`boot` it, then :meth:`shutdown`.

    ``binds`` and ``read_only_binds`` map host paths to paths inside (``/tmp`` inside is a
    tmpfs of its own, so hand files in through a bind, :meth:`write` or :meth:`copy_in`).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        name: str | None = None,
        binds: Mapping[Path | str, str] | None = None,
        read_only_binds: Mapping[Path | str, str] | None = None,
    ) -> None:
        self.name = name or f"k2hr3-{uuid.uuid4().hex[:8]}"
        self.workdir = Path(workdir)
        self.binds = dict(binds or {})
        self.read_only_binds = dict(read_only_binds or {})
        #: nspawn's output: the container's console, the boot messages.
        self.console = self.workdir / f"{self.name}.console.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._leader: int | None = None
        self._cgroups: list[Path] = []

    # Booting and shutting down.

    def boot(self, timeout: float = 90) -> Machine:
        """Start the container; return once its systemd has reached :data:`TARGET`."""
        reason = unavailable()
        if reason:
            raise BootError(reason)
        self.workdir.mkdir(parents=True, exist_ok=True)
        target_file = self.workdir / TARGET
        target_file.write_text(_TARGET_UNIT)
        self._cgroups = self._make_cgroups()
        root = self.workdir / "root"
        root.mkdir(exist_ok=True)
        nspawn = [
            "systemd-nspawn",
            f"--directory={root}",
            f"--machine={self.name}",
            "--volatile=overlay",
            "--register=no",
            "--keep-unit",
            "--link-journal=no",
            "--resolv-conf=off",
            "--timezone=off",
            "--console=pipe",
            f"--bind-ro={target_file}:{UNIT_DIR}/{TARGET}",
            *(f"--bind={host}:{inner}" for host, inner in self.binds.items()),
            *(f"--bind-ro={host}:{inner}" for host, inner in self.read_only_binds.items()),
            "--boot",
            "--",
            f"--unit={TARGET}",
        ]
        # The shell moves itself into the container's cgroups first; the bind mount of
        # '/' exists only in a mount namespace of nspawn's own: nothing to unmount
        # afterwards, nothing left behind if the test run is killed.
        enter = "".join(
            f"echo $$ > {shlex.quote(str(c / 'cgroup.procs'))} && " for c in self._cgroups
        )
        mount = f"mount --bind / {shlex.quote(str(root))}"
        script = f"{enter}{mount} && exec {shlex.join(nspawn)}"
        with open(self.console, "wb") as console:
            self._process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._leader = self._wait_for_leader(timeout)
            self._wait_until_booted(timeout)
        except BaseException:
            self.shutdown()
            raise
        return self

    def shutdown(self, timeout: float = 30) -> None:
        """Power the container off (SIGKILL if it will not), then remove its cgroups."""
        process, self._process = self._process, None
        leader, self._leader = self._leader, None
        if process is not None:
            if process.poll() is None and leader is not None:
                # systemd powers off on SIGRTMIN+4, like 'systemctl poweroff'.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leader, signal.SIGRTMIN + 4)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                if leader is not None:
                    # SIGKILL to a PID namespace's init ends every process in it.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leader, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout)
        self._remove_cgroups()

    def __enter__(self) -> Machine:
        return self.boot()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def cgroups(self) -> tuple[Path, ...]:
        """The host's cgroup directories the container lives in (removed on shutdown)."""
        return tuple(self._cgroups)

    @property
    def leader(self) -> int:
        """The host's pid of the container's PID 1."""
        if self._leader is None:
            raise BootError(f"container {self.name} is not running")
        return self._leader

    # Files inside.

    def path(self, inner: str | Path) -> Path:
        """A host path to ``inner`` as the container sees it (through /proc/PID/root)."""
        return Path(f"/proc/{self.leader}/root") / Path(inner).relative_to("/")

    def write(self, inner: str | Path, text: str, mode: int = 0o644) -> Path:
        """Write a file inside the container (parent directories too); its host path."""
        target = self.path(inner)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)
        return target

    def copy_in(self, source: Path, inner: str | Path, mode: int = 0o644) -> Path:
        """Copy a host file into the container, byte for byte."""
        target = self.path(inner)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(mode)
        return target

    def install_unit(self, source: Path, name: str | None = None) -> str:
        """Copy a unit file unchanged into /etc/systemd/system; its unit name."""
        unit = name or source.name
        self.copy_in(source, f"{UNIT_DIR}/{unit}")
        return unit

    def drop_in(self, unit: str, name: str, text: str) -> Path:
        """/etc/systemd/system/UNIT.d/NAME.conf (call :meth:`daemon_reload` after)."""
        return self.write(f"{UNIT_DIR}/{unit}.d/{name}.conf", text)

    def remove_drop_in(self, unit: str, name: str) -> None:
        self.path(f"{UNIT_DIR}/{unit}.d/{name}.conf").unlink(missing_ok=True)

    # Commands inside.

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (as root); ``check`` raises on failure."""
        command = [
            "nsenter",
            f"--target={self.leader}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--root",
            "--wd",
            "--",
            *argv,
        ]
        environ = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "SYSTEMD_COLORS": "0",
            "SYSTEMD_PAGER": "",
            "SYSTEMD_URLIFY": "0",
            **(env or {}),
        }
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env=environ,
            check=False,
        )
        if check and result.returncode != 0:
            raise BootError(
                f"{shlex.join(argv)} in {self.name} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result

    def systemctl(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", "--no-ask-password", *args, check=check,
                        timeout=timeout)  # fmt: skip

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show`` as a dict (every property when none is named)."""
        args = ["show", unit]
        if properties:
            args.append("--property=" + ",".join(properties))
        output = self.systemctl(*args).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def journal(self, unit: str | None = None, *args: str, after: str | None = None) -> str:
        """``journalctl`` (of ``unit`` if given), after making journald write out.

        ``after``, a :meth:`cursor`, shows only what was logged since. (Not with
        ``--after-cursor``: journalctl 252 combined with a match such as ``--unit`` or
        ``--priority`` skips the first matching entry after the cursor.)
        """
        self.run("journalctl", "--sync", check=False)
        selector = ["--unit", unit] if unit else []
        if after:
            selector.append(f"--cursor={after}")
        output = self.run(
            "journalctl", "--no-pager", "--no-hostname", *selector, *args, check=False
        ).stdout
        if after:
            output = "".join(line for line in output.splitlines(keepends=True) if _MARK not in line)
        return output

    def cursor(self) -> str:
        """A position in the journal, for ``journal(..., after=cursor)``.

        A mark of its own is logged and its cursor returned, so that ``--cursor`` (which
        shows the entry at the cursor when it matches) can start there.
        """
        token = f"{_MARK} {uuid.uuid4().hex}"
        self.run("logger", "--priority=user.debug", f"--tag={_MARK}", token)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.run("journalctl", "--sync", check=False)
            output = self.run(
                "journalctl", "--output=json", "--lines=1", f"SYSLOG_IDENTIFIER={_MARK}",
                f"MESSAGE={token}", check=False,
            ).stdout  # fmt: skip
            for line in output.splitlines():
                return json.loads(line)["__CURSOR"]
            time.sleep(0.05)
        raise BootError(f"the journal of {self.name} did not take a mark")

    def wait_for(
        self, unit: str, timeout: float = 60, interval: float = 0.2, **expected: str
    ) -> dict[str, str]:
        """Poll ``systemctl show`` until every ``Property=value`` holds; the last values."""
        deadline = time.monotonic() + timeout
        while True:
            values = self.show(unit, *expected)
            if all(values.get(k) == v for k, v in expected.items()):
                return values
            if time.monotonic() >= deadline:
                raise BootError(
                    f"{unit} in {self.name}: after {timeout:.0f}s {values}, wanted {expected}"
                )
            time.sleep(interval)

    # Internals.

    def _make_cgroups(self) -> list[Path]:
        made = []
        for hierarchy in _cgroup_hierarchies():
            cgroup = _own_cgroup(hierarchy) / f"k2hr3-systemd-boot-{self.name}"
            cgroup.mkdir(parents=True, exist_ok=True)
            made.append(cgroup)
        return made

    def _remove_cgroups(self) -> None:
        """Every cgroup directory the container's systemd made, deepest first."""
        for cgroup in self._cgroups:
            if not cgroup.exists():
                continue
            directories = sorted(
                (Path(d) for d, _, _ in os.walk(cgroup)), key=lambda p: len(p.parts)
            )
            for directory in reversed(directories):
                _rmdir_when_empty(directory)
        self._cgroups = []

    def _wait_for_leader(self, timeout: float) -> int:
        """The pid of the container's systemd: a descendant of nspawn that is PID 1 inside."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BootError(self._report("systemd-nspawn exited while booting"))
            for pid in _descendants(self._process.pid):
                if _pid_in_namespace(pid) == 1 and _comm(pid) == "systemd":
                    return pid
            time.sleep(0.05)
        raise BootError(self._report(f"no systemd in the container after {timeout:.0f}s"))

    def _wait_until_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise BootError(self._report("the container stopped while booting"))
            result = self.run("systemctl", "is-active", TARGET, check=False, timeout=30)
            state = result.stdout.strip()
            if state == "active":
                return
            if state == "failed":
                break
            time.sleep(0.1)
        raise BootError(self._report(f"{TARGET} is {state or 'unknown'} after booting"))

    def _report(self, what: str) -> str:
        console = self.console.read_text("utf-8", "replace") if self.console.exists() else ""
        return f"{what}\n--- console of {self.name} ---\n{console[-6000:]}"


def _rmdir_when_empty(directory: Path, attempts: int = 50) -> None:
    """rmdir a cgroup; a cgroup whose last process is just exiting is busy for a moment."""
    for _ in range(attempts):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    raise BootError(f"cgroup {directory} is still in use after the container stopped")


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _pid_in_namespace(pid: int) -> int | None:
    """The innermost pid of ``pid`` (the last NSpid field)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def booted(
    workdir: Path,
    *,
    binds: Mapping[Path | str, str] | None = None,
    read_only_binds: Mapping[Path | str, str] | None = None,
    absent: Sequence[str] = (),
    timeout: float = 90,
) -> Iterator[Machine]:
    """A booted :class:`Machine`, shut down (and its cgroups removed) on exit.

    ``absent``: paths that must not exist inside, whatever the host left there (a daemon
    once run by hand as root leaves /var/lib/k2hr3-osnl, which systemd then cannot move
    under DynamicUser= across the overlay: "Invalid cross-device link"). They are
    removed inside only; the overlay keeps the host's copy as it is.
    """
    machine = Machine(workdir, binds=binds, read_only_binds=read_only_binds)
    machine.boot(timeout)
    try:
        if absent:
            machine.run("rm", "-rf", "--one-file-system", "--", *absent)
        yield machine
    finally:
        machine.shutdown()
