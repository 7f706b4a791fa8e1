"""The fleet's reconciler, decided without I/O: what the token says and when a pass is due.

Every daemon of a pool may reconcile, but only the one holding the pool's token runs
passes (:mod:`k2hr3_osnl.rabbit.election` holds it on RabbitMQ). The token is a small
message that carries what the next holder must know to go on where the last one
stopped:

- ``checkpoint``: where the fleet's last *finished* pass ended (None: no pass yet). Only
  a live holder moves it, after a pass that settled everything it found;
- ``passed_at``: when the last pass ended, finished or not, so a new holder does not
  start a pass the old one has just made (one pass per interval across the fleet);
- ``holder``: who wrote it last, for the operator.

Two tokens can exist for a moment (a holder cut off between publishing the new token
and acknowledging the old one; two daemons minting at once). Whoever holds one removes
the others and keeps what both say: the later checkpoint, since each was written only
after a finished pass.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Protocol

#: What a token's body says it is; anything else in the queue is a probe or foreign.
KIND = "k2hr3-osnl-reconcile-token"
PROBE = "k2hr3-osnl-reconcile-probe"


@dataclass(frozen=True, slots=True)
class Token:
    checkpoint: float | None = None
    passed_at: float | None = None
    holder: str = ""

    def encode(self) -> bytes:
        return json.dumps(
            {
                "kind": KIND,
                "checkpoint": self.checkpoint,
                "passed_at": self.passed_at,
                "holder": self.holder,
            }
        ).encode()

    def merged(self, other: Token) -> Token:
        """One token from two: the later of each time (None knows nothing)."""
        return Token(
            _later(self.checkpoint, other.checkpoint),
            _later(self.passed_at, other.passed_at),
            self.holder,
        )

    def after_pass(self, ended: float, checkpoint: float | None, holder: str) -> Token:
        """The token once ``holder``'s pass ended at ``ended``; ``checkpoint`` is where
        it leaves the fleet (None: it did not finish, the checkpoint stays)."""
        return Token(_later(self.checkpoint, checkpoint), ended, holder)


def decode(body: bytes | str) -> Token | str | None:
    """A token, the candidate id of a probe, or None for anything else (never raises)."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("kind") == PROBE and isinstance(data.get("from"), str):
        return str(data["from"])
    if data.get("kind") != KIND:
        return None
    holder = str(data.get("holder", ""))
    return Token(_time(data.get("checkpoint")), _time(data.get("passed_at")), holder)


def probe(candidate: str) -> bytes:
    return json.dumps({"kind": PROBE, "from": candidate}).encode()


def due(token: Token, now: float, interval: float) -> bool:
    """Whether the holder of ``token`` may start a pass at ``now``.

    A ``passed_at`` more than an interval in the future is a clock that was wrong; it
    must not stop the fleet from reconciling, so it counts as due.
    """
    if token.passed_at is None:
        return True
    elapsed = now - token.passed_at
    return elapsed >= interval or elapsed < -interval


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _later(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


class Leadership(Protocol):
    """What a reconciler asks the fleet (``k2hr3_osnl.rabbit.election.Election``)."""

    def start(self) -> object:
        """Become a candidate (when the reconciler starts)."""
        ...

    def stop(self, timeout: float = 5) -> None:
        """Leave the election: a held token goes to another candidate at once."""
        ...

    def may_run(self, interval: float) -> bool:
        """Whether this process holds the token and a pass is due."""
        ...

    def leading(self) -> bool:
        """Whether it still holds the token: a pass that lost it stops sending."""
        ...

    def checkpoint(self) -> float | None:
        """Where the fleet's last finished pass ended (None: none yet)."""
        ...

    def ended(self, checkpoint: float | None) -> bool:
        """The pass ended, moving the fleet's checkpoint to ``checkpoint`` (None: it did
        not finish). False if the token was lost meanwhile (nothing moved)."""
        ...
