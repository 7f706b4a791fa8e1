"""Mixed traffic: how long a deletion waits when most of the topic is not deletions.

    .venv/bin/python benchmarks/mixed.py --runs 5          # about 10 minutes
    .venv/bin/python benchmarks/mixed.py --runs 1 --idle 0  # a smoke run

A busy neutron topic carries one ``port.delete.end`` in 20 messages; the rest are
``port.update.end``, ``port.create.end``, ``network.update.end``... of the same size.
Each daemon (k2hr3_osnl 1.0.8 and k2hr3-osnl, in turns, the order swapped every run)
is started idle on a fresh pool queue, and oslo.messaging's Notifier publishes three
phases to it, one after the other:

- quiet: 10 messages/s for 20 s;
- busy: 300 messages/s for 20 s;
- burst: 4,000 messages as fast as one publisher thread can.

The delay of a deletion runs from just before ``Notifier.info()`` to the K2HR3
stand-in (nginx, answering after ``--latency`` ms) *receiving* its DELETE: the window
in which the deleted VM's address still carries its access. Per phase: p50, p99 and
max of the deletions. Beside each run: the load average (the machine is shared), and
the daemon's CPU per message over the busy phase.

With ``--idle`` seconds, each daemon is also left idle that long after its start-up:
CPU-ms per second and RSS of a daemon that has nothing to do.

Compare the daemons within one run (ratios), never absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import daemons  # noqa: E402
import standin  # noqa: E402
from backlog import Broker, parse_cuk, wait_until  # noqa: E402
from measure import next_run  # noqa: E402
from procstat import Sampler  # noqa: E402
from run import URL, _free_port  # noqa: E402

DELETE = "port.delete.end"
#: The other 19 of every 20: what else a neutron notification topic carries.
OTHERS = (
    "port.update.end",
    "port.create.end",
    "network.update.end",
    "subnet.update.end",
    "floatingip.update.end",
    "port.update.start",
    "router.update.end",
    "security_group_rule.create.end",
    "port.create.start",
    "floatingip.create.end",
    "network.create.end",
    "subnet.create.end",
    "port.delete.start",
    "router.interface.create",
    "security_group.update.end",
    "floatingip.delete.end",
    "port.update.end",
    "port.update.end",
    "network.update.end",
)
EVERY = len(OTHERS) + 1  # one deletion in 20

#: (name, messages per second or None for as fast as published, seconds or count)
PHASES: tuple[tuple[str, float | None, float], ...] = (
    ("quiet", 10.0, 20.0),
    ("busy", 300.0, 20.0),
    ("burst", None, 4000),
)


def event_type(index: int) -> str:
    return DELETE if index % EVERY == 0 else OTHERS[index % EVERY - 1]


def _load() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def _arrivals(stand: standin.StandIn, run: int, calls: dict[int, float]) -> None:
    for call in stand.new_calls():
        parsed = parse_cuk(standin.query(call.uri).get("cuk", ""))
        if parsed is not None and parsed[0] == run and parsed[1] not in calls:
            calls[parsed[1]] = call.at


def once(
    spec: daemons.DaemonSpec,
    broker: Broker,
    stand: standin.StandIn,
    latency_ms: int,
    workdir: Path,
    idle_seconds: float,
) -> dict[str, Any]:
    """One daemon through the three phases (after ``idle_seconds`` of nothing)."""
    run = next_run()
    pool = f"bench_pool_{run}"
    directory = workdir / f"{run}-{spec.name}-mixed"
    spec.extra.setdefault("metrics", {})["port"] = str(_free_port())
    config = spec.config(
        directory, broker.url, broker.exchange, broker.topic, pool, stand.url(latency_ms)
    )
    broker.declare(pool)
    stand.mark()
    process = spec.start(config, directory / "stderr.log")
    found: dict[str, Any] = {"daemon": spec.label, "latency_ms": latency_ms, "load": [_load()]}
    published: dict[int, float] = {}
    calls: dict[int, float] = {}
    index = 0
    try:
        wait_until(lambda: broker.depth(pool)[1] >= 1, 60, "a consumer")
        time.sleep(2.0)  # let it finish starting up
        sampler = Sampler(process.pid)
        if idle_seconds:
            # The scheduler's own nanoseconds: an idle daemon uses less than the 10 ms
            # ticks of /proc/PID/stat would show in 20 s.
            before, started = _run_ns(process.pid), time.monotonic()
            time.sleep(idle_seconds)
            spent, elapsed = _run_ns(process.pid) - before, time.monotonic() - started
            found["idle"] = {
                "cpu_ms_per_s": spent / 1e6 / elapsed,
                "rss_mb": sampler.take().rss_kb / 1024,
                "threads": _threads(process.pid),
            }
        for name, rate, amount in PHASES:
            first = index
            count = int(rate * amount) if rate else int(amount)
            cpu_before = sampler.take().cpu
            begin = time.monotonic()
            for offset in range(count):
                if rate:
                    pause = begin + offset / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                kind = event_type(index)
                if kind == DELETE:
                    published[index] = time.time()
                broker.publish(run, index, kind)
                index += 1
            mine = [i for i in published if i >= first]

            def arrived(mine: list[int] = mine) -> bool:
                _arrivals(stand, run, calls)
                return all(i in calls for i in mine)

            wait_until(arrived, 120, f"the {name} phase's deletions")
            time.sleep(1.0)
            cpu = sampler.take().cpu - cpu_before
            delays = [1000 * (calls[i] - published[i]) for i in mine]
            found[name] = {
                "messages": count,
                "deletions": len(mine),
                "publish_s": time.monotonic() - begin,
                "p50_ms": _pct(delays, 0.50),
                "p99_ms": _pct(delays, 0.99),
                "max_ms": max(delays),
                "cpu_ms_per_message": 1000 * cpu / count,
            }
            found["load"].append(_load())
    finally:
        found["exit_status"] = spec.stop(process)
        broker.delete(pool)
        broker.drop_notifier_queue()
    return found


def _run_ns(pid: int) -> int:
    """Nanoseconds on a CPU so far, summed over the process's live threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue
    return total


def again(measure_once: Any, *args: Any) -> dict[str, Any]:
    """A run, made again (up to 3 times) if something disturbed it: the shared broker
    restarted by someone else's test loses what was queued."""
    for attempt in range(3):
        try:
            return measure_once(*args)
        except (RuntimeError, TimeoutError) as error:
            print(f"  disturbed ({error}); again", flush=True)
            if attempt == 2:
                raise
            time.sleep(10)
    raise AssertionError("unreachable")


def runs(
    specs: list[daemons.DaemonSpec],
    broker: Broker,
    stand: standin.StandIn,
    latency_ms: int,
    workdir: Path,
    idle_seconds: float,
    count: int,
    rows: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """``count`` runs of each daemon, in turns, appended to ``rows`` as they end (a run
    that fails later keeps the ones before)."""
    for number in range(count):
        # Swap the order every run: the machine's load drifts.
        for spec in specs if number % 2 == 0 else specs[::-1]:
            row = again(once, spec, broker, stand, latency_ms, workdir, idle_seconds)
            row["run"] = number
            rows.append(row)
            print(
                f"run {number} {row['daemon']}: "
                + ", ".join(
                    f"{n} {row[n]['p50_ms']:.1f}/{row[n]['p99_ms']:.1f} ms" for n, _, _ in PHASES
                )
                + (
                    f"; idle {row['idle']['cpu_ms_per_s']:.2f} ms/s {row['idle']['rss_mb']:.1f} MB"
                    if "idle" in row
                    else ""
                )
                + f"; load {row['load'][0][0]}-{row['load'][-1][0]}",
                flush=True,
            )
    return rows


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per daemon and phase, the median over runs of p50 and p99; and per run, ours/old."""
    summary: dict[str, Any] = {}
    labels = sorted({row["daemon"] for row in rows})
    for label in labels:
        mine = [row for row in rows if row["daemon"] == label]
        summary[label] = {
            name: {
                key: statistics.median(row[name][key] for row in mine)
                for key in ("p50_ms", "p99_ms", "max_ms", "cpu_ms_per_message")
            }
            for name, _, _ in PHASES
        }
        idle = [row["idle"] for row in mine if "idle" in row]
        if idle:
            summary[label]["idle"] = {
                key: statistics.median(i[key] for i in idle)
                for key in ("cpu_ms_per_s", "rss_mb", "threads")
            }
    return summary


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| phase | " + " | ".join(f"{label} p50 / p99 ms" for label in summary) + " |",
        "|---|" + "---:|" * len(summary),
    ]
    for name, _, _ in PHASES:
        cells = [f"{s[name]['p50_ms']:.1f} / {s[name]['p99_ms']:.1f}" for s in summary.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each daemon, in turns")
    parser.add_argument("--latency", type=int, default=10, help="K2HR3 latency, ms")
    parser.add_argument("--idle", type=float, default=20.0, help="idle seconds first; 0: none")
    parser.add_argument("--only", choices=("old", "ours"), help="one daemon only")
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="another checkout's src/ to run as a third daemon (git archive it first)",
    )
    parser.add_argument("--venvs", type=Path, default=Path("/work/bench-venvs"))
    parser.add_argument("--output", type=Path, help="raw JSON (default benchmarks/results/)")
    args = parser.parse_args(argv)

    standin.ensure_installed()
    specs = [daemons.old(args.venvs), daemons.ours()]
    if args.only:
        specs = [s for s in specs if s.name == args.only]
    specs += [daemons.ours(src=src.resolve()) for src in args.also]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = HERE / "results" / f"mixed-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    stand = standin.StandIn(workdir / "nginx", _free_port(), [args.latency]).start()
    broker = Broker(URL, f"bench_x_{stamp}", "bench_notifications")
    results: dict[str, Any] = {
        "command": "python benchmarks/mixed.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "git": daemons.git_describe(),
        "also": [str(src) for src in args.also],
        "rows": [],
    }
    try:
        runs(specs, broker, stand, args.latency, workdir, args.idle, args.runs, results["rows"])
    finally:
        stand.stop()
        broker.close()
        results["summary"] = summarize(results["rows"]) if results["rows"] else {}
        output = args.output or HERE / "results" / f"mixed-{stamp}.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=1) + "\n")
        print(f"raw results: {output}", flush=True)
    print(table(results["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
