"""Nothing is acknowledged unless delivered, parked or judged unusable: on the real broker.

Each test here is a way the daemon once lost deletions without a word: a batch
acknowledged because parking one of its messages raised, a replay preview that emptied
the spool, and a dry-run daemon that took deletions away from the live one.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from support.broker import queue_counts
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import neutron_port_delete, wire_body
from support.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

#: kombu's JSON decoder turns this into ``bytes``, which JSON cannot write back.
KOMBU_BYTES = {"__type__": "bytes", "__value__": "eA=="}


def parked(e2e: Harness) -> list[dict[str, object]]:
    files = sorted((e2e.state_dir / "parked").glob("*.json"))
    return [json.loads(path.read_text(encoding="utf-8")) for path in files]


def port_deletions_v1(count: int, poisoned: int) -> tuple[list[str], list[bytes]]:
    """``count`` flat (``messaging`` driver) port deletions; number ``poisoned`` carries
    a payload field that becomes bytes on the consumer's side."""
    cuks = [str(uuid.uuid4()) for _ in range(count)]
    bodies = []
    for index, cuk in enumerate(cuks):
        event_type, publisher_id, payload = neutron_port_delete(cuk, [f"10.9.0.{index + 1}"])
        if index == poisoned:
            payload["blob"] = KOMBU_BYTES
        bodies.append(wire_body(event_type, publisher_id, payload, v2=False))
    return cuks, bodies


def test_a_message_that_json_cannot_park_loses_none_of_its_batch(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """K2HR3 answers 400; six port deletions wait in the queue, one of them carrying a
    field that kombu decodes to bytes. All six are parked (the odd one with its payload
    as text, its cuk and IP beside it), and replay delivers all six."""
    daemon = e2e.start()
    assert daemon.stop() == 0  # the pool queue exists; the six wait for one batch
    cuks, bodies = port_deletions_v1(6, poisoned=2)
    e2e.broker.publish_raw(e2e.neutron, f"{e2e.notifications}.info", bodies)
    k2hr3.status = 400
    daemon.start()
    wait_until(lambda: len(parked(e2e)) == 6, 30, "six parked files")
    wait_until(lambda: queue_counts(e2e.pool) == (0, 0, 1), 30, "the queue drained")
    files = parked(e2e)
    assert sorted(str(item["cuk"]) for item in files) == sorted(cuks)
    (odd,) = [item for item in files if item["cuk"] == cuks[2]]
    assert odd["ips"] == ["10.9.0.3"]
    # kombu >= 5.3 decodes the marker to bytes, kept as their text; 5.2 leaves it as is.
    assert odd["payload"]["blob"] in ("b'eA=='", KOMBU_BYTES)  # type: ignore[index]
    assert daemon.stop() == 0

    k2hr3.status = 204
    replayed = e2e.cli(daemon.config, "replay", "--parked")
    assert replayed.returncode == 0, replayed
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == sorted(cuks)
    assert parked(e2e) == []


def test_replay_under_a_dry_run_configuration_keeps_the_spool(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """Previewing a replay must not destroy what it previews."""
    daemon = e2e.start()
    k2hr3.status = 400
    cuk = str(uuid.uuid4())
    e2e.notify(
        e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(cuk, ["10.9.1.1"])
    )
    wait_until(lambda: len(parked(e2e)) == 1, 20, "a parked file")
    assert daemon.stop() == 0
    k2hr3.status = 204
    requests = k2hr3.requests

    preview = e2e.config("preview", sections={"k2hr3": {"dry_run": "true"}})
    shown = e2e.cli(preview, "replay", "--parked")
    assert shown.returncode == 0, shown
    assert cuk in shown.stdout and "would be sent (dry run)" in shown.stdout, shown.stdout
    assert "1 still parked" in shown.stdout, shown.stdout
    assert len(parked(e2e)) == 1
    assert k2hr3.requests == requests

    live = e2e.cli(daemon.config, "replay", "--parked")
    assert live.returncode == 0, live
    assert k2hr3.deleted() == [(cuk, ("10.9.1.1",))]
    assert parked(e2e) == []


def test_a_dry_run_daemon_beside_the_live_one_takes_nothing_from_it(
    e2e: Harness, k2hr3: FakeK2HR3, tmp_path: Path
) -> None:
    """The quick-start file has dry_run = true on the production pool. Started beside
    the live daemon, it sees a copy of every deletion on its own queue, and the live
    daemon still delivers all 50. Its queue goes away when it stops."""
    live = e2e.start()
    dry_config = e2e.config("dry", sections={"k2hr3": {"dry_run": "true"}})
    dry_queue = f"{e2e.pool}-dry-run"
    e2e.extra_queues.append(dry_queue)
    dry = e2e.daemon(dry_config, queues=[dry_queue]).start()
    assert f"consuming copies of the notifications on queue '{dry_queue}'" in dry.log()

    cuks = [str(uuid.uuid4()) for _ in range(50)]
    bodies = [
        wire_body(*neutron_port_delete(cuk, [f"10.9.2.{i % 250 + 1}"]))
        for i, cuk in enumerate(cuks)
    ]
    e2e.broker.publish_raw(e2e.neutron, f"{e2e.notifications}.info", bodies)

    assert k2hr3.wait_for(50, timeout=30), live.report("the live daemon missed deletions")
    wait_until(lambda: dry.count("dry run: not sent") >= 50, 30, "50 dry-run lines")
    assert sorted(cuk for cuk, _ in k2hr3.deleted()) == sorted(cuks)
    assert all(f"cuk={cuk}" in dry.log() for cuk in cuks)

    assert dry.stop() == 0
    assert f"dry run: deleted queue '{dry_queue}'" in dry.log()
    assert e2e.broker.queue_info(dry_queue) is None
    assert live.stop() == 0
