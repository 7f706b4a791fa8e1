"""Faults an operator meets first (issue 18): each is one line that names the fix.

Never a traceback, never a false "OK", and nothing lost; through the real daemon and
command line, on the real broker.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from support.harness import Harness
from support.waiting import wait_until

from k2hr3_osnl import config


def test_a_vhost_that_does_not_exist_is_one_line_and_a_retried_start(e2e: Harness) -> None:
    """RabbitMQ closes the connection with NOT_ALLOWED: a config fault, retried slowly."""
    vhost = f"{e2e.unique}_nowhere"
    daemon = e2e.daemon(e2e.config(transport_url=f"{e2e.transport_url}{vhost}"))
    daemon.start(wait=False)
    said = f"RabbitMQ has no vhost '{vhost}': the vhost of transport_url"
    wait_until(lambda: said in daemon.log(), 30, "the refusal's line")
    assert daemon.alive, daemon.report("exited on a missing vhost")
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log(), daemon.report("a traceback")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2hr3_osnl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("args", [("--check-config",), ()], ids=["check-config", "daemon"])
def test_no_configuration_file_is_refused_naming_where_it_looked(args: tuple[str, ...]) -> None:
    """Built-in defaults alone would listen as guest on the default vhost, live."""
    if any(os.path.exists(p) for p in config.DEFAULT_CONFIG_FILES):
        pytest.skip("this host has a default configuration file")
    done = _run(*args)
    assert done.returncode == 2
    assert done.stderr == (
        "k2hr3-osnl: no configuration file: neither /etc/k2hr3/k2hr3_osnl.conf nor "
        "/etc/k2hr3-osnl/k2hr3-osnl.conf exists; give one with -c FILE\n"
    )
    assert "OK" not in done.stdout
