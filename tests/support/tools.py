"""Tests that need tools the README's prerequisites do not include.

The README asks for ``python3-venv`` and ``rabbitmq-server`` only, and its test command
must pass on a machine that has just those. Tests that boot a container, build the .deb
or run promtool need more; where it is missing they skip with one line that names the
Debian package to install. CI must not skip them: ``.ci/run`` installs the packages and
sets ``K2HR3_OSNL_REQUIRE_CONTAINERS=1``, which turns each such skip into a failure.
"""

from __future__ import annotations

import os

import pytest

REQUIRE = "K2HR3_OSNL_REQUIRE_CONTAINERS"


def required() -> bool:
    """Whether this run must run every container and tool test (CI)."""
    return os.environ.get(REQUIRE, "") not in ("", "0")


def skip_module_without(missing: str | None) -> None:
    """At a test module's top: skip the whole file with one line if ``missing`` says why.

    When :func:`required`, nothing is skipped here: the module's fixtures call
    :func:`require`, which fails each test with the same line instead.
    """
    __tracebackhide__ = True  # the skip line names the test module, not this one
    if missing and not required():
        pytest.skip(missing, allow_module_level=True)


def require(missing: str | None) -> None:
    """In a fixture or test: fail when :func:`required`, skip otherwise."""
    __tracebackhide__ = True
    if not missing:
        return
    if required():
        pytest.fail(f"{missing} ({REQUIRE} is set)", pytrace=False)
    pytest.skip(missing)
