"""What is already declared on a broker: whether a queue or exchange exists, and how.

oslo.messaging's listener declares everything it consumes, with the durability of
``amqp_durable_queues`` and the type of ``rabbit_quorum_queue``; RabbitMQ refuses a
declaration that differs from an existing one (``PRECONDITION_FAILED``). MOSK's page
names no queue and says nothing of durability, so ``mosk-config`` asks the broker
before it prints the configuration: passively first (nothing is created), then with the
arguments oslo.messaging would use, adjusted by what RabbitMQ answers. A declaration
equal to the existing one changes nothing. Only kombu's and py-amqp's public API.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import amqp.exceptions
import kombu

#: RabbitMQ's words for an existing declaration that differs from ours.
#: (``current is 'true'``; for arguments ``current is the value 'quorum' of type ...``)
_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<arg>[^']+)'.*current is (?:the value )?'(?P<current>[^']*)'"
)


@dataclass(frozen=True)
class Declared:
    """One queue or exchange as the broker has it; ``None``: not found out."""

    exists: bool
    durable: bool | None = None
    quorum: bool | None = None
    #: Why it could not be found out (an argument oslo.messaging never sets, a refusal).
    unknown: str = ""


class SurveyError(RuntimeError):
    """The broker could not be asked at all (unreachable, refused the login)."""


def survey(
    connection: kombu.Connection, queues: Iterable[str], exchanges: Iterable[str]
) -> dict[str, Declared]:
    """Each queue and exchange (``topic`` type), by name, as ``connection``'s broker has it."""
    try:
        connection.connect()
    except Exception as error:  # kombu and py-amqp raise many kinds for one refusal
        raise SurveyError(str(error) or type(error).__name__) from None
    try:
        found = {}
        for name in queues:
            found[name] = _learn(connection, lambda ch, n=name, **kw: _queue(ch, n, **kw))
        for name in exchanges:
            found[name] = _learn(connection, lambda ch, n=name, **kw: _exchange(ch, n, **kw))
        return found
    finally:
        connection.release()


def _queue(channel: Any, name: str, *, passive: bool, durable: bool, quorum: bool) -> None:
    arguments = {"x-queue-type": "quorum"} if quorum else {}
    channel.queue_declare(
        name, passive=passive, durable=durable, auto_delete=False, arguments=arguments
    )


def _exchange(channel: Any, name: str, *, passive: bool, durable: bool, quorum: bool) -> None:
    channel.exchange_declare(name, "topic", passive=passive, durable=durable, auto_delete=False)


def _learn(connection: kombu.Connection, declare: Callable[..., None]) -> Declared:
    """Passive first; then oslo.messaging's arguments, corrected by each refusal."""
    try:
        _on_new_channel(connection, declare, passive=True, durable=False, quorum=False)
    except amqp.exceptions.NotFound:
        return Declared(exists=False)
    except amqp.exceptions.AccessRefused as error:
        return Declared(exists=False, unknown=f"not allowed to look ({error})")
    durable = quorum = False
    for _ in range(3):
        try:
            _on_new_channel(connection, declare, passive=False, durable=durable, quorum=quorum)
            return Declared(exists=True, durable=durable, quorum=quorum)
        except amqp.exceptions.PreconditionFailed as error:
            found = _INEQUIVALENT.search(str(error))
            arg = found["arg"] if found else ""
            if arg == "durable":
                durable = found is not None and found["current"] == "true"
            elif arg == "x-queue-type" and found is not None and found["current"] == "quorum":
                durable = quorum = True
            else:
                return Declared(exists=True, unknown=f"declared otherwise ({error})")
        except amqp.exceptions.AccessRefused as error:
            return Declared(exists=True, unknown=f"not allowed to declare it ({error})")
    return Declared(exists=True, unknown="its arguments could not be matched")


def _on_new_channel(connection: kombu.Connection, declare: Callable[..., None], **kw: bool) -> None:
    """A refused declaration closes its channel: each attempt gets a fresh one."""
    channel = connection.channel()
    try:
        declare(channel, **kw)
    finally:
        with contextlib.suppress(Exception):  # already closed by the broker's refusal
            channel.close()
