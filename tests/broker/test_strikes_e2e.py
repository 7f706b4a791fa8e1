"""A K2HR3 that limits its rate, and one that is down longer than the retry budget,
through the real daemon on the real RabbitMQ (issue 17, item 3).

Neither says anything about a deletion: nothing may end up waiting for a human. A
rate-limited K2HR3 gets every deletion, paced by its ``Retry-After``; what an outage
parked goes back out by itself once K2HR3 answers again.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete, nova_legacy_delete, nova_versioned_delete
from support.waiting import wait_until

from k2hr3_osnl.core.parking import ParkingLot

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(240)]


def new_cuk() -> str:
    return str(uuid.uuid4())


def publish(e2e: Harness, count: int) -> Counter[tuple[str, tuple[str, ...] | None]]:
    """``count`` deletions of the three kinds, as neutron and nova send them."""
    expected: Counter[tuple[str, tuple[str, ...] | None]] = Counter()
    for i in range(count):
        cuk = new_cuk()
        if i % 3 == 0:
            ips = (f"10.0.{i // 250}.{i % 250 + 1}",)
            e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(cuk, ips))
            expected[(cuk, ips)] += 1
        elif i % 3 == 1:
            e2e.notify(e2e.nova, e2e.notifications, "messagingv2", nova_legacy_delete(cuk))
            expected[(cuk, None)] += 1
        else:
            e2e.notify(e2e.nova, e2e.versioned, "messagingv2", nova_versioned_delete(cuk))
            expected[(cuk, None)] += 1
    return expected


def test_a_k2hr3_taking_2_requests_a_second_gets_all_60_and_nothing_is_parked(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """The stand-in accepts 2 requests a second and answers 429 with Retry-After beyond.
    Such answers describe K2HR3, not a cuk: every deletion arrives, none is parked."""
    k2hr3.rate = 2
    daemon = e2e.start()
    expected = publish(e2e, 60)
    assert k2hr3.wait_for(60, timeout=180), daemon.report(
        f"K2HR3 got {len(k2hr3.deleted())} of 60; parked {ParkingLot(e2e.state_dir).count()}"
    )
    assert Counter(k2hr3.deleted()) == expected
    assert ParkingLot(e2e.state_dir).count() == 0, daemon.report("parked")
    assert "parked in" not in daemon.log()
    limited = sum(1 for call in k2hr3.calls if call.status == 429)
    assert limited > 0, "the stand-in never limited: the test proves nothing"
    # Once told to slow down, the daemon keeps to the rate K2HR3 takes.
    assert k2hr3.requests <= 60 + 2 * 60, k2hr3.requests
    assert daemon.stop() == 0
    # A K2HR3 that limits the rate works: `journalctl -p warning` shows no outage.
    said = [line for line in daemon.log().splitlines() if " WARNING " in line]
    assert not [line for line in said if "K2HR3 failing" in line], daemon.report("an outage")


def test_an_outage_longer_than_the_budget_parks_as_outage_and_resends_by_itself(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """K2HR3 refuses connections for longer than the retry budget (2 s here): the
    deletions are parked with the cause "outage", and go out by themselves once K2HR3
    is back, their files removed, without anyone running replay."""
    daemon = e2e.start(sections={"k2hr3": {"retry_budget_seconds": 2}})
    k2hr3.stop()
    expected = publish(e2e, 6)
    lot = ParkingLot(e2e.state_dir)
    wait_until(lambda: lot.count() == 6, 60, "six parked deletions")
    assert {item.cause for item in lot} == {"outage"}
    for item in lot:
        assert item.path is not None
        assert json.loads(item.path.read_text())["cause"] == "outage"
    k2hr3.start()
    assert k2hr3.wait_for(6, timeout=120), daemon.report("not re-sent after K2HR3 came back")
    assert Counter(k2hr3.deleted()) == expected
    wait_until(lambda: lot.count() == 0, 30, "the parked files removed")
    log = daemon.log()
    assert "K2HR3 works again: re-sending" in log or log.count("delivered (deleted)") == 6
    assert daemon.stop() == 0


def test_a_dry_run_daemon_never_resends_a_live_daemons_parked_files(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """A dry run beside a live daemon shares its state_dir: it counts the parked files,
    says once that it will not send them, and leaves them (its client would "deliver"
    them without sending, and remove them)."""
    live = e2e.start(sections={"k2hr3": {"retry_budget_seconds": 1}})
    k2hr3.stop()
    publish(e2e, 1)
    lot = ParkingLot(e2e.state_dir)
    wait_until(lambda: lot.count() == 1, 60, "one parked deletion")
    assert live.stop() == 0
    k2hr3.start()
    config = e2e.config("dry", sections={"k2hr3": {"dry_run": "true"}})
    dry = e2e.daemon(config, queues=[f"{e2e.pool}-dry-run"]).start()
    wait_until(lambda: "dry run: never re-sent" in dry.log(), 60, "the dry run's line")
    assert lot.count() == 1 and k2hr3.requests == 0
    assert dry.stop() == 0
