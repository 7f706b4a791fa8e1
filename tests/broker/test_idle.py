"""An idle daemon sleeps: nothing in it wakes up on a timer of its own (issue 21).

On a gateway node the daemon is idle most of the time, and 1.0.8 cost 0.17 CPU-ms per
second there. What made ours cost seven times that was a thread waking ten times a
second to look for a shutdown request. This counts how often the real daemon's threads
are scheduled while nothing happens: a count, not a time, so a busy machine does not
change it.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from support.harness import Harness

#: oslo.messaging's consumer backs off from 1 ms to 5 s between empty polls: it has
#: reached 5 s after this long without a message.
SETTLE_SECONDS = 12.0
WATCHED_SECONDS = 4.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wakeups(pid: int) -> int:
    """How many times any thread of ``pid`` was put on a CPU so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            continue
    return total


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
def test_the_idle_daemon_with_metrics_on_wakes_up_only_for_the_broker(e2e: Harness) -> None:
    sections = {"metrics": {"port": free_port()}}
    daemon = e2e.daemon(e2e.config(sections=sections)).start()
    time.sleep(SETTLE_SECONDS)
    before = wakeups(daemon.pid)
    time.sleep(WATCHED_SECONDS)
    woken = wakeups(daemon.pid) - before
    # The consumer's 5 s poll and a heartbeat may fall in the window; a timer that
    # ticks every 100 ms (forty times here) may not.
    assert woken <= 12, daemon.report(f"woken {woken} times in {WATCHED_SECONDS} s idle")
    assert daemon.stop() == 0, daemon.report("did not stop cleanly")
