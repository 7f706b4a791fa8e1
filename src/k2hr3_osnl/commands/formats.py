"""Saved notifications, in every shape operators and the samples keep them.

``replay`` reads these; the daemon itself never does (oslo.messaging unwraps the wire).
Accepted shapes, each as a JSON document, a JSON list, or several concatenated objects:

- a wire body of the ``messaging`` driver: flat, with ``_context_*`` keys;
- a wire body of ``messagingv2``: ``{"oslo.version": "2.0", "oslo.message": "<json>"}``;
- what an endpoint receives: ``{ctxt, publisher_id, event_type, metadata, payload}``;
- bare ``{event_type, payload}`` (a nova documentation sample, for instance).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from k2hr3_osnl.core.types import Notification


class FormatError(ValueError):
    """Not a notification in any shape we know."""


def notification(document: Any) -> Notification:
    if not isinstance(document, dict):
        raise FormatError(f"expected a JSON object, got {type(document).__name__}")
    if "oslo.message" in document:
        inner = document["oslo.message"]
        try:
            document = json.loads(inner) if isinstance(inner, str) else None
        except ValueError as error:
            raise FormatError(f"oslo.message is not JSON: {error}") from None
        if not isinstance(document, dict):
            raise FormatError("oslo.message is not a JSON object string")
    if "event_type" not in document or "payload" not in document:
        raise FormatError("no event_type and payload")
    metadata = document.get("metadata")
    message_id = (
        metadata.get("message_id") if isinstance(metadata, dict) else document.get("message_id")
    )
    return Notification(
        message_id=message_id,
        event_type=document["event_type"],
        publisher_id=document.get("publisher_id"),
        payload=document["payload"],
    )


def documents(text: str) -> Iterator[Any]:
    """Every JSON value in ``text``: one, a list of them, or several back to back."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError as error:
            raise FormatError(f"not JSON: {error}") from None
        if isinstance(value, list):
            yield from value
        else:
            yield value
