"""``python -m k2hr3_osnl`` (``__main__.py``) is the ``k2hr3-osnl`` command, exit status included.

Where no console script was installed (a source tree, a container), an operator runs
the module instead: it must print and exit exactly as the command does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMAND = Path(sys.executable).parent / "k2hr3-osnl"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "args", [("--version",), ("--check-config", "-c", "/nonexistent/k2hr3-osnl.conf")]
)
def test_the_module_prints_and_exits_as_the_command_does(args: tuple[str, ...]) -> None:
    command = str(COMMAND) if COMMAND.exists() else shutil.which("k2hr3-osnl")
    assert command is not None, "the k2hr3-osnl console script is not installed"
    by_command = run(command, *args)
    by_module = run(sys.executable, "-m", "k2hr3_osnl", *args)
    assert (by_module.returncode, by_module.stdout, by_module.stderr) == (
        by_command.returncode,
        by_command.stdout,
        by_command.stderr,
    )


def test_a_missing_file_is_one_line_and_status_2() -> None:
    result = run(sys.executable, "-m", "k2hr3_osnl", "--check-config", "-c", "/nonexistent/x.conf")
    assert result.returncode == 2
    assert result.stderr == "k2hr3-osnl: /nonexistent/x.conf: no such file\n"
    assert "Traceback" not in result.stdout + result.stderr
