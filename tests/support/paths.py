"""Where things are, computed once: tests live one folder deeper than tests/ itself.

A test names the tree through these rather than through its own ``__file__``, so moving a
test to another folder (tests/README.md) never breaks the paths it reads.
"""

from __future__ import annotations

from pathlib import Path

#: tests/ itself: conftest.py, support/, samples/, promtool/, k2hr3_osnl_1_0_8/.
TESTS = Path(__file__).resolve().parent.parent
#: The repository: pyproject.toml, src/, etc/, docs/, debian/, systemd/.
ROOT = TESTS.parent
