"""Reconciliation passes with the real handler, K2HR3 stand-in and OpenStack stand-in.

What a pass must do: deliver what Nova deleted and the bus did not, through the
notification path; cost no call for a cuk already deleted; move its checkpoint only
once everything it found is settled; and fail quietly, once per streak, when Keystone
or Nova cannot answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from support.daemon import with_broker
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn
from support.waiting import wait_until

from k2hr3_osnl import config
from k2hr3_osnl.core import reconciliation
from k2hr3_osnl.core.breaker import CircuitBreaker
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.observer import Observers
from k2hr3_osnl.core.parking import ParkingLot
from k2hr3_osnl.core.recent import RecentDeliveries
from k2hr3_osnl.core.types import Notification
from k2hr3_osnl.k2hr3.client import RoleClient
from k2hr3_osnl.observability.health import Health
from k2hr3_osnl.observability.metrics import Metrics
from k2hr3_osnl.openstack import session
from k2hr3_osnl.reconcile import wiring
from k2hr3_osnl.reconcile.reconciler import Reconciler

ABANDONED = "k2hr3_osnl_reconcile_abandoned_passes_total"


@dataclass
class World:
    standin: OpenStackStandIn
    k2hr3: FakeK2HR3
    handler: Handler
    reconciler: Reconciler
    metrics: Metrics
    health: Health
    state_dir: Path

    def metric(self, name: str) -> float:
        for line in generate_latest(self.metrics.registry).decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not exported")

    def metrics_now(self) -> list[tuple[str, float]]:
        """Every exported sample as (name{labels}, value)."""
        lines = generate_latest(self.metrics.registry).decode().splitlines()
        samples = [line.rsplit(" ", 1) for line in lines if not line.startswith("#")]
        return [(name, float(value)) for name, value in samples]

    def notify_instance_deleted(self, cuk: str) -> None:
        """What the notification path does with nova's instance.delete.end."""
        payload = {"nova_object.data": {"uuid": cuk}}
        note = Notification(f"msg-{cuk}", "instance.delete.end", "nova-compute:c1", payload)
        self.handler.handle_batch([note])


@pytest.fixture
def world(tmp_path: Path, k2hr3: FakeK2HR3) -> Iterator[World]:
    standin = OpenStackStandIn().start()
    state_dir = tmp_path / "state"
    lines = ["[service_credentials]"]
    lines += [f"{k} = {v}" for k, v in standin.credentials().items()]
    lines += ["[reconcile]", "enabled = true", "page_size = 3", "overlap_seconds = 60"]
    lines += ["[k2hr3]", f"state_dir = {state_dir}", f"api_url = {k2hr3.url}"]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("\n".join(lines) + "\n"), encoding="utf-8")
    conf = config.load([str(path)])
    assert config.problems(conf) == []
    breaker, parking = CircuitBreaker(max_interval=0.2), ParkingLot(state_dir)
    health = Health(breaker, parking)
    metrics = Metrics(health)
    fed = wiring.deliveries(conf, elect=False)  # this process alone
    handler = Handler(
        client=RoleClient(k2hr3.url),
        breaker=breaker,
        parking=parking,
        recent=RecentDeliveries(600),
        retry_budget=2,
        observer=Observers((health, metrics, *fed.observers)),
    )
    reconciler = wiring.make_reconciler(conf, session.connect(conf), handler, fed)
    yield World(standin, k2hr3, handler, reconciler, metrics, health, state_dir)
    handler.client.close()
    standin.stop()


def test_a_pass_deletes_what_nova_deleted_and_nothing_else(world: World) -> None:
    world.reconciler.run_pass()  # the daemon ran before: there is a checkpoint
    gone = [world.standin.create() for _ in range(7)]
    for server in gone:
        world.standin.delete(server)
    soft, alive = world.standin.create(), world.standin.create()
    world.standin.delete(soft, soft=True)

    report = world.reconciler.run_pass()

    assert report.ok and report.found == 7
    assert sorted(cuk for cuk, _ in world.k2hr3.deleted()) == sorted(s.id for s in gone)
    # By cuk alone: the whole instance is gone, so every IP of it goes.
    assert all(host is None for _, host in world.k2hr3.deleted())
    assert soft.id not in str(world.k2hr3.deleted()) and alive.id not in str(world.k2hr3.deleted())
    assert world.metric("k2hr3_osnl_reconcile_missed_total") == 7
    assert (
        world.metric(
            'k2hr3_osnl_notifications_total{event_type="k2hr3_osnl.reconcile.server.deleted",outcome="deleted"}'
        )
        == 7
    )


def test_a_cuk_a_notification_already_deleted_costs_no_second_call(world: World) -> None:
    world.reconciler.run_pass()
    told, lost = world.standin.create(), world.standin.create()
    world.standin.delete(told)
    world.standin.delete(lost)
    world.notify_instance_deleted(told.id)
    assert world.k2hr3.deleted() == [(told.id, None)]

    report = world.reconciler.run_pass()

    assert (report.found, report.already, report.sent) == (2, 1, 1)
    assert [cuk for cuk, _ in world.k2hr3.deleted()] == [told.id, lost.id]
    assert world.metric("k2hr3_osnl_reconcile_missed_total") == 1
    # The next pass finds both again in its overlap: no call, nothing missed.
    again = world.reconciler.run_pass()
    assert (again.found, again.already, again.sent) == (2, 2, 0)
    assert len(world.k2hr3.calls) == 2
    assert world.metric("k2hr3_osnl_reconcile_missed_total") == 1


def test_the_first_pass_after_install_delivers_its_look_back_without_calling_it_missed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    before = [world.standin.create() for _ in range(4)]
    for server in before:
        world.standin.delete(server, when=world.standin.now() - 3600)
    caplog.set_level(logging.INFO, logger="k2hr3_osnl.reconcile.reconciler")

    first = world.reconciler.run_pass()
    world.reconciler._judge(first, 600)

    assert sorted(cuk for cuk, _ in world.k2hr3.deleted()) == sorted(s.id for s in before)
    assert world.metric("k2hr3_osnl_reconcile_missed_total") == 0
    assert "no notification deleted it" not in caplog.text
    assert "none counted as missed (no checkpoint yet)" in caplog.text
    # From the checkpoint on, a deletion no notification made is a miss again.
    lost = world.standin.create()
    world.standin.delete(lost)
    world.reconciler.run_pass()
    assert world.metric("k2hr3_osnl_reconcile_missed_total") == 1


def test_the_checkpoint_moves_once_everything_is_delivered_or_parked(world: World) -> None:
    before = time.time()
    first = world.reconciler.run_pass()
    # Nova's Date header: whole seconds.
    assert first.checkpoint is not None and first.checkpoint >= before - 1
    assert world.reconciler.checkpoint.load() == first.checkpoint

    # K2HR3 says 400: parked, which settles it; the checkpoint moves on.
    world.k2hr3.status = 400
    world.standin.delete(world.standin.create())
    world.standin.clock_offset += 10  # time passes in Nova
    second = world.reconciler.run_pass()
    assert second.results == {"parked": 1}
    assert second.checkpoint is not None and second.checkpoint > first.checkpoint
    assert world.handler.parking.count() == 1


def test_the_checkpoint_stays_when_a_deletion_is_handed_back(world: World) -> None:
    world.reconciler.run_pass()
    kept = world.reconciler.checkpoint.load()
    world.k2hr3.status = 503
    world.standin.delete(world.standin.create())
    world.handler.breaker.stop()  # the daemon stops while K2HR3 fails

    report = world.reconciler.run_pass()

    assert report.results == {"requeued": 1} and not report.settled
    assert world.reconciler.checkpoint.load() == kept


def test_the_first_pass_looks_back_a_day_and_later_ones_from_the_checkpoint(world: World) -> None:
    old, older = world.standin.create(), world.standin.create()
    world.standin.delete(old, when=time.time() - 80_000)
    world.standin.delete(older, when=time.time() - 90_000)  # beyond initial_lookback
    world.reconciler.run_pass()
    assert [cuk for cuk, _ in world.k2hr3.deleted()] == [old.id]


def test_an_idle_pass_is_the_down_cell_probe_and_one_request_per_page(world: World) -> None:
    for _ in range(7):  # page_size 3: three pages
        world.standin.delete(world.standin.create())
    world.reconciler.run_pass()
    world.standin.requests.clear()
    world.reconciler.run_pass()
    assert world.standin.requests == [
        ("GET", "/compute/v2.1/os-services"),
        *[("GET", "/compute/v2.1/servers/detail")] * 3,
    ]


def test_nova_failing_is_logged_once_per_streak_and_keeps_the_checkpoint(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.health.listening()
    world.reconciler.run_pass()
    kept = world.reconciler.checkpoint.load()
    world.standin.fail_with = 503
    caplog.set_level(logging.DEBUG, logger="k2hr3_osnl.reconcile.reconciler")
    for _ in range(3):
        report = world.reconciler.run_pass()
        world.reconciler._judge(report, 600)
        assert report.error is not None and "status 503" in report.error
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "reconciliation failing" in warnings[0].getMessage()
    assert world.reconciler.checkpoint.load() == kept
    assert "reconciliation failing since" in world.health.status().to_json()["reason"]
    assert world.health.status().ok  # the listener is not the problem
    assert world.metric('k2hr3_osnl_reconcile_passes_total{outcome="failed"}') == 3
    assert world.metric("k2hr3_osnl_reconcile_failing_since_timestamp_seconds") > 0

    world.standin.fail_with = None
    world.reconciler._judge(world.reconciler.run_pass(), 600)
    assert world.health.reconcile_error() is None
    assert world.metric("k2hr3_osnl_reconcile_failing_since_timestamp_seconds") == 0
    assert world.metric("k2hr3_osnl_reconcile_last_success_timestamp_seconds") > 0
    assert any("works again" in r.getMessage() for r in caplog.records)


def test_keystone_down_is_a_failed_pass_not_a_crash(world: World) -> None:
    world.standin.stop()
    report = world.reconciler.run_pass()
    assert report.error is not None and not report.ok


def test_dry_run_prints_and_calls_nothing(world: World) -> None:
    server = world.standin.create()
    world.standin.delete(server)
    lines: list[str] = []
    report = world.reconciler.run_pass(dry_run=True, printer=lines.append)
    assert lines == [f"would delete cuk={server.id} (deleted in Nova)"]
    assert world.k2hr3.calls == [] and report.checkpoint is None
    assert world.reconciler.checkpoint.load() is None


def test_an_unreadable_checkpoint_is_a_first_start(world: World) -> None:
    world.state_dir.mkdir(parents=True, exist_ok=True)
    world.reconciler.checkpoint.path.write_text("{not json", encoding="utf-8")
    assert world.reconciler.checkpoint.load() is None
    assert world.reconciler.run_pass().ok
    assert world.reconciler.checkpoint.load() is not None


def test_a_stopped_reconciler_ends_its_pass_and_keeps_the_checkpoint(world: World) -> None:
    for _ in range(7):
        world.standin.delete(world.standin.create())
    world.k2hr3.status = 503  # the first deletion waits on a failing K2HR3...
    world.reconciler.start(interval=600, first_delay=0)
    assert wait_for_calls(world.k2hr3, 1)
    world.reconciler.stop()  # ...when the daemon stops
    world.handler.breaker.stop()
    assert world.reconciler.join(10)
    assert world.reconciler.checkpoint.load() is None
    assert world.handler.parking.count() == 0  # handed back, not parked


def wait_for_calls(k2hr3: FakeK2HR3, count: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if k2hr3.requests >= count:
            return True
        time.sleep(0.02)
    return False


def test_a_checkpoint_that_cannot_be_written_is_a_failed_pass_not_a_crash(world: World) -> None:
    world.standin.delete(world.standin.create())
    world.state_dir.mkdir(parents=True, exist_ok=True)
    world.reconciler.checkpoint.path.mkdir()  # a directory where the file should be
    report = world.reconciler.run_pass()
    assert report.error is not None and "cannot write" in report.error
    assert len(world.k2hr3.calls) == 1  # the deletion itself went out


YEAR = 365 * 86400


def write_checkpoint(world: World, text: str) -> None:
    world.state_dir.mkdir(parents=True, exist_ok=True)
    world.reconciler.checkpoint.path.write_text(
        '{"checkpoint_unix": ' + text + "}\n", encoding="utf-8"
    )


def test_a_checkpoint_a_year_ahead_does_not_hide_what_nova_deleted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # A boot before NTP once wrote the checkpoint with a clock a year ahead.
    write_checkpoint(world, repr(time.time() + YEAR))
    gone = world.standin.create()
    world.standin.delete(gone, when=world.standin.now() - 400)
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl.reconcile.reconciler")

    first = world.reconciler.run_pass()
    second = world.reconciler.run_pass()

    assert first.ok and second.ok
    assert world.k2hr3.deleted() == [(gone.id, None)]
    said = [r.getMessage() for r in caplog.records if "later than Nova's clock" in r.getMessage()]
    assert len(said) == 1, said
    saved = world.reconciler.checkpoint.load()
    assert saved is not None and saved <= world.standin.now()


def test_nova_s_clock_not_ours_decides_the_window_and_the_checkpoint(world: World) -> None:
    # Our clock a year ahead of Nova's (or Nova's a year behind: the same to us).
    world.standin.clock_offset = -YEAR
    world.reconciler.run_pass()
    saved = world.reconciler.checkpoint.load()
    assert saved is not None and abs(saved - world.standin.now()) < 5

    gone = world.standin.create()
    world.standin.delete(gone)
    report = world.reconciler.run_pass()

    assert report.ok and world.k2hr3.deleted() == [(gone.id, None)]


@pytest.mark.parametrize(
    "value", ["NaN", "-Infinity", "Infinity", "1e308", "-1", "0", "true", '"soon"', "[]"]
)
def test_a_checkpoint_that_is_no_time_is_one_line_and_a_first_start_s_look_back(
    world: World, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    write_checkpoint(world, value)
    gone = world.standin.create()
    world.standin.delete(gone, when=world.standin.now() - 400)
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl.reconcile.reconciler")

    report = world.reconciler.run_pass()
    again = world.reconciler.run_pass()

    assert report.ok and again.ok, (report, again)
    assert world.k2hr3.deleted() == [(gone.id, None)]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and str(world.reconciler.checkpoint.path) in lines[0], lines
    saved = world.reconciler.checkpoint.load()
    assert saved is not None and abs(saved - world.standin.now()) < 5


def test_a_down_cell_holds_the_checkpoint_until_its_deletions_can_be_seen(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.standin.cells["cell2"] = ["compute-21", "compute-22"]
    world.reconciler.run_pass()
    kept = world.reconciler.checkpoint.load()
    hidden = world.standin.create(cell="cell2")
    world.standin.delete(hidden)
    world.standin.down_cells.add("cell2")
    caplog.set_level(logging.INFO, logger="k2hr3_osnl.reconcile.reconciler")

    gauge = []
    for _ in range(2):
        world.standin.clock_offset += 1000  # well past the overlap
        assert world.reconciler.run_pass().ok
        gauge.append(dict(world.metrics_now()).get("k2hr3_osnl_reconcile_unknown_compute_services"))
    assert world.reconciler.checkpoint.load() == kept
    assert world.k2hr3.deleted() == []

    world.standin.down_cells.clear()
    back = world.reconciler.run_pass()

    assert back.ok and world.k2hr3.deleted() == [(hidden.id, None)]
    assert world.reconciler.checkpoint.load() != kept
    assert gauge == [2, 2]
    assert world.metric("k2hr3_osnl_reconcile_unknown_compute_services") == 0
    assert world.metric('k2hr3_osnl_reconcile_cell_checks_total{outcome="cell_down"}') == 2
    assert set(world.standin.services_microversions) == {(2, 69)}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("as UNKNOWN: a cell is down" in m for m in messages) == 1, messages
    assert sum("every Nova cell answers again" in m for m in messages) == 1, messages


def test_a_nova_too_old_to_tell_about_cells_is_said_once_and_passes_go_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.standin.max_microversion = (2, 60)  # Rocky: no down-cell support
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl.reconcile.reconciler")
    first = world.reconciler.run_pass()
    world.standin.clock_offset += 1000
    gone = world.standin.create()
    world.standin.delete(gone)
    second = world.reconciler.run_pass()

    assert first.ok and second.ok and second.cells_down is None
    assert second.checkpoint is not None and second.checkpoint != first.checkpoint
    assert world.k2hr3.deleted() == [(gone.id, None)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot tell whether a Nova cell is down" in m for m in messages) == 1, messages
    assert "status 406" in messages[0]
    assert world.metric('k2hr3_osnl_reconcile_cell_checks_total{outcome="unknown"}') == 2


def test_while_a_down_cell_holds_the_checkpoint_what_notifications_deleted_stays_known(
    world: World,
) -> None:
    # The memory of deleted cuks runs on the monotonic clock; this test moves it by hand.
    now = [0.0]
    world.reconciler.memory._clock = lambda: now[0]
    world.standin.cells["cell2"] = ["compute-21"]
    world.reconciler.run_pass()
    world.standin.down_cells.add("cell2")
    told = world.standin.create()
    world.standin.delete(told)
    world.notify_instance_deleted(told.id)

    for _ in range(3):  # an outage of 50 minutes, a pass every 10
        now[0] += 1000
        world.standin.clock_offset += 1000
        report = world.reconciler.run_pass()
        assert report.ok

    # Each held pass asks from the kept checkpoint: the notified deletion is found again,
    # and is neither sent twice nor taken for one the bus lost.
    assert report.found == 1 and report.already == 1
    assert world.k2hr3.deleted() == [(told.id, None)]
    assert world.metric("k2hr3_osnl_reconcile_missed_total") == 0
    assert report.cells_down == 1


def test_without_a_date_header_nova_s_service_heartbeats_tell_its_time(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.standin.send_date = False  # a proxy that strips it
    world.standin.clock_offset = -YEAR  # and our clock a year ahead of Nova's
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl.reconcile.reconciler")
    world.reconciler.run_pass()
    gone = world.standin.create()
    world.standin.delete(gone)

    report = world.reconciler.run_pass()

    assert report.ok and world.k2hr3.deleted() == [(gone.id, None)]
    assert "local clock decides" not in caplog.text


def test_with_no_clock_of_nova_s_at_all_the_local_one_decides_and_it_is_said_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.standin.send_date = False
    world.standin.max_microversion = (2, 60)  # no service list to read heartbeats from
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl.reconcile.reconciler")
    gone = world.standin.create()
    world.standin.delete(gone)
    for _ in range(2):
        assert world.reconciler.run_pass().ok
    assert world.k2hr3.deleted() == [(gone.id, None)]
    assert caplog.text.count("the local clock decides what is reconciled") == 1


def test_a_cell_check_that_fails_this_once_holds_the_checkpoint_for_this_pass(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.reconciler.run_pass()
    kept = world.reconciler.checkpoint.load()
    world.standin.services_fail_with = 500
    caplog.set_level(logging.INFO, logger="k2hr3_osnl.reconcile.reconciler")
    for _ in range(2):
        world.standin.clock_offset += 1000
        assert world.reconciler.run_pass().ok  # the listing itself worked
    assert world.reconciler.checkpoint.load() == kept

    world.standin.services_fail_with = None
    world.reconciler.run_pass()
    assert world.reconciler.checkpoint.load() != kept
    assert caplog.text.count("Nova could not say whether a cell is down (Nova GET") == 1
    assert "every Nova cell answers again" in caplog.text


def test_a_bad_checkpoint_that_a_down_cell_keeps_in_place_is_said_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    write_checkpoint(world, repr(time.time() + YEAR))
    world.standin.cells["cell2"] = ["compute-21"]
    world.standin.down_cells.add("cell2")  # so no pass may replace the file
    caplog.set_level(logging.WARNING, logger="k2hr3_osnl.reconcile.reconciler")
    for _ in range(3):
        world.standin.clock_offset += 600
        assert world.reconciler.run_pass().ok
    assert caplog.text.count("later than Nova's clock") == 1


def test_a_look_back_of_a_million_years_asks_from_2010_and_fails_nothing(world: World) -> None:
    # initial_lookback_seconds has no maximum; 3.2e13 s is a million years.
    world.reconciler.initial_lookback = 3.2e13
    gone = world.standin.create()
    world.standin.delete(gone, when=world.standin.now() - 400)
    report = world.reconciler.run_pass()
    assert report.ok, report.error
    assert world.k2hr3.deleted() == [(gone.id, None)]
    assert report.since == reconciliation.EARLIEST


class Token:
    """The fleet's election as the reconciler sees it, held for ``pages`` more pages."""

    def __init__(self, pages: int, checkpoint: float | None = None) -> None:
        self.pages = pages
        self.fleet_checkpoint = checkpoint
        self.ends: list[float | None] = []

    def start(self) -> Token:
        return self

    def stop(self, timeout: float = 5) -> None:
        pass

    def may_run(self, interval: float) -> bool:
        return self.pages > 0

    def leading(self) -> bool:
        self.pages -= 1  # asked after each page
        return self.pages > 0

    def checkpoint(self) -> float | None:
        return self.fleet_checkpoint

    def ended(self, checkpoint: float | None) -> bool:
        self.ends.append(checkpoint)
        if checkpoint is not None:
            self.fleet_checkpoint = checkpoint
        return True


def test_a_pass_that_loses_the_token_stops_sending_and_moves_no_checkpoint(
    world: World,
) -> None:
    for server in [world.standin.create() for _ in range(9)]:
        world.standin.delete(server)  # three pages of three
    day_ago = time.time() - 86400
    token = Token(pages=1, checkpoint=day_ago)
    world.reconciler.leadership = token
    world.reconciler.start(interval=5, first_delay=0)
    try:
        wait_until(lambda: token.ends or world.metric(ABANDONED) == 1, 10, "the pass to end")
        time.sleep(0.5)
    finally:
        world.reconciler.stop()
        world.reconciler.join(10)
    assert world.metric(ABANDONED) == 1
    # The first page went out; the rest is for the next holder, from the same checkpoint.
    assert len(world.k2hr3.deleted()) == 3
    assert token.ends == [] and token.fleet_checkpoint == day_ago


def test_a_holder_starts_from_the_fleet_s_checkpoint_and_hands_the_next_on(
    world: World,
) -> None:
    old, new = world.standin.create(), world.standin.create()
    world.standin.delete(old, when=time.time() - 7200)
    world.standin.delete(new, when=time.time() - 60)
    # Another node finished a pass an hour ago; this node's own file knows nothing.
    token = Token(pages=100, checkpoint=time.time() - 3600)
    world.reconciler.leadership = token
    before = time.time()
    world.reconciler.start(interval=3600, first_delay=0)
    try:
        wait_until(lambda: token.ends, 10, "the pass to end")
    finally:
        world.reconciler.stop()
        world.reconciler.join(10)
    assert [cuk for cuk, _ in world.k2hr3.deleted()] == [new.id]
    assert len(token.ends) == 1 and token.ends[0] is not None and token.ends[0] >= before - 1
