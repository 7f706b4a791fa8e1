"""The exposure window an operator sees (issue 21): from a deletion to K2HR3's 2xx.

The histogram ``k2hr3_osnl_deletion_exposure_seconds`` starts the window at the
notification's own timestamp (a publisher's clock ahead of ours counts as 0, never as
a negative delay) and, labelled ``source="reconciliation"``, at the server's
``OS-SRV-USG:terminated_at`` for the deletions reconciliation found.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid

import pytest
from support import paths
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete
from test_metrics import free_port, scrape, value

from k2hr3_osnl.core import events, reconciliation
from k2hr3_osnl.core.answers import Answer, Outcome
from k2hr3_osnl.core.types import Notification
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.observability.metrics import Metrics

SAMPLES = paths.TESTS / "samples"
EXPOSURE = "k2hr3_osnl_deletion_exposure_seconds"


def oslo_time(when: float) -> str:
    """A timestamp as oslo.messaging's Notifier writes it: UTC, no zone, a space."""
    return str(datetime.datetime.fromtimestamp(when, datetime.UTC).replace(tzinfo=None))


def wire_body(cuk: str, timestamp: str) -> bytes:
    """A messagingv2 body, as neutron sends it, with its timestamp as given."""
    event_type, publisher_id, payload = neutron_port_delete(cuk, ["10.0.0.7"])
    message = {
        "message_id": str(uuid.uuid4()),
        "publisher_id": publisher_id,
        "event_type": event_type,
        "priority": "INFO",
        "payload": payload,
        "timestamp": timestamp,
    }
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()


@pytest.mark.rabbitmq
@pytest.mark.timeout(120)
def test_the_daemon_measures_each_deletion_from_its_own_timestamp(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections={"metrics": {"port": port}})).start()
    now = time.time()
    late, skewed, fresh = (str(uuid.uuid4()) for _ in range(3))
    e2e.broker.publish_raw(
        e2e.neutron,
        f"{e2e.notifications}.info",
        [
            wire_body(late, oslo_time(now - 90)),  # 90 s on its way
            wire_body(skewed, oslo_time(now + 3600)),  # a publisher clock an hour ahead
        ],
    )
    e2e.notify(
        e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(fresh, ["10.0.0.8"])
    )
    assert k2hr3.wait_for(3, timeout=30), daemon.report("three deletions expected")

    samples = scrape(port)
    bucket = f"{EXPOSURE}_bucket"
    count = value(samples, f"{EXPOSURE}_count", source="notification")
    assert count == 3, daemon.report(f"exposure count {count}")
    # The skewed one counts as 0, not as -3600 s; the late one as 90 s.
    assert value(samples, bucket, source="notification", le="0.01") >= 1
    assert value(samples, bucket, source="notification", le="60.0") == 2
    assert value(samples, bucket, source="notification", le="120.0") == 3
    assert 90 <= value(samples, f"{EXPOSURE}_sum", source="notification") < 150
    assert value(samples, f"{EXPOSURE}_count", source="reconciliation") == 0
    assert daemon.stop() == 0


def test_a_reconciled_server_is_measured_from_terminated_at_and_labelled_apart() -> None:
    sample = json.loads((SAMPLES / "nova_versioned/source/instance-delete-end.json").read_text())
    terminated = sample["payload"]["nova_object.data"]["terminated_at"]
    server = {"id": str(uuid.uuid4()), "status": "DELETED", "OS-SRV-USG:terminated_at": terminated}
    (found,) = reconciliation.deletions([server])
    assert found.terminated_at == events.utc_time(terminated)

    metrics = Metrics(Health())
    message_id, event_type, publisher_id, payload = reconciliation.notification(found)
    note = Notification(message_id, event_type, publisher_id, payload, happened=time.time() - 700)
    metrics.answered(note, Answer(Outcome.DELETED, 204, "", 0.004), 1)
    text = metrics.registry.get_sample_value
    assert text(f"{EXPOSURE}_count", {"source": "reconciliation"}) == 1
    assert text(f"{EXPOSURE}_bucket", {"source": "reconciliation", "le": "600.0"}) == 0
    assert text(f"{EXPOSURE}_bucket", {"source": "reconciliation", "le": "1800.0"}) == 1
    assert text(f"{EXPOSURE}_count", {"source": "notification"}) == 0


def test_only_an_answer_from_k2hr3_closes_the_window() -> None:
    metrics = Metrics(Health())
    note = Notification("m", "port.delete.end", "network.n1", {}, happened=time.time() - 5)
    metrics.answered(note, Answer(Outcome.DELETED, None, "dry run: not sent", 0.0), 1)
    metrics.answered(note, Answer(Outcome.RETRY, 503, "", 0.01), 1)
    metrics.answered(
        Notification("m", "port.delete.end", "n", {}), Answer(Outcome.DELETED, 204, "", 0.0), 1
    )
    assert metrics.registry.get_sample_value(f"{EXPOSURE}_count", {"source": "notification"}) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018-10-26 23:59:59.999999", 1540598399.999999),  # oslo.messaging's Notifier
        ("2012-10-29T13:42:11Z", 1351518131.0),  # Nova's terminated_at
        ("2012-10-29T13:42:11.000000", 1351518131.0),
        ("2012-10-29T22:42:11+09:00", 1351518131.0),
    ],
)
def test_openstack_timestamps_are_utc_unless_they_say(text: str, expected: float) -> None:
    assert events.utc_time(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", [None, "", "yesterday", "2014-05-0909: 19: 58.317548", 17])
def test_a_timestamp_that_is_none_costs_only_the_sample(text: object) -> None:
    assert events.utc_time(text) is None
