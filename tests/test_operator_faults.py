"""Faults an operator meets first (issue 18): each is one line that names the fix.

Never a traceback, never a false "OK", and nothing lost; through the real daemon and
command line, on the real broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.broker import TcpProxy
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


def _without_notifications_url(e2e: Harness, config: Path) -> Path:
    """The file as OpenStack services write it: no [oslo_messaging_notifications] URL."""
    text = config.read_text("utf-8").replace(f"transport_url = {e2e.transport_url}\n", "", 1)
    config.write_text(text, "utf-8")
    return config


def test_default_transport_url_is_the_broker_when_notifications_has_none(e2e: Harness) -> None:
    """Where every OpenStack service keeps it: [DEFAULT] transport_url."""
    proxy = TcpProxy().start()
    try:
        config = e2e.config(sections={"DEFAULT": {"transport_url": proxy.url}})
        daemon = e2e.daemon(_without_notifications_url(e2e, config)).start()
        assert proxy.connections > 0, daemon.report("did not connect to [DEFAULT]'s broker")
        assert f"RabbitMQ rabbit://127.0.0.1:{proxy.port} vhost '/' [" in daemon.log()
        assert daemon.stop() == 0
    finally:
        proxy.stop()


def test_notifications_transport_url_wins_over_default(e2e: Harness) -> None:
    """As in oslo.messaging: the notifications group's URL, when set, is the one used."""
    proxy = TcpProxy().start()
    try:
        nowhere = f"rabbit://guest:guest@127.0.0.1:{proxy.port}/"
        proxy.stop()  # [DEFAULT]'s broker is down: a daemon using it would never listen
        config = e2e.config(sections={"DEFAULT": {"transport_url": nowhere}})
        daemon = e2e.daemon(config).start()
        assert "RabbitMQ rabbit://127.0.0.1:5672 vhost '/' [" in daemon.log()
        assert daemon.stop() == 0
    finally:
        proxy.stop()


def test_a_file_without_any_transport_url_is_refused_in_one_line(e2e: Harness) -> None:
    config = _without_notifications_url(e2e, e2e.config())
    said = (
        "[oslo_messaging_notifications] transport_url: not set, nor [DEFAULT] transport_url: "
        "set one to rabbit://user:password@host:port/vhost"
    )
    checked = e2e.cli(config, "--check-config")
    assert (checked.returncode, checked.stdout) == (1, f"{said}\n1 problem(s)\n")
    started = e2e.cli(config)
    assert started.returncode == 2
    assert started.stderr == f"k2hr3-osnl: invalid configuration: {said}\n"
