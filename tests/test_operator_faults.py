"""Faults an operator meets first (issue 18): each is one line that names the fix.

Never a traceback, never a false "OK", and nothing lost; through the real daemon and
command line, on the real broker.
"""

from __future__ import annotations

from support.harness import Harness
from support.waiting import wait_until


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
