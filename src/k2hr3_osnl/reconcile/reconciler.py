"""Reconciliation passes: ask Nova what was deleted, hand it to the notification path.

A pass lists the servers Nova deleted since the checkpoint (:mod:`k2hr3_osnl.core.reconciliation`
decides the window, which servers count, and when the checkpoint moves), page by page,
and hands each page's deletions to :meth:`Handler.handle_batch` as synthetic
notifications: the same breaker, retries, parking, metrics and log line as a
notification from the bus. A cuk that K2HR3 already lost whole within the window of
:class:`~k2hr3_osnl.core.delivered.DeletedCuks` costs no call; any other is a deletion the bus
never delivered, and the operator hears of it.

The daemon runs passes in one thread (:meth:`Reconciler.run_forever`): at start, which
catches up on the time it was down, then every ``interval_seconds``. A failing Keystone
or Nova is logged once per streak and reported to the observer; the checkpoint stays
and the next interval tries again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from k2hr3_osnl.core import reconciliation
from k2hr3_osnl.core.delivered import DeletedCuks
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.leadership import Leadership
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.openstack import nova
from k2hr3_osnl.openstack.session import Cloud, OpenStackError

LOG = logging.getLogger(__name__)

#: Deletions handed to the handler at once (the notification path's batch_size)...
CHUNK = 32
#: ...and batches in flight at once: 4 x 32 = 128 calls, what the default prefetch lets
#: notifications have. While some wait for K2HR3, others use the CPU and the next page
#: is fetched, as on the notification path; one batch at a time drained at a third of
#: its speed (docs/benchmarks-history.md).
BATCHES_IN_FLIGHT = 4
#: Seconds between the listener consuming and the first pass: a queue that survived the
#: downtime hands its backlog over first, so those deletions count as delivered.
STARTUP_DELAY = 3.0
CHECKPOINT_FILE = reconciliation.checkpoint_file(dry_run=False)
#: Seconds between two looks at whether this process holds the fleet's token and a pass
#: is due (with an election only).
LEADER_TICK = 1.0
#: Results after which a found deletion needs nothing more from this pass.
_SETTLED = frozenset(Result) - {Result.REQUEUED}


class Checkpoint:
    """The time up to which every deleted server was dealt with, in ``state_dir``.

    A dry run has a file of its own: what it "delivered" was never sent.
    """

    def __init__(self, state_dir: str | os.PathLike[str], dry_run: bool = False) -> None:
        self.path = Path(state_dir) / reconciliation.checkpoint_file(dry_run)

    def load(self) -> float | None:
        """None on the very first start; an unreadable file is said and ignored."""
        value, problem = self.read()
        if problem:
            LOG.warning(
                "reconciliation checkpoint %s %s: looking back as on a first start",
                self.path,
                problem,
            )
        return value

    def read(self) -> tuple[float | None, str]:
        """The value in the file as it is (NaN included: judging it is not ours), and
        what made it unreadable ("" if nothing did, or if there is no file yet)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return float(data["checkpoint_unix"]), ""
        except FileNotFoundError:
            return None, ""
        except (OSError, ValueError, KeyError, TypeError) as error:
            return None, f"unreadable ({error})"

    def save(self, when: float) -> None:
        """Write atomically (temporary file, fsync, rename): a crash leaves old or new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"checkpoint": reconciliation.iso(when), "checkpoint_unix": when})
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-checkpoint-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(body + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)


@dataclass
class Pass:
    """What one pass did."""

    since: float
    found: int = 0
    already: int = 0  # deleted from K2HR3 within the memory's window: no call
    sent: int = 0
    results: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    settled: bool = True
    checkpoint: float | None = None
    #: nova-compute services Nova listed as UNKNOWN (a cell down); None: cannot tell.
    cells_down: int | None = 0
    #: Whether a deletion no notification made counts as missed (not on a first pass).
    missed_counted: bool = True
    abandoned: bool = False  # this process lost the fleet's token during the pass

    @property
    def ok(self) -> bool:
        return self.error is None and self.settled


Printer = Callable[[str], None]


class _Batches:
    """Found deletions on their way through the handler, a few batches at a time."""

    def __init__(self, handler: Handler, report: Pass, printer: Printer | None) -> None:
        self.handler = handler
        self.report = report
        self.printer = printer
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[tuple[list[reconciliation.Found], Future[list[Result]]]] = deque()

    def submit(self, chunk: list[reconciliation.Found]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(BATCHES_IN_FLIGHT, thread_name_prefix="reconcile")
        # Bounded: a pass over 10,000 servers holds a few batches, not all of them.
        while len(self._pending) >= 2 * BATCHES_IN_FLIGHT:
            self._settle(*self._pending.popleft())
        received = time.monotonic()
        # Internal: Nova itself listed them, and only the daemon may use their event type.
        notes = [
            Notification(
                *reconciliation.notification(i),
                received=received,
                internal=True,
                happened=i.terminated_at,
            )
            for i in chunk
        ]
        self._pending.append((chunk, self._pool.submit(self.handler.handle_batch, notes)))
        self.report.sent += len(chunk)

    def finish(self) -> None:
        while self._pending:
            self._settle(*self._pending.popleft())
        if self._pool is not None:
            self._pool.shutdown()

    def _settle(self, chunk: list[reconciliation.Found], future: Future[list[Result]]) -> None:
        try:
            results = future.result()
        except Exception:  # a bug of ours: the handler parks what it can, and logs
            LOG.exception("reconciliation: handling %d deletions failed", len(chunk))
            results = [Result.REQUEUED] * len(chunk)
        report = self.report
        for item, result in zip(chunk, results, strict=True):
            report.results[result.value] = report.results.get(result.value, 0) + 1
            if result not in _SETTLED:
                report.settled = False
            if self.printer:
                self.printer(f"{result.value} cuk={item.cuk} (deleted in Nova)")


class Reconciler:
    def __init__(
        self,
        cloud: Cloud,
        handler: Handler,
        memory: DeletedCuks,
        checkpoint: Checkpoint,
        *,
        overlap: float,
        initial_lookback: float,
        page_size: int,
        clock: Callable[[], float] = time.time,
        leadership: Leadership | None = None,
    ) -> None:
        self.cloud = cloud
        self.handler = handler
        self.memory = memory
        self.checkpoint = checkpoint
        self.overlap = overlap
        self.initial_lookback = initial_lookback
        self.page_size = page_size
        self._clock = clock
        #: The fleet's election: who runs passes, and the checkpoint it carries.
        self.leadership = leadership
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing_since: float | None = None
        self.failures = 0
        self._said: dict[str, str] = {}

    def run_pass(
        self,
        since: reconciliation.Since | None = None,
        dry_run: bool = False,
        printer: Printer | None = None,
    ) -> Pass:
        """One pass; with ``since``, from then on (the checkpoint moves only if that covers it).

        Nova's clock, not ours, decides the window and the next checkpoint: the
        down-cell probe's answer says what time it is in Nova.
        """
        try:
            cells = nova.cells(self.cloud)
        except OpenStackError as error:
            return Pass(since=0.0, error=str(error))
        started = self._nova_now(cells.clock)
        if not cells.transient:  # said before what the pass finds; a 5xx only if it lists
            self._judge_cells(cells)
        stored, unreadable = self._read_checkpoint()
        checkpoint, why = reconciliation.trusted(stored, started, self.overlap)
        why = unreadable or why
        self._say(
            "checkpoint",
            why
            and f"reconciliation checkpoint {self.checkpoint.path}: {why}; looking back "
            f"{self.initial_lookback:.0f}s as on a first start",
            key=f"{stored!r} {unreadable}" if why else "",
        )
        usual = reconciliation.window(checkpoint, started, self.overlap, self.initial_lookback)
        asked = usual.since
        if since is not None:
            asked, moved = since.resolve(started)
            if moved:
                LOG.warning(
                    "reconciliation: --since reaches back before %s, when no Nova existed: "
                    "asking from then",
                    reconciliation.iso(reconciliation.EARLIEST),
                )
            elif asked > started:
                LOG.warning(
                    "reconciliation: --since %s is later than Nova's clock (%s): nothing "
                    "deleted since then can exist yet",
                    reconciliation.iso(asked),
                    reconciliation.iso(started),
                )
        self.memory.cover(2 * (started - asked))
        report = Pass(
            since=asked,
            checkpoint=checkpoint,
            cells_down=cells.unknown,
            missed_counted=reconciliation.counts_as_missed(checkpoint, asked, usual),
        )
        batches = _Batches(self.handler, report, printer)
        try:
            for page in nova.deleted_servers(self.cloud, reconciliation.iso(asked), self.page_size):
                self._page(page, report, dry_run, printer, batches)
                if self._stop.is_set():
                    report.settled = False
                    break
                if self.leadership is not None and not self.leadership.leading():
                    report.abandoned = True
                    report.settled = False
                    break
        except OpenStackError as error:
            report.error = str(error)
        finally:
            # What was found before a failure is delivered all the same.
            batches.finish()
        if report.error is None and cells.transient:
            self._judge_cells(cells)
        if report.error is None and not dry_run:
            # An on-demand --since later than the usual window saw less than it promises.
            settled = report.settled and asked <= usual.since
            every_cell = reconciliation.saw_every_cell(cells.unknown, cells.transient)
            moved_to = reconciliation.next_checkpoint(checkpoint, started, settled, every_cell)
            if moved_to != checkpoint and moved_to is not None:
                try:
                    self.checkpoint.save(moved_to)
                except OSError as error:
                    # Everything was delivered; the next pass only asks again.
                    report.error = f"cannot write {self.checkpoint.path}: {error.strerror or error}"
                else:
                    report.checkpoint = moved_to
        return report

    def _nova_now(self, clock: float | None) -> float:
        """Nova's time (the ``Date`` of its answer, or its services' heartbeats); ours
        only if it gave neither."""
        usable = clock is not None and clock >= reconciliation.EARLIEST
        self._say(
            "clock",
            ""
            if usable
            else "reconciliation: Nova's answer carries no usable Date header and no service "
            "heartbeat: the local clock decides what is reconciled",
        )
        return clock if usable and clock is not None else self._clock()

    def _judge_cells(self, cells: nova.Cells) -> None:
        """Say once per streak that a cell is down, or that nobody can tell."""
        self.handler.observer.reconcile_cells(cells.unknown)
        if cells.transient:
            text = (
                f"reconciliation: Nova could not say whether a cell is down ({cells.problem}): "
                "the checkpoint stays until it can"
            )
        elif cells.unknown is None:
            text = (
                f"reconciliation cannot tell whether a Nova cell is down ({cells.problem}): "
                "passes go on as if every cell answered; the account needs "
                "os_compute_api:os-services:list and Nova needs microversion "
                f"{nova.DOWN_CELLS_MICROVERSION}"
            )
        elif cells.unknown:
            text = (
                f"reconciliation: Nova lists {cells.unknown} nova-compute service(s) as "
                "UNKNOWN: a cell is down and its deleted servers are missing from the "
                "listing; the checkpoint stays until a pass sees every cell"
            )
        else:
            text = ""
        self._say("cells", text, "reconciliation: every Nova cell answers again")

    def _say(self, topic: str, text: str, healed: str = "", key: str | None = None) -> None:
        """A warning once until it changes (its ``key``, or its text), and ``healed``
        once it goes away."""
        key = text if key is None else key
        before = self._said.get(topic, "")
        if text and key != before:
            LOG.warning("%s", text)
        elif before and not text and healed:
            LOG.info("%s", healed)
        self._said[topic] = key if text else ""

    def _read_checkpoint(self) -> tuple[float | None, str]:
        """The fleet's checkpoint when there is an election, else this node's file (and
        why that could not be read)."""
        if self.leadership is not None:
            return self.leadership.checkpoint(), ""
        return self.checkpoint.read()

    def _page(
        self,
        page: list[object],
        report: Pass,
        dry_run: bool,
        printer: Printer | None,
        batches: _Batches,
    ) -> None:
        found = reconciliation.deletions(page)
        report.found += len(found)
        fresh = []
        for item in found:
            if item.cuk in self.memory:
                report.already += 1
                continue
            fresh.append(item)
            if dry_run:
                continue
            if not report.missed_counted:
                LOG.debug(
                    "reconciliation: server %s is deleted in Nova: deleting it now (a first "
                    "look back: not counted as missed)",
                    item.cuk,
                    extra={"cuk": item.cuk},
                )
            else:
                LOG.warning(
                    "reconciliation: server %s is deleted in Nova but no notification "
                    "deleted it from K2HR3: deleting it now",
                    item.cuk,
                    extra={"cuk": item.cuk},
                )
                self.handler.observer.reconcile_missed(item.cuk)
        if dry_run:
            for item in fresh:
                if printer:
                    printer(f"would delete cuk={item.cuk} (deleted in Nova)")
            return
        for start in range(0, len(fresh), CHUNK):
            batches.submit(fresh[start : start + CHUNK])

    def run_forever(self, interval: float, first_delay: float = STARTUP_DELAY) -> None:
        """Pass after pass until :meth:`stop`; never raises, never loops fast."""
        delay = first_delay
        while not self._stop.wait(delay):
            delay = interval
            if self.leadership is not None:
                delay = LEADER_TICK
                if not self.leadership.may_run(interval):
                    continue
            try:
                report = self.run_pass()
            except Exception as error:  # a bug of ours: the daemon keeps consuming
                LOG.exception("reconciliation pass failed")
                report = Pass(since=0, error=f"internal error: {error!r}")
            if self.leadership is not None:
                self._hand_on(report)
            self._judge(report, interval)

    def _hand_on(self, report: Pass) -> None:
        """Tell the fleet the pass ended, moving its checkpoint only after a finished one."""
        assert self.leadership is not None
        if report.abandoned:
            LOG.warning(
                "reconciliation pass abandoned: this process lost the fleet's token; "
                "another one takes over from the last finished pass"
            )
            self.handler.observer.reconcile_abandoned()
            return
        if not self.leadership.ended(report.checkpoint if report.ok else None) and report.ok:
            LOG.warning(
                "reconciliation: the token was lost before the pass's checkpoint reached "
                "it; the next holder asks again from the previous one"
            )

    def _judge(self, report: Pass, interval: float) -> None:
        observer = self.handler.observer
        if report.error is not None:
            self.failures += 1
            observer.reconcile_failed(report.error)
            if self.failing_since is None:
                self.failing_since = self._clock()
                LOG.warning(
                    "reconciliation failing: %s; notifications keep flowing, the "
                    "checkpoint stays, next try in %.0fs (logged once until it works)",
                    report.error,
                    interval,
                )
            else:
                LOG.debug("reconciliation still failing (%d): %s", self.failures, report.error)
            return
        if self.failing_since is not None:
            LOG.info("reconciliation works again after %d failed pass(es)", self.failures)
            self.failing_since = None
            self.failures = 0
        observer.reconciled(report.found)
        level = logging.INFO if report.sent else logging.DEBUG
        LOG.log(
            level,
            "reconciliation since %s: %d deleted server(s) found, %d already deleted from "
            "K2HR3, %d sent (%s)%s; checkpoint %s%s",
            reconciliation.iso(report.since),
            report.found,
            report.already,
            report.sent,
            ", ".join(f"{n} {r}" for r, n in sorted(report.results.items())) or "none",
            "" if report.missed_counted else ", none counted as missed (no checkpoint yet)",
            reconciliation.iso(report.checkpoint) if report.checkpoint is not None else "not set",
            " (kept: a Nova cell is down)" if report.cells_down else "",
        )

    def start(self, interval: float, first_delay: float = STARTUP_DELAY) -> threading.Thread:
        if self.leadership is not None:
            self.leadership.start()
        thread = threading.Thread(
            target=self.run_forever, args=(interval, first_delay), name="reconcile", daemon=True
        )
        thread.start()
        self._thread = thread
        return thread

    def stop(self) -> None:
        """No new pass, and the one under way ends after its current page."""
        self._stop.set()
        if self.leadership is not None:
            self.leadership.stop()

    def join(self, timeout: float) -> bool:
        """Wait for the pass under way (its deliveries give up once the breaker stops)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True
