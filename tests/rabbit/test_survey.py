"""rabbit/survey.py: what the broker already has, found out without changing it.

Each queue and exchange is reported as the broker has it (absent; durable or not; a
quorum queue), by declarations equal to the existing ones, so nothing is created and
nothing is changed; a broker that cannot be asked at all is one error, not a traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import kombu
import pytest

from k2hr3_osnl.rabbit.survey import Declared, SurveyError, survey

pytestmark = pytest.mark.rabbitmq

URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def broker(rabbitmq: str) -> Iterator[kombu.Connection]:
    """A connection to the shared broker, for declaring what the survey finds."""
    with kombu.Connection(URL) as connection:
        yield connection


@pytest.fixture
def names(unique: str, broker: kombu.Connection) -> Iterator[dict[str, str]]:
    """Queue and exchange names of this test's own, deleted after it."""
    names = {kind: f"{unique}-{kind}" for kind in ("classic", "durable", "quorum", "absent")}
    names |= {"exchange": f"{unique}-x", "durable-exchange": f"{unique}-dx"}
    yield names
    channel = broker.channel()
    for kind in ("classic", "durable", "quorum", "absent"):
        channel.queue_delete(names[kind])
    for kind in ("exchange", "durable-exchange"):
        channel.exchange_delete(names[kind])


def test_each_queue_and_exchange_is_reported_as_the_broker_has_it(
    broker: kombu.Connection, names: dict[str, str]
) -> None:
    channel = broker.channel()
    channel.queue_declare(names["classic"], durable=False, auto_delete=False)
    channel.queue_declare(names["durable"], durable=True, auto_delete=False)
    channel.queue_declare(
        names["quorum"], durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"}
    )
    channel.exchange_declare(names["exchange"], "topic", durable=False, auto_delete=False)
    channel.exchange_declare(names["durable-exchange"], "topic", durable=True, auto_delete=False)

    found = survey(
        kombu.Connection(URL),
        [names["classic"], names["durable"], names["quorum"], names["absent"]],
        [names["exchange"], names["durable-exchange"]],
    )

    assert found == {
        names["classic"]: Declared(exists=True, durable=False, quorum=False),
        names["durable"]: Declared(exists=True, durable=True, quorum=False),
        names["quorum"]: Declared(exists=True, durable=True, quorum=True),
        names["absent"]: Declared(exists=False),
        names["exchange"]: Declared(exists=True, durable=False, quorum=False),
        names["durable-exchange"]: Declared(exists=True, durable=True, quorum=False),
    }


def test_what_is_absent_is_not_created_by_asking(
    broker: kombu.Connection, names: dict[str, str]
) -> None:
    survey(kombu.Connection(URL), [names["absent"]], [names["exchange"]])
    again = survey(kombu.Connection(URL), [names["absent"]], [names["exchange"]])
    assert again == {
        names["absent"]: Declared(exists=False),
        names["exchange"]: Declared(exists=False),
    }


def test_a_broker_that_cannot_be_asked_is_one_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    connection = kombu.Connection(f"amqp://guest:guest@127.0.0.1:{port}//", connect_timeout=2)
    with pytest.raises(SurveyError):
        survey(connection, ["anything"], [])


def test_a_refused_login_is_one_error() -> None:
    connection = kombu.Connection("amqp://guest:wrong@127.0.0.1:5672//", connect_timeout=5)
    with pytest.raises(SurveyError):
        survey(connection, ["anything"], [])
