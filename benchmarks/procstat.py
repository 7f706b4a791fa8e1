"""CPU time and memory of a process tree, from the kernel's own accounting in /proc.

A daemon started with ``workers = N`` is a supervisor and its children: the figures are
summed (CPU) or taken per process (peak RSS) over the whole tree.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now."""
    found = [pid]
    for current in found:
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(utime, stime) of one process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@dataclass
class Sample:
    at: float  # time.time()
    cpu: float  # seconds, whole tree, user + system (processes that exited included)
    sys: float  # the system (kernel) part of cpu
    rss_kb: int  # largest VmRSS of one process of the tree
    hwm_kb: int  # largest VmHWM of one process of the tree
    processes: int


@dataclass
class Sampler:
    """Samples a process tree every ``interval`` seconds in a background thread."""

    pid: int
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _last_cpu: dict[int, tuple[float, float]] = field(default_factory=dict)

    def start(self) -> Sampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> Sample:
        self._stop.set()
        return self.take()

    def take(self) -> Sample:
        rss = hwm = 0
        pids = tree(self.pid)
        for pid in pids:
            try:
                # The last value seen is kept: a worker that died (or was restarted)
                # still spent its CPU on the run.
                self._last_cpu[pid] = cpu_seconds(pid)
                rss = max(rss, status_kb(pid, "VmRSS"))
                hwm = max(hwm, status_kb(pid, "VmHWM"))
            except (OSError, IndexError, ValueError):
                continue
        user = sum(u for u, _ in self._last_cpu.values())
        system = sum(s for _, s in self._last_cpu.values())
        sample = Sample(time.time(), user + system, system, rss, hwm, len(pids))
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            self.take()
            self._stop.wait(self.interval)

    def at(self, when: float, attr: str = "cpu") -> float:
        """A sampled value at ``when``, linearly interpolated."""
        samples = self.samples
        if not samples:
            return 0.0
        if when <= samples[0].at:
            return getattr(samples[0], attr)
        for before, after in itertools.pairwise(samples):
            if before.at <= when <= after.at:
                span = after.at - before.at or 1e-9
                share = (when - before.at) / span
                a, b = getattr(before, attr), getattr(after, attr)
                return a + (b - a) * share
        return getattr(samples[-1], attr)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (e.g. RabbitMQ's ``beam.smp``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += sum(cpu_seconds(pid))
        except (OSError, IndexError, ValueError):
            continue
    return total
