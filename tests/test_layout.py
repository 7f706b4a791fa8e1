"""The package's layout is its architecture: the pure core imports no I/O library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "k2hr3_osnl"
CORE = sorted(p.stem for p in (SRC / "core").glob("*.py") if p.stem != "__init__")
#: What the core must never pull in, directly or through anything it imports.
EDGES = ("oslo_messaging", "oslo_config", "kombu", "aiohttp")


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_none_of_the_edge_libraries(module: str) -> None:
    code = (
        f"import sys, k2hr3_osnl.core.{module}\n"
        f"print(' '.join(m for m in {EDGES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"k2hr3_osnl.core.{module} imports {result.stdout}"


def test_every_module_lives_in_a_subpackage() -> None:
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]
