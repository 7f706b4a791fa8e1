"""Catch-up and reconciliation end to end: the real daemon, RabbitMQ, K2HR3 and OpenStack stand-ins.

The bus loses deletions (a queue that did not exist, a broker restart with transient
queues); Nova remembers them. These tests make the bus lose them on purpose and check
that the daemon still removes every deleted server from K2HR3, says it noticed, and
never touches a server that is only soft-deleted or still alive.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import PASSWORD, OpenStackStandIn
from support.samples import nova_versioned_delete
from support.scrape import free_port, metric
from support.waiting import wait_until

from k2hr3_osnl.reconcile.reconciler import CHECKPOINT_FILE

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]

VERSIONED = "messagingv2"


def sections(standin: OpenStackStandIn, port: int, **reconcile: object) -> dict[str, Any]:
    return {
        "reconcile": {"enabled": "true", "interval_seconds": 5, **reconcile},
        "service_credentials": standin.credentials(),
        "metrics": {"port": port},
    }


def healthz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return json.loads(error.read())


def cuks(k2hr3: FakeK2HR3) -> list[str]:
    return [cuk for cuk, _ in k2hr3.deleted()]


def test_deletions_made_while_the_daemon_was_down_reach_k2hr3_after_its_start(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    config = e2e.config(sections=sections(standin, port, interval_seconds=600))
    daemon = e2e.daemon(config).start()
    checkpoint = e2e.state_dir / CHECKPOINT_FILE
    wait_until(checkpoint.exists, 30, "the first pass's checkpoint")
    assert daemon.stop() == 0
    # The worst case: the daemon's queue is gone, so what nova publishes now is lost.
    e2e.broker.delete([e2e.pool])
    gone = [standin.create() for _ in range(5)]
    for server in gone:
        standin.delete(server)
        e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(server.id))
    soft, alive = standin.create(), standin.create()
    standin.delete(soft, soft=True)

    started = time.monotonic()
    daemon.start()
    wait_until(lambda: set(cuks(k2hr3)) >= {s.id for s in gone}, 30, "the catch-up")

    assert time.monotonic() - started < 30
    assert sorted(cuks(k2hr3)) == sorted(s.id for s in gone), daemon.report("calls")
    assert soft.id not in cuks(k2hr3) and alive.id not in cuks(k2hr3)
    assert metric(port, "k2hr3_osnl_reconcile_missed_total") == 5
    assert daemon.log().count("no notification deleted it") == 5
    assert daemon.stop() == 0


def test_a_deletion_published_to_nowhere_is_caught_at_the_next_interval_and_counted(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    wait_until(lambda: (e2e.state_dir / CHECKPOINT_FILE).exists(), 30, "the first pass")
    told, lost, soft = standin.create(), standin.create(), standin.create()
    standin.delete(told)
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(told.id))
    wait_until(lambda: told.id in cuks(k2hr3), 10, "the notified deletion")

    nowhere = f"{e2e.unique}_nowhere"
    try:
        standin.delete(lost)
        standin.delete(soft, soft=True)
        e2e.notify(nowhere, e2e.versioned, VERSIONED, nova_versioned_delete(lost.id))
        wait_until(lambda: lost.id in cuks(k2hr3), 20, "the next interval to catch it")
    finally:
        e2e.broker.delete(exchanges=[nowhere])

    assert metric(port, "k2hr3_osnl_reconcile_missed_total") == 1
    # The notified one was found too, and cost no second call.
    wait_until(
        lambda: metric(port, "k2hr3_osnl_reconcile_passes_total", outcome="ok") >= 3,
        20,
        "another pass",
    )
    assert cuks(k2hr3).count(told.id) == 1 and cuks(k2hr3).count(lost.id) == 1
    assert soft.id not in cuks(k2hr3)
    assert metric(port, "k2hr3_osnl_reconcile_missed_total") == 1
    assert metric(port, "k2hr3_osnl_reconcile_last_success_timestamp_seconds") > time.time() - 30
    assert daemon.stop() == 0


def test_nova_down_while_notifications_still_land(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    standin.fail_with = 503
    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    notify = daemon.notify
    assert notify is not None  # the harness plays systemd's notify socket
    servers = [standin.create() for _ in range(3)]
    for server in servers:
        standin.delete(server)
        e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(server.id))
    wait_until(lambda: len(cuks(k2hr3)) == 3, 15, "the notifications")

    wait_until(
        lambda: metric(port, "k2hr3_osnl_reconcile_passes_total", outcome="failed") >= 2,
        30,
        "two failed passes",
    )
    health = healthz(port)
    assert health["status"] == "ok", health  # consuming: a failing Nova is no reason to restart
    assert "reconciliation failing since" in health["reason"], health
    assert health["reconcile"]["state"] == "failing"
    assert daemon.log().count("reconciliation failing:") == 1  # once per streak
    assert not (e2e.state_dir / CHECKPOINT_FILE).exists()
    # systemd hears it too, while the watchdog keeps being fed.
    statuses = [m.fields.get("STATUS", "") for m in notify.snapshot()]
    assert any("; reconciliation failing since" in text for text in statuses), statuses

    standin.fail_with = None
    wait_until(lambda: healthz(port)["reconcile"]["state"] == "ok", 20, "reconciliation to work")
    assert "reconciliation works again" in daemon.log()
    assert (e2e.state_dir / CHECKPOINT_FILE).exists()
    assert sorted(cuks(k2hr3)) == sorted(s.id for s in servers)  # nothing twice
    assert daemon.stop() == 0


def test_a_forged_instance_delete_for_an_active_server_sends_nothing_with_verify_on(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    config = e2e.config(sections=sections(standin, port, enabled="false", verify_deletions="true"))
    daemon = e2e.daemon(config).start()
    alive, gone = standin.create(), standin.create()
    standin.delete(gone)
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(alive.id))
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(gone.id))
    wait_until(lambda: gone.id in cuks(k2hr3), 15, "the real deletion")
    wait_until(lambda: f"still has server {alive.id}" in daemon.log(), 10, "the refusal")
    assert cuks(k2hr3) == [gone.id]
    assert metric(port, "k2hr3_osnl_verifications_total", target="server", outcome="exists") == 1
    assert daemon.stop() == 0


def test_with_two_workers_both_are_candidates_one_pass_runs_and_no_password_is_logged(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    config = e2e.config(
        sections={
            **sections(standin, port, interval_seconds=600),
            # keystoneauth1's own debug lines too: the password must not be in any of them.
            "DEFAULT": {"workers": 2, "libs_debug_level": "debug"},
        }
    )
    daemon = e2e.daemon(config).start()
    wait_until(lambda: e2e.broker.queue_info(e2e.pool)[1] == 2, 30, "two consumers")
    wait_until(lambda: (e2e.state_dir / CHECKPOINT_FILE).exists(), 30, "the first pass")
    time.sleep(4)  # the other worker, had it reconciled, would have by now
    # Each worker is a candidate for the pool's token, like a node; one holds it.
    assert daemon.log().count("reconciling with Nova every") == 2, daemon.report("workers")
    assert daemon.log().count("reconciles for the pool now") == 1, daemon.report("workers")
    assert standin.count("/compute/v2.1/servers/detail") == 1
    assert daemon.stop() == 0
    everything = daemon.log(since_start=False) + daemon.output.read_text()
    assert "keystoneauth" in everything  # the libraries did log at debug
    assert PASSWORD not in everything


def test_a_dry_run_daemon_never_moves_the_checkpoint_the_live_one_reads(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    # The documented go-live path: install in dry run, then dry_run = false and restart.
    gone = standin.create()
    standin.delete(gone, when=time.time() - 1000)
    dry_queue = f"{e2e.pool}-dry-run"
    e2e.extra_queues.append(dry_queue)
    port = free_port()
    dry_sections = sections(standin, port, interval_seconds=600)
    dry_sections["k2hr3"] = {"dry_run": "true"}
    dry = e2e.daemon(e2e.config("dry", sections=dry_sections), queues=[dry_queue]).start()
    wait_until(
        lambda: metric(port, "k2hr3_osnl_reconcile_passes_total", outcome="ok") >= 1,
        30,
        "the dry run's first pass",
    )
    assert "dry run: not sent" in dry.log()
    assert dry.stop() == 0
    assert k2hr3.calls == []

    live = e2e.daemon(e2e.config("live", sections=sections(standin, free_port()))).start()
    wait_until(lambda: gone.id in cuks(k2hr3), 30, "the live daemon's catch-up")
    assert cuks(k2hr3) == [gone.id]
    assert live.stop() == 0


def test_a_checkpoint_a_year_ahead_hides_nothing_from_the_daemon(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    # The node booted once with its clock a year ahead, before NTP set it right.
    e2e.state_dir.mkdir(parents=True, exist_ok=True)
    ahead = time.time() + 365 * 86400
    (e2e.state_dir / CHECKPOINT_FILE).write_text(json.dumps({"checkpoint_unix": ahead}))
    gone = standin.create()
    standin.delete(gone, when=standin.now() - 400)
    port = free_port()

    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    wait_until(lambda: gone.id in cuks(k2hr3), 30, "the deletion of 400 s ago")
    wait_until(
        lambda: metric(port, "k2hr3_osnl_reconcile_passes_total", outcome="ok") >= 2,
        30,
        "a second pass",
    )

    assert cuks(k2hr3) == [gone.id]
    assert daemon.log().count("is later than Nova's clock") == 1
    saved = json.loads((e2e.state_dir / CHECKPOINT_FILE).read_text())["checkpoint_unix"]
    assert saved <= standin.now()
    assert daemon.stop() == 0


def test_the_first_pass_after_install_raises_no_bus_loss_alarm_and_a_down_cell_is_said(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    before = [standin.create() for _ in range(3)]
    for server in before:
        standin.delete(server, when=standin.now() - 3600)
    standin.cells["cell2"] = ["compute-21", "compute-22"]
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    wait_until(lambda: len(cuks(k2hr3)) == 3, 30, "the look-back of the first pass")
    wait_until(lambda: (e2e.state_dir / CHECKPOINT_FILE).exists(), 10, "the first checkpoint")
    assert metric(port, "k2hr3_osnl_reconcile_missed_total") == 0
    assert "no notification deleted it" not in daemon.log()

    hidden = standin.create(cell="cell2")
    standin.down_cells.add("cell2")
    standin.delete(hidden)
    wait_until(
        lambda: metric(port, "k2hr3_osnl_reconcile_unknown_compute_services") == 2,
        30,
        "a pass that sees the down cell",
    )
    standin.clock_offset += 1000  # the outage outlasts the overlap
    standin.down_cells.clear()
    wait_until(lambda: hidden.id in cuks(k2hr3), 30, "the hidden deletion")

    assert metric(port, "k2hr3_osnl_reconcile_missed_total") == 1
    assert daemon.log().count("as UNKNOWN: a cell is down") == 1
    assert "every Nova cell answers again" in daemon.log()
    assert daemon.stop() == 0
