"""Build the .deb from this source tree the way README's "Install on Debian 12" does.

:func:`build` copies the tree (without virtualenvs, caches and build leftovers) and runs
``dpkg-buildpackage -us -uc -b`` in the copy, with Debian's own ``python3`` first on
PATH: dh-python must build with bookworm's setuptools, not a pyenv or virtualenv one.
The package lands next to the copy, as dpkg-buildpackage puts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE = "k2hr3-osnl"
#: Debian's own tools and interpreter, nothing else.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
#: What a copy of the tree leaves out: not sources, and in the way of a clean build.
_LEFT_OUT = {".git", ".tox", "__pycache__", ".pytest_cache", ".ruff_cache", ".pybuild"}
#: ...and in debian/, what an earlier build in the tree left.
_DEBIAN_LEFT_OUT = {".debhelper", PACKAGE, "files", "debhelper-build-stamp"}
#: Build-Depends of debian/control, plus lintian (.ci/run installs them): each tool and
#: the Debian package that brings it.
TOOLS = {
    "dpkg-buildpackage": "dpkg-dev",
    "dh": "debhelper",
    "pybuild": "dh-python",
    "lintian": "lintian",
}


class BuildError(RuntimeError):
    """dpkg-buildpackage failed; the message carries the end of its log."""


@dataclass(frozen=True)
class Built:
    deb: Path
    changes: Path
    log: str
    seconds: float


def missing_packages() -> list[str]:
    """The Debian packages to install before the .deb can be built here."""
    return [
        package for tool, package in TOOLS.items() if shutil.which(tool, path=DEBIAN_PATH) is None
    ]


def unavailable() -> str | None:
    """Why the .deb cannot be built here (one line naming what to install), or None."""
    missing = missing_packages()
    if not missing:
        return None
    every = ["debhelper", "dh-python", "pybuild-plugin-pyproject", "lintian"]
    return (
        f"building the .deb needs {', '.join(missing)}: "
        f"apt-get install --no-install-recommends {' '.join(every)}"
    )


def build(workdir: Path, timeout: float = 600) -> Built:
    """The package built from a copy of the tree under ``workdir``."""
    source = workdir / "src"
    shutil.copytree(ROOT, source, ignore=_left_out, symlinks=True)
    started = time.monotonic()
    result = subprocess.run(
        ["dpkg-buildpackage", "-us", "-uc", "-b"],
        cwd=source,
        env={**_clean_env(), "PATH": DEBIAN_PATH},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise BuildError(f"dpkg-buildpackage exited {result.returncode}\n{log[-6000:]}")
    debs = sorted(workdir.glob(f"{PACKAGE}_*_all.deb"))
    changes = sorted(workdir.glob(f"{PACKAGE}_*.changes"))
    if len(debs) != 1 or len(changes) != 1:
        raise BuildError(f"expected one .deb and one .changes in {workdir}: {debs} {changes}")
    return Built(debs[0], changes[0], log, time.monotonic() - started)


def lintian(changes: Path) -> list[str]:
    """lintian's tags for the build (``E: ...``, ``W: ...``), overrides applied."""
    result = subprocess.run(
        ["lintian", "--pedantic", str(changes)],
        env={**_clean_env(), "PATH": DEBIAN_PATH},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def contents(deb: Path) -> dict[str, str]:
    """``{path: "mode owner/group"}`` of every file in the package."""
    listing = subprocess.run(
        ["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    files = {}
    for line in listing.splitlines():
        mode, owner, _size, _date, _time, path = line.split(maxsplit=5)
        files[path.removeprefix(".")] = f"{mode} {owner}"
    return files


def _left_out(directory: str, names: list[str]) -> set[str]:
    out = {n for n in names if n in _LEFT_OUT or n.startswith(".venv") or n.endswith(".egg-info")}
    if Path(directory) == ROOT / "debian":
        out |= {n for n in names if n in _DEBIAN_LEFT_OUT or n.endswith(".substvars")}
    return out


def _clean_env() -> dict[str, str]:
    """The environment without a virtualenv's or pyenv's hold on ``python3``."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYENV_VERSION", "PYTEST_ADDOPTS")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}
