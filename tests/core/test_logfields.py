"""core/logfields.py: the notification a log line is about travels down to the formatter.

The fields of a block are those of every enclosing block plus its own, the inner value
winning; they vanish when the block ends, even by an exception; and they belong to one
thread, so two workers settling two notifications never swap fields.
"""

from __future__ import annotations

import threading

import pytest

from k2hr3_osnl.core import logfields


def test_outside_any_block_there_are_no_fields() -> None:
    assert logfields.current() == {}


def test_a_block_carries_its_fields_and_drops_them_at_its_end() -> None:
    with logfields.fields(message_id="m-1", event_type="port.delete.end"):
        assert logfields.current() == {"message_id": "m-1", "event_type": "port.delete.end"}
    assert logfields.current() == {}


def test_an_inner_block_adds_to_the_outer_and_wins_where_they_overlap() -> None:
    with logfields.fields(message_id="m-1", cuk="outer"):
        with logfields.fields(cuk="inner"):
            assert logfields.current() == {"message_id": "m-1", "cuk": "inner"}
        assert logfields.current() == {"message_id": "m-1", "cuk": "outer"}


def test_an_exception_leaves_no_fields_behind() -> None:
    with pytest.raises(RuntimeError), logfields.fields(message_id="m-1"):
        raise RuntimeError("the handler failed")
    assert logfields.current() == {}


def test_each_thread_sees_only_its_own_fields() -> None:
    inside, seen = threading.Event(), {}

    def other() -> None:
        seen["before"] = dict(logfields.current())
        with logfields.fields(message_id="m-2"):
            inside.set()
            seen["inside"] = dict(logfields.current())

    with logfields.fields(message_id="m-1"):
        thread = threading.Thread(target=other)
        thread.start()
        inside.wait()
        thread.join()
        assert logfields.current() == {"message_id": "m-1"}
    assert seen == {"before": {}, "inside": {"message_id": "m-2"}}
