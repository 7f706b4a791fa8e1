"""The reconciler election on the real RabbitMQ: one holder, a fast and lossless hand-over.

Candidates here are :class:`~k2hr3_osnl.rabbit.election.Election` objects of one test
process, each with its own connection, exactly as daemons have; the daemon-level
behaviour (three daemons, SIGKILL) is in ``tests/broker/test_fleet.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import amqp
import kombu
import pytest
from support.broker import AMQP_URL, Broker, TcpProxy
from support.rabbitmq_node import make_nodes, running
from support.waiting import wait_until

from k2hr3_osnl.core.leadership import Token, decode
from k2hr3_osnl.core.observer import Observer
from k2hr3_osnl.rabbit.election import HEARTBEAT, Election

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]


class Leading(Observer):
    """What the election tells the metrics and health."""

    def __init__(self) -> None:
        self.changes: list[bool] = []

    def reconcile_leading(self, leading: bool) -> None:
        self.changes.append(leading)


@pytest.fixture
def queue(rabbitmq: str, unique: str) -> Iterator[str]:
    name = f"{unique}_pool-reconcile"
    yield name
    Broker().delete([name])


def candidate(queue: str, name: str, port: int = 5672, seed: float | None = None) -> Election:
    def connect(index: int) -> kombu.Connection:
        return kombu.Connection(
            f"amqp://guest:guest@127.0.0.1:{port}//", heartbeat=HEARTBEAT, connect_timeout=5
        )

    return Election(connect, queue, seed=lambda: seed, observer=Leading(), me=name)


def leaders(candidates: list[Election]) -> list[Election]:
    return [c for c in candidates if c.leading()]


def test_of_three_candidates_exactly_one_holds_the_token(queue: str) -> None:
    candidates = [candidate(queue, f"node{i}").start() for i in range(3)]
    try:
        wait_until(lambda: len(leaders(candidates)) == 1, 30, "a holder")
        time.sleep(3 * HEARTBEAT)  # probes keep flowing: nobody mints a second token
        assert len(leaders(candidates)) == 1
        # Each told its observer it stands by; only the holder that it leads.
        assert all(c.observer.changes[:1] == [False] for c in candidates)
        assert [c.me for c in candidates if True in c.observer.changes] == [
            leaders(candidates)[0].me
        ]
    finally:
        for c in candidates:
            c.stop()


def test_a_stopped_holder_hands_the_fleet_checkpoint_to_the_next(queue: str) -> None:
    candidates = [candidate(queue, f"node{i}").start() for i in range(3)]
    try:
        wait_until(lambda: len(leaders(candidates)) == 1, 30, "a holder")
        first = leaders(candidates)[0]
        assert first.checkpoint() is None
        assert first.ended(1_000_000.0)  # a finished pass
        assert first.ended(None)  # an unfinished one: the checkpoint stays
        wait_until(first.leading, 10, "the handed-on token back with its holder")
        assert first.checkpoint() == 1_000_000.0
        first.stop()
        rest = [c for c in candidates if c is not first]
        wait_until(lambda: len(leaders(rest)) == 1, 10, "another holder")
        second = leaders(rest)[0]
        assert second.checkpoint() == 1_000_000.0
        # A new holder passes at once (nobody may have held the token for a while)...
        assert second.may_run(600)
        assert second.ended(None)
        wait_until(second.leading, 10, "its token back")
        # ...then one pass per interval, wherever the last one ran.
        assert not second.may_run(600)
        assert second.may_run(0)
        assert second.checkpoint() == 1_000_000.0
    finally:
        for c in candidates:
            c.stop()


def test_a_lost_token_is_minted_again_from_the_node_s_own_checkpoint(queue: str) -> None:
    one = candidate(queue, "node0", seed=42.0).start()
    try:
        wait_until(one.leading, 30, "a first token")
        assert one.checkpoint() == 42.0
        one.stop()
        Broker().delete([queue])  # a broker that lost the queue, token and all
        two = candidate(queue, "node1", seed=7.0).start()
        try:
            wait_until(two.leading, 30, "a new token")
            assert two.checkpoint() == 7.0
        finally:
            two.stop()
    finally:
        one.stop()


def test_an_extra_token_is_swept_and_the_later_checkpoint_kept(queue: str) -> None:
    holder = candidate(queue, "node0", seed=100.0).start()
    try:
        wait_until(holder.leading, 30, "a holder")
        with kombu.Connection(AMQP_URL) as conn:
            conn.default_channel.basic_publish(
                amqp.Message(Token(checkpoint=500.0, holder="stray").encode()),
                exchange="",
                routing_key=queue,
            )
        wait_until(lambda: holder.checkpoint() == 500.0, 15, "the extra token merged")
        wait_until(lambda: Broker().queue_info(queue) == (0, 1), 15, "the queue swept")
        assert holder.leading()
    finally:
        holder.stop()
    # What is left is one token, with the merged checkpoint.
    bodies = Broker().drain(queue)
    assert [decode(b).checkpoint for b in bodies] == [500.0]  # type: ignore[union-attr]


def test_a_holder_cut_off_silently_stops_holding_within_ten_seconds(queue: str) -> None:
    proxy = TcpProxy().start()
    far = candidate(queue, "far", port=proxy.port)
    near = candidate(queue, "near")
    try:
        far.start()
        wait_until(far.leading, 30, "the far candidate to hold the token")
        near.start()
        time.sleep(1)
        proxy.freeze()  # no RST, no FIN: only heartbeats can tell
        frozen = time.monotonic()
        wait_until(lambda: not far.leading(), 15, "the cut-off holder to give up", interval=0.1)
        assert time.monotonic() - frozen < 10
        wait_until(near.leading, 30, "the other candidate to take over")
    finally:
        near.stop()
        far.stop(timeout=1)
        proxy.stop()


@pytest.mark.cluster  # a RabbitMQ node of the test's own, with a short consumer_timeout
def test_a_short_consumer_timeout_is_learnt_and_the_token_kept(tmp_path: Path) -> None:
    """RabbitMQ closes a channel that holds a delivery past consumer_timeout (30 min by
    default; 2 s here, checked every 0.5 s). The holder learns the value from the
    closing reason once, then hands the token on to itself in time and keeps it."""
    with running(make_nodes(tmp_path, 1, conf="consumer_timeout = 2000")) as (node,):
        node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 500).")
        election = Election(
            lambda index: kombu.Connection(node.amqp_url("guest", "guest"), heartbeat=HEARTBEAT),
            "pool-reconcile",
            me="node0",
            observer=Leading(),
        ).start()
        try:
            wait_until(lambda: election.refresh == 1.0, 30, "the timeout learnt")
            wait_until(election.leading, 10, "the token held again")
            changes = len(election.observer.changes)
            time.sleep(10)  # five times the broker's timeout
            assert election.leading() and len(election.observer.changes) == changes
        finally:
            election.stop()


def test_refused_by_rabbitmq_a_candidate_reconciles_alone_from_its_own_file(
    queue: str,
) -> None:
    """A queue declared otherwise (or a permission missing, as on MOSK with pool = ''):
    the safety net must not vanish with the election."""
    with kombu.Connection(AMQP_URL) as conn:
        conn.default_channel.queue_declare(queue, durable=True, auto_delete=False)
    alone = candidate(queue, "node0", seed=1234.0).start()
    try:
        wait_until(alone.leading, 30, "the candidate to reconcile alone")
        assert alone.checkpoint() == 1234.0  # its own file's
        assert alone.may_run(600)
        assert alone.ended(5678.0)
        assert not alone.may_run(600)  # one pass per interval, as without an election
        assert alone.observer.changes[-1] is True
    finally:
        alone.stop()
