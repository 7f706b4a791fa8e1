"""``k2hr3-osnl replay``: answer "why wasn't this VM removed?" and re-drive parked work.

Saved notifications go through the same :func:`~k2hr3_osnl.core.events.decide` and the same
K2HR3 client as the daemon, one attempt each, and every decision is printed. With
``[reconcile] verify_deletions``, what would be sent is verified first, as the daemon
does: replay must not be the way around it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

from k2hr3_osnl.commands import formats
from k2hr3_osnl.core.answers import Outcome
from k2hr3_osnl.core.events import Delete, decide
from k2hr3_osnl.core.parking import Cause, Parked, ParkingLot, cause_of
from k2hr3_osnl.core.types import Notification
from k2hr3_osnl.core.verification import Verdict, Verifier
from k2hr3_osnl.k2hr3.client import RoleClient

#: What happens to a parked deletion of each cause unless someone runs replay.
_WHAT_NEXT = {
    Cause.OPERATOR: "waits for an operator",
    Cause.OUTAGE: "the daemon re-sends it once K2HR3 answers again",
    Cause.VERIFICATION: "the daemon re-sends it once verification works again",
    Cause.STRIKES: "the daemon re-sends it hourly for a day",
}


def _unverified(delete: Delete, verifier: Verifier | None) -> str | None:
    """Why not to send ``delete`` now (verification did not prove it), or None."""
    if verifier is None:
        return None
    (check,) = verifier.verify([delete])
    return None if check.verdict is Verdict.GONE else f"{check.verdict.value}: {check.detail}"


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as source:
        return source.read()


def describe(note: Notification) -> tuple[str, Delete | None]:
    decision = decide(note.event_type, note.payload)
    if isinstance(decision, Delete):
        host = list(decision.ips) if decision.ips else "all of its IPs"
        return f"delete cuk={decision.cuk} host={host}", decision
    kind = type(decision).__name__.lower()
    return f"{kind}: {decision.reason}", None


def replay_files(
    paths: Iterable[str],
    client: RoleClient | None,
    out: TextIO,
    verifier: Verifier | None = None,
) -> int:
    """Print each notification's decision; call K2HR3 unless ``client`` is None."""
    failed = 0
    for path in paths:
        try:
            items = list(formats.documents(_read(path)))
        except (OSError, UnicodeDecodeError, formats.FormatError) as error:
            print(f"{path}: cannot read: {error}", file=out)
            failed += 1
            continue
        for index, document in enumerate(items):
            where = path if len(items) == 1 else f"{path}[{index}]"
            try:
                note = formats.notification(document)
            except formats.FormatError as error:
                print(f"{where}: not a notification: {error}", file=out)
                failed += 1
                continue
            text, delete = describe(note)
            line = f"{where}: {note.event_type} message_id={note.message_id}: {text}"
            refusal = _unverified(delete, verifier) if delete and client else None
            if refusal is not None:
                line += f" -> not sent: {refusal}"
                failed += 1
            elif delete is not None and client is not None:
                answer = client.delete(delete.cuk, delete.ips)
                line += f" -> {answer.outcome.value} ({answer.status or answer.detail})"
                failed += answer.outcome is not Outcome.DELETED
            print(line, file=out)
    return 1 if failed else 0


def list_parked(parking: ParkingLot, out: TextIO) -> int:
    count = 0
    for item in parking:
        count += 1
        text, _ = _parked_deletion(item)
        parked = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item.parked_at))
        resent = f", re-sent {item.resends} time(s)" if item.resends else ""
        print(
            f"{item.path}: parked {parked} after {item.attempts} attempt(s): {item.reason}"
            f"\n    cause: {cause_of(item)} ({_WHAT_NEXT[cause_of(item)]}{resent})"
            f"\n    {item.event_type} message_id={item.message_id}: {text}",
            file=out,
        )
    print(f"{count} parked in {parking.directory}", file=out)
    return 0


def _parked_deletion(item: Parked) -> tuple[str, Delete | None]:
    """What a parked file asks for: the deletion kept with it, else decided again."""
    if item.cuk:
        # What the verification asks about comes with the decision of the payload.
        decided = decide(item.event_type, item.payload, internal=True)
        proof = decided.proof if isinstance(decided, Delete) else None
        delete = Delete(item.cuk, tuple(item.ips), proof)
        host = list(delete.ips) if delete.ips else "all of its IPs"
        return f"delete cuk={delete.cuk} host={host}", delete
    return describe(Notification(item.message_id, item.event_type, item.publisher_id, item.payload))


def replay_parked(
    parking: ParkingLot, client: RoleClient, out: TextIO, verifier: Verifier | None = None
) -> int:
    """One attempt each; a delivered (or now unusable) one leaves the parking lot.

    With a dry-run client nothing is sent and every file stays: it only shows what
    would be sent.
    """
    if client.dry_run:
        for item in parking:
            print(f"{item.path}: {_parked_deletion(item)[0]} -> would be sent (dry run)", file=out)
        print(
            f"dry run: nothing sent, {parking.count()} still parked in {parking.directory}",
            file=out,
        )
        return 0
    left = 0
    for item in parking:
        text, delete = _parked_deletion(item)
        line = f"{item.path}: {text}"
        if delete is None:
            parking.remove(item)
            line += " -> removed"
        elif (refusal := _unverified(delete, verifier)) is not None:
            left += 1
            line += f" -> still parked: {refusal}"
        else:
            answer = client.delete(delete.cuk, delete.ips)
            if answer.outcome is Outcome.DELETED:
                parking.remove(item)
                line += f" -> deleted ({answer.status or answer.detail})"
            else:
                left += 1
                line += (
                    f" -> still parked: {answer.outcome.value} ({answer.status or answer.detail})"
                )
        print(line, file=out)
    print(f"{left} still parked in {parking.directory}", file=out)
    return 1 if left else 0
