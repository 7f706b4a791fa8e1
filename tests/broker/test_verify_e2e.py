"""verify_deletions as a forger on the bus and a pessimistic operator see it: the real daemon.

The real ``k2hr3-osnl`` on the real RabbitMQ, with local stand-ins that answer as K2HR3,
Keystone, Nova and Neutron do (403 for a narrow account included), and a Keystone that
accepts connections and never answers. A forged deletion is never obeyed; a deletion
that cannot be verified is sent or parked as configured, never lost.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn
from support.samples import neutron_port_delete, nova_versioned_delete
from support.scrape import free_port, metric
from support.waiting import wait_until

from k2hr3_osnl.core.parking import ParkingLot

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(180)]

VERSIONED = "messagingv2"


def sections(standin: OpenStackStandIn, port: int, **reconcile: object) -> dict[str, Any]:
    return {
        "reconcile": {"enabled": "false", "verify_deletions": "true", **reconcile},
        "service_credentials": standin.credentials(),
        "metrics": {"port": port},
    }


def cuks(k2hr3: FakeK2HR3) -> list[str]:
    return [cuk for cuk, _ in k2hr3.deleted()]


def port_note(device: str, ip: str, port_id: Any) -> tuple[str, str, dict[str, Any]]:
    """A real port.delete.end naming ``device`` and ``ip``; ``port_id`` ... = no id."""
    event_type, publisher_id, payload = neutron_port_delete(device, [ip])
    if port_id is ...:
        del payload["port"]["id"]
    else:
        payload["port"]["id"] = port_id
    return event_type, publisher_id, payload


def test_forged_port_deletions_of_a_live_vm_are_refused_in_all_three_variants(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    live = standin.create()
    standin.add_port(live, "10.0.0.5")
    forged = {
        "a random UUID": "0b5d3c3e-5b0a-4d53-9a3e-5c8f0f0d6a11",
        "missing": ...,
        "not a UUID": "port-of-nothing",
    }
    for port_id in forged.values():
        e2e.notify(
            e2e.neutron, e2e.notifications, VERSIONED, port_note(live.id, "10.0.0.5", port_id)
        )
    # A real one after them: when it is sent, the forged ones were judged.
    gone = standin.create()
    real_port = standin.add_port(gone, "10.0.0.9")
    standin.delete_port(real_port)
    e2e.notify(e2e.neutron, e2e.notifications, VERSIONED, port_note(gone.id, "10.0.0.9", real_port))
    wait_until(lambda: gone.id in cuks(k2hr3), 20, "the real port deletion")
    wait_until(lambda: daemon.log().count("invalid: ") >= 3, 10, "three refusals")

    assert cuks(k2hr3) == [gone.id], daemon.report("K2HR3 got a forged deletion")
    log = daemon.log()
    assert "Neutron still has 10.0.0.5 on device" in log
    assert "port deletion without payload.port.id cannot be verified" in log
    assert "payload.port.id 'port-of-nothing' is not a UUID" in log
    assert metric(port, "k2hr3_osnl_verifications_total", target="port", outcome="exists") == 1
    assert metric(port, "k2hr3_osnl_verifications_total", target="port", outcome="refused") == 2
    assert daemon.stop() == 0


def test_the_reconcilers_own_event_type_from_the_bus_is_refused_whatever_the_filter(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    # No verification, and a filter that admits everything: the worst case.
    daemon = e2e.start(sections={"oslo_messaging_notifications": {"event_type": ".*"}})
    live = "5f6f7a3e-0d7c-4d3b-8e51-64a4c1b0a001"
    forged = ("k2hr3_osnl.reconcile.server.deleted", "compute.forger", {"uuid": live})
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, forged)
    gone = "5f6f7a3e-0d7c-4d3b-8e51-64a4c1b0a002"
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(gone))
    wait_until(lambda: gone in cuks(k2hr3), 20, "the real deletion")
    wait_until(lambda: "is the daemon's own" in daemon.log(), 10, "the refusal")
    assert cuks(k2hr3) == [gone], daemon.report("K2HR3 got the forged deletion")
    assert daemon.stop() == 0


@pytest.mark.parametrize(
    "narrow", ["a member of one project", "Neutron's view", "with workers = 2"]
)
def test_an_account_that_cannot_see_every_project_refuses_to_start_with_one_line(
    e2e: Harness, standin: OpenStackStandIn, narrow: str
) -> None:
    conf = sections(standin, 0)
    if narrow == "with workers = 2":
        # Refused once by the supervisor, not by each worker again and again.
        conf["DEFAULT"] = {"workers": 2}
        conf["service_credentials"] = standin.credentials(project_name="demo")
    elif narrow == "a member of one project":
        # Nova answers 403 to all_tenants: every other project's server would be a 404.
        conf["service_credentials"] = standin.credentials(project_name="demo")
    else:
        # Nova sees another project's VM, Neutron shows none of its ports.
        standin.add_port(standin.create(project="demo"), "10.0.0.7")
        standin.neutron_sees_all = False
    config = e2e.config(sections=conf)
    daemon = e2e.daemon(config).start(wait=False)
    assert daemon.process is not None
    assert daemon.process.wait(60) == 2, daemon.report("not refused")
    refusals = [line for line in daemon.log().splitlines() if "not starting:" in line]
    assert len(refusals) == 1, daemon.report("one line")
    assert "verify_deletions = false" in refusals[0] and "every project" in refusals[0]
    assert "Traceback" not in daemon.log() + daemon.output.read_text()


def test_keystone_unreachable_at_start_does_not_stop_the_daemon(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    conf = sections(standin, 0)
    standin.stop()  # nothing listens there now
    daemon = e2e.daemon(e2e.config(sections=conf)).start()
    assert "cannot check at start that the account sees every project" in daemon.log()
    gone = "5f6f7a3e-0d7c-4d3b-8e51-64a4c1b0a003"
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(gone))
    # Unverified, as [reconcile] unverified = send (the default) says.
    wait_until(lambda: gone in cuks(k2hr3), 30, "the unverified deletion")
    assert daemon.stop() == 0


def test_a_403_during_the_run_parks_the_deletion_as_verification_unavailable(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    live = standin.create()
    standin.fail_with = 403  # the account lost its role: Nova says 403 to everything
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(live.id))
    parking = ParkingLot(e2e.state_dir)
    wait_until(lambda: parking.count() == 1, 20, "the parked deletion")
    (parked,) = list(parking)
    assert parked.reason.startswith("verification unavailable: Nova GET /servers/")
    assert parked.cuk == live.id
    assert k2hr3.calls == [], daemon.report("a deletion sent unverified on a 403")
    assert metric(port, "k2hr3_osnl_verifications_total", target="server", outcome="broken") == 1
    assert daemon.log().count("cannot verify deletions") == 1
    assert daemon.stop() == 0


@pytest.mark.parametrize("unverified", ["send", "park"])
def test_a_nova_that_fails_sends_or_parks_as_configured(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn, unverified: str
) -> None:
    port = free_port()
    config = e2e.config(sections=sections(standin, port, unverified=unverified))
    daemon = e2e.daemon(config).start()
    standin.fail_with = 503
    server = standin.create()
    standin.delete(server)
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(server.id))
    parking = ParkingLot(e2e.state_dir)
    if unverified == "send":
        wait_until(lambda: server.id in cuks(k2hr3), 20, "the unverified deletion")
        assert parking.count() == 0
    else:
        wait_until(lambda: parking.count() == 1, 20, "the parked deletion")
        assert next(iter(parking)).reason.startswith("verification unavailable: ")
        assert k2hr3.calls == []
    assert metric(port, "k2hr3_osnl_verifications_total", target="server", outcome="unknown") == 1
    assert daemon.stop() == 0


class HungKeystone:
    """Accepts every connection and never answers; counts them."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def test_a_keystone_that_never_answers_does_not_slow_the_daemon_to_a_crawl(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    hung = HungKeystone()
    try:
        credentials = standin.credentials(auth_url=f"http://127.0.0.1:{hung.port}/v3")
        conf = {**sections(standin, 0), "service_credentials": credentials}
        daemon = e2e.daemon(e2e.config(sections=conf)).start()
        servers = [f"5f6f7a3e-0d7c-4d3b-8e51-64a4c1b0b{n:03d}" for n in range(30)]
        for cuk in servers:
            e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(cuk))
        # One lookup at a time, each waiting out its timeout (5 s), would take 150 s.
        wait_until(lambda: set(cuks(k2hr3)) >= set(servers), 60, "every deletion")
        # The start check, then at most a few lookups in flight: never one per notification.
        # (Each lookup connects twice: version discovery, then the token.)
        assert len(hung.connections) <= 2 * (1 + 8), len(hung.connections)
        assert daemon.stop() == 0
    finally:
        hung.close()


def held_files(e2e: Harness) -> list[Path]:
    return sorted((e2e.state_dir / "recheck").glob("*.json"))


def age(path: Path, seconds: float, checks: int | None = None) -> None:
    """As if ``seconds`` had passed since the refusal (and ``checks`` were done)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data["first_seen"] -= seconds
    if checks is not None:
        data["attempts"] = checks
    tmp = path.with_suffix(".edit")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def test_a_refusal_is_checked_again_after_a_restart_and_sent_once_nova_shows_it_gone(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    daemon = e2e.daemon(e2e.config(sections=sections(standin, 0))).start()
    lagging = standin.create()  # Nova's replica still shows it when the notification lands
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(lagging.id))
    wait_until(lambda: len(held_files(e2e)) == 1, 20, "the refusal to be held")
    # The file is written before the line that says so: wait for the line too.
    wait_until(lambda: f"still has server {lagging.id}" in daemon.log(), 5, "its log line")
    assert daemon.stop() == 0

    standin.delete(lagging)
    (path,) = held_files(e2e)
    age(path, 61)  # a minute passed while the daemon was down
    daemon.start()
    wait_until(lambda: lagging.id in cuks(k2hr3), 30, "the re-checked deletion")
    wait_until(lambda: not held_files(e2e), 10, "the held file to go")
    assert cuks(k2hr3) == [lagging.id]
    assert daemon.stop() == 0


def test_a_refusal_still_there_at_the_last_check_is_dropped_counted_and_logged(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    daemon = e2e.daemon(e2e.config(sections=sections(standin, port))).start()
    live = standin.create()
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(live.id))
    wait_until(lambda: len(held_files(e2e)) == 1, 20, "the refusal to be held")
    (path,) = held_files(e2e)
    age(path, 301, checks=1)  # the 5-minute check is due: still there, held again
    wait_until(
        lambda: held_files(e2e) and json.loads(held_files(e2e)[0].read_text())["attempts"] == 2,
        30,
        "the second check",
    )
    (path,) = held_files(e2e)
    age(path, 600)  # now the 15-minute one, the last
    wait_until(lambda: not held_files(e2e), 30, "the last check")
    wait_until(lambda: "refused for good after 3 checks" in daemon.log(), 5, "its log line")
    assert k2hr3.calls == []
    assert metric(port, "k2hr3_osnl_verifications_total", target="server", outcome="dropped") == 1
    assert daemon.stop() == 0


def test_a_start_check_that_could_not_run_runs_later_and_a_narrow_view_then_parks(
    e2e: Harness, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    port = free_port()
    conf = sections(standin, port)
    where = standin.port
    standin.stop()  # OpenStack down while the daemon starts
    daemon = e2e.daemon(e2e.config(sections=conf)).start()
    assert "checking again later" in daemon.log()

    # Back, with a Neutron that shows this account only its own project's ports.
    standin.neutron_sees_all = False
    standin.add_port(standin.create(project="demo"), "10.0.0.7")
    standin.start(where)
    wait_until(lambda: "verification is broken until" in daemon.log(), 30, "the late check")
    server = standin.create()
    standin.delete(server)
    e2e.notify(e2e.nova, e2e.versioned, VERSIONED, nova_versioned_delete(server.id))
    parking = ParkingLot(e2e.state_dir)
    wait_until(lambda: parking.count() == 1, 20, "the parked deletion")
    assert next(iter(parking)).reason.startswith("verification unavailable: [reconcile]")
    assert k2hr3.calls == []
    assert metric(port, "k2hr3_osnl_verifications_total", target="server", outcome="broken") == 1
    assert daemon.stop() == 0
