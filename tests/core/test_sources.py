"""Each OpenStack source is described once (``core/events.py``); the rest follows from it.

The default configuration must let every source the bus carries reach the endpoint: its
event types through the ``event_type`` and ``publisher_id`` filters, its exchange and
topic among those the listener binds. A source added to :data:`SOURCES` is admitted by
default without anyone editing a regular expression. Internal sources are never admitted
from the bus (``test_events.py`` holds the refusal itself).
"""

from __future__ import annotations

import oslo_messaging
import pytest
from support.samples import SAMPLES

from k2hr3_osnl import config
from k2hr3_osnl.commands import formats, mosk, publish
from k2hr3_osnl.core import events
from k2hr3_osnl.core.events import FROM_THE_BUS, SOURCES

ON_THE_BUS = [(source, event) for source in FROM_THE_BUS for event in source.event_types]


def _default_filter() -> tuple[oslo_messaging.NotificationFilter, list[str], list[str]]:
    """The filter, exchanges and topics of a configuration that sets none of them."""
    conf = config.new_conf()
    conf([], project="k2hr3_osnl", default_config_files=[], default_config_dirs=[])
    notifications = conf.oslo_messaging_notifications
    screen = oslo_messaging.NotificationFilter(
        event_type=notifications.event_type, publisher_id=notifications.publisher_id
    )
    return screen, list(notifications.exchange), list(notifications.topic)


@pytest.mark.parametrize(("source", "event_type"), ON_THE_BUS)
def test_the_defaults_admit_every_source_the_bus_carries(source: type, event_type: str) -> None:
    screen, exchanges, topics = _default_filter()
    route = source.route
    assert route is not None, f"{source.__name__} comes from the bus but has no route"
    assert screen.match({}, route.publisher_id, event_type, {}, {})
    assert route.exchange in exchanges
    assert route.topic in topics


@pytest.mark.parametrize("source", [s for s in SOURCES if s.internal])
def test_an_internal_source_has_no_route_and_is_not_in_the_default_filter(source: type) -> None:
    screen, _, _ = _default_filter()
    assert source.route is None
    for event_type in source.event_types:
        assert not screen.match({}, "compute.host", event_type, {}, {})


def test_every_source_says_what_verification_looks_up() -> None:
    for source in SOURCES:
        assert source.proves in (*events.PROOF_TARGETS, None)
    assert {s.proves for s in FROM_THE_BUS} == set(events.PROOF_TARGETS)


DELETION_SAMPLES = sorted(
    str(path.relative_to(SAMPLES))
    for path in SAMPLES.rglob("*.json")
    if any(
        isinstance(doc, dict) and doc.get("event_type") in events.DELETION_EVENT_TYPES
        for doc in formats.documents(path.read_text(encoding="utf-8"))
    )
)


@pytest.mark.parametrize("name", DELETION_SAMPLES)
def test_publish_sends_each_real_deletion_where_the_daemon_listens_by_default(name: str) -> None:
    """``publish`` and the defaults read the same description: a real deletion goes to
    an exchange and topic the listener binds, with a publisher_id the filter admits."""
    screen, exchanges, topics = _default_filter()
    for document in formats.documents((SAMPLES / name).read_text(encoding="utf-8")):
        note = formats.notification(document)
        if note.event_type not in events.DELETION_EVENT_TYPES:
            continue
        exchange, topic, publisher = publish._route(str(note.event_type))
        assert exchange in exchanges and topic in topics
        sent_as = str(note.publisher_id or publisher)
        assert screen.match({}, sent_as, note.event_type, {}, {}), sent_as


def test_mosk_config_surveys_the_exchanges_the_listener_binds() -> None:
    _, exchanges, _ = _default_filter()
    assert list(mosk.EXCHANGES) == exchanges
