"""rabbit/shared.py: what one process of the pool deleted whole, every other one learns.

On the real broker: a cuk this process's handler deleted whole goes out on the pool's
fanout exchange at the next tick and lands in every other reader's memory, never back
in its own count; port deletions and refusals are not told; a message that is not ours
is ignored; cuks that could not go out wait for the next connection.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Callable, Iterator

import amqp
import pytest
from support.samples import nova_versioned_delete

from k2hr3_osnl.core.delivered import DeletedCuks
from k2hr3_osnl.core.types import Notification
from k2hr3_osnl.rabbit.shared import SUFFIX, SharedDeliveries

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def connections(rabbitmq: str) -> Iterator[Callable[[], amqp.Connection]]:
    """Fresh connections to the shared broker, closed after the test."""
    opened: list[amqp.Connection] = []

    def open_one() -> amqp.Connection:
        connection = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
        connection.connect()
        opened.append(connection)
        return connection

    yield open_one
    for connection in opened:
        with contextlib.suppress(Exception):
            connection.close()


@pytest.fixture
def exchange(unique: str, connections: Callable[[], amqp.Connection]) -> Iterator[str]:
    """The pool's fanout exchange, of this test's own, deleted after it."""
    yield unique + SUFFIX
    connections().channel().exchange_delete(unique + SUFFIX)


def deletion(cuk: str) -> Notification:
    return Notification(str(uuid.uuid4()), *nova_versioned_delete(cuk))


def drain(connection: amqp.Connection) -> None:
    """Read whatever the broker has for this connection now (briefly)."""
    with contextlib.suppress(socket.timeout, TimeoutError):
        while True:
            connection.drain_events(timeout=0.5)


def node(
    exchange: str, name: str, open_one: Callable[[], amqp.Connection]
) -> tuple[SharedDeliveries, amqp.Connection]:
    shared = SharedDeliveries(exchange, DeletedCuks(window=600), name, durable=False)
    connection = open_one()
    shared.attach(connection)
    return shared, connection


def test_a_cuk_one_process_deleted_whole_reaches_the_others_not_itself(
    exchange: str, connections: Callable[[], amqp.Connection]
) -> None:
    a, a_connection = node(exchange, "node-a", connections)
    b, b_connection = node(exchange, "node-b", connections)
    cuk = str(uuid.uuid4())
    a.forgot(cuk)  # what the handler says of an instance deletion K2HR3 accepted
    a.tick()
    drain(b_connection)
    drain(a_connection)
    assert cuk in b.memory
    assert (b.received, len(b.memory)) == (1, 1)
    assert (a.received, len(a.memory)) == (0, 0)


def test_a_message_that_is_not_ours_is_ignored(
    exchange: str, connections: Callable[[], amqp.Connection]
) -> None:
    b, b_connection = node(exchange, "node-b", connections)
    channel = connections().channel()
    for body in (b"not json", b"[]", b'{"from": "x"}', b'{"from": "x", "cuks": [42, null]}'):
        channel.basic_publish(amqp.Message(body), exchange=exchange, routing_key="")
    drain(b_connection)
    assert (b.received, len(b.memory)) == (0, 0)


def test_cuks_that_could_not_go_out_wait_for_the_next_connection(
    exchange: str, connections: Callable[[], amqp.Connection]
) -> None:
    a, a_connection = node(exchange, "node-a", connections)
    b, b_connection = node(exchange, "node-b", connections)
    cuk = str(uuid.uuid4())
    a.forgot(cuk)
    a_connection.close()
    with pytest.raises(Exception):  # noqa: B017 - whatever py-amqp raises on a closed channel
        a.tick()
    a.attach(connections())
    a.tick()
    drain(b_connection)
    assert cuk in b.memory


def test_detached_nothing_is_sent_and_nothing_is_lost(
    exchange: str, connections: Callable[[], amqp.Connection]
) -> None:
    a, _ = node(exchange, "node-a", connections)
    b, b_connection = node(exchange, "node-b", connections)
    cuk = str(uuid.uuid4())
    a.detach()
    a.forgot(cuk)
    a.tick()
    drain(b_connection)
    assert cuk not in b.memory
    a.attach(connections())
    a.tick()
    drain(b_connection)
    assert cuk in b.memory
