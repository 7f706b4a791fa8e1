"""A dry run's own queue on the real broker: it never collects the whole topic forever.

A dry-run daemon consumes copies on ``<pool>-dry-run`` and deletes that queue when it
stops cleanly. Killed, it cannot: the queue itself must carry an expiry and a length
limit, and a queue left without them by an earlier release must not stop the next
dry run from consuming.
"""

from __future__ import annotations

import contextlib

import kombu
import pytest
from support.broker import AMQP_URL
from support.daemon import Daemon
from support.harness import Harness

from k2hr3_osnl.rabbit import dryrun

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

LIMITS = {"x-expires": 3_600_000, "x-max-length": 10_000}


def declared_with(name: str, arguments: dict[str, object]) -> bool:
    """Whether RabbitMQ takes a declaration of ``name`` with exactly ``arguments``:
    it refuses one whose arguments differ from the queue's (PRECONDITION_FAILED)."""
    with kombu.Connection(AMQP_URL, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            channel.queue_declare(name, durable=False, auto_delete=False, arguments=arguments)
        except connection.channel_errors:
            return False
        finally:
            with contextlib.suppress(Exception):
                channel.close()
    return True


def dry_daemon(e2e: Harness) -> tuple[str, Daemon]:
    queue = f"{e2e.pool}-dry-run"
    e2e.extra_queues.append(queue)
    config = e2e.config("dry", sections={"k2hr3": {"dry_run": "true"}})
    return queue, e2e.daemon(config, queues=[queue])


def test_a_dry_run_killed_uncleanly_leaves_a_queue_that_expires_and_is_bounded(
    e2e: Harness,
) -> None:
    queue, daemon = dry_daemon(e2e)
    daemon.start()
    daemon.kill()  # SIGKILL: no clean stop deletes the queue

    assert e2e.broker.queue_info(queue) is not None
    # RabbitMQ deletes it an hour after its last consumer, and keeps 10,000 copies at most.
    assert declared_with(queue, LIMITS)
    assert dryrun.arguments() == LIMITS


def test_a_queue_left_without_limits_by_an_earlier_release_does_not_stop_a_dry_run(
    e2e: Harness,
) -> None:
    queue, daemon = dry_daemon(e2e)
    assert declared_with(queue, {})  # what a killed dry run of today's main leaves
    daemon.start()

    assert e2e.broker.queue_info(queue) == (0, 1)
    assert f"dry run: deleted queue '{queue}', declared without expiry" in daemon.log()
    assert declared_with(queue, LIMITS)
    assert daemon.stop() == 0
