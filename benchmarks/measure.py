"""One measured run of one daemon: a drain of a preloaded backlog, or a steady rate.

Throughput comes from the stand-in's own log (when each call arrived), CPU and memory
from the kernel's accounting of the daemon's processes, sampled every 100 ms. Rates and
CPU per notification are taken over the middle 80% of the calls (from the 10% call to
the 90% call), so start-up (imports, connecting) and the tail do not blur them; the
whole-run figures are kept beside them.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backlog import Broker, parse_cuk, wait_until
from daemons import DaemonSpec
from procstat import Sampler, cpu_of, machine_ticks, pids_named
from standin import StandIn, query

_runs = itertools.count(int(time.time()) % 100_000 * 100)
EXPECTED_HOST = '["172.16.0.1", "2001:db8::6"]'


def next_run() -> int:
    return next(_runs)


def _collect(
    standin: StandIn,
    run: int,
    calls: dict[int, float],
    bad: list[str],
    dup: list[int],
    done: bool = False,
) -> None:
    """Record when each call of this run arrived (or, with ``done``, was answered)."""
    for call in standin.new_calls():
        params = query(call.uri)
        parsed = parse_cuk(params.get("cuk", ""))
        if parsed is None or parsed[0] != run:
            continue
        index = parsed[1]
        if call.status != 204 or params.get("host") != EXPECTED_HOST:
            bad.append(call.uri)
        if index in calls:
            dup.append(index)
        else:
            calls[index] = call.done if done else call.at


def _settle(broker: Broker, pool: str, consumers: int, timeout: float = 60) -> None:
    wait_until(lambda: broker.depth(pool)[1] >= consumers, timeout, f"{consumers} consumers")


def drain(
    spec: DaemonSpec,
    broker: Broker,
    standin: StandIn,
    latency_ms: int,
    count: int,
    workdir: Path,
    rss_at: int | None = None,
    timeout: float = 900,
    attach: Callable[[int], Any] | None = None,
    small_backlog: bool = False,
) -> dict[str, Any]:
    """Preload ``count`` notifications, start the daemon, time how it drains them
    (against the stand-in's listen backlog of 5 with ``small_backlog``)."""
    run = next_run()
    pool = f"bench_pool_{run}"
    directory = workdir / f"{run}-{spec.name}-w{spec.workers}-drain-{latency_ms}ms"
    api = standin.url(latency_ms, small_backlog)
    config = spec.config(directory, broker.url, broker.exchange, broker.topic, pool, api)
    broker.declare(pool)
    preload_s = broker.preload(pool, run, count)
    standin.mark()
    calls: dict[int, float] = {}
    bad: list[str] = []
    dup: list[int] = []
    started = time.time()
    others = {"broker": pids_named("beam.smp"), "standin": standin.pids()}
    others_before = {name: cpu_of(pids) for name, pids in others.items()}
    machine_before = machine_ticks()
    process = spec.start(config, directory / "stderr.log")
    sampler = Sampler(process.pid).start()
    try:
        if attach is not None:
            attach(process.pid)  # a profiler
        last_progress, last_count = time.monotonic(), 0
        while len(calls) < count:
            time.sleep(0.25)
            _collect(standin, run, calls, bad, dup)
            if len(calls) != last_count:
                last_progress, last_count = time.monotonic(), len(calls)
            if process.poll() is not None:
                raise RuntimeError(f"{spec.label} exited with {process.returncode}")
            if time.monotonic() - last_progress > 30 or time.time() - started > timeout:
                raise RuntimeError(f"{spec.label} stalled at {len(calls)}/{count}")
        final = sampler.stop()
        machine_after = machine_ticks()
        others_used = {n: cpu_of(p) - others_before[n] for n, p in others.items()}
    finally:
        status = spec.stop(process)
        broker.delete(pool)
    time.sleep(0.3)
    _collect(standin, run, calls, bad, dup)
    times = sorted(calls.values())
    t10, t90 = times[int(count * 0.1)], times[int(count * 0.9) - 1]
    middle = int(count * 0.9) - 1 - int(count * 0.1)
    result: dict[str, Any] = {
        "daemon": spec.label,
        "name": spec.name,
        "workers": spec.workers,
        "latency_ms": latency_ms,
        "small_backlog": small_backlog,
        "count": count,
        "preload_s": round(preload_s, 2),
        "per_second": middle / (t90 - t10),
        "per_second_whole": count / (times[-1] - times[0]),
        "drain_s": times[-1] - times[0],
        "cpu_ms": 1000 * (sampler.at(t90) - sampler.at(t10)) / middle,
        "cpu_ms_whole": 1000 * final.cpu / count,
        "sys_share": (sampler.at(t90, "sys") - sampler.at(t10, "sys"))
        / max(1e-9, sampler.at(t90) - sampler.at(t10)),
        "peak_rss_mb": final.hwm_kb / 1024,
        "exit_status": status,
        "bad_calls": len(bad),
        "duplicate_calls": len(dup),
        # Over the whole drain: what the rest of the stack spent per notification, and
        # how busy the two cores were (the daemon, the broker, nginx, and anyone else).
        "broker_cpu_ms": 1000 * others_used["broker"] / count,
        "standin_cpu_ms": 1000 * others_used["standin"] / count,
        "machine_busy": (machine_after[0] - machine_before[0])
        / max(1, machine_after[1] - machine_before[1]),
    }
    if rss_at:
        at = times[min(rss_at, count) - 1]
        result["rss_mb_at"] = {
            str(rss_at): sampler.at(at, "rss_kb") / 1024,
            str(count): sampler.at(times[-1], "rss_kb") / 1024,
        }
        result["rss_growth_mb"] = result["rss_mb_at"][str(count)] - result["rss_mb_at"][str(rss_at)]
    return result


def steady(
    spec: DaemonSpec,
    broker: Broker,
    standin: StandIn,
    latency_ms: int,
    rate: float,
    seconds: float,
    workdir: Path,
) -> dict[str, Any]:
    """Publish at ``rate``/s to a running daemon: the delay from publish until K2HR3 has
    answered the call (so it includes K2HR3's own latency once)."""
    run = next_run()
    pool = f"bench_pool_{run}"
    directory = workdir / f"{run}-{spec.name}-w{spec.workers}-steady-{latency_ms}ms"
    config = spec.config(
        directory, broker.url, broker.exchange, broker.topic, pool, standin.url(latency_ms)
    )
    broker.declare(pool)
    standin.mark()
    process = spec.start(config, directory / "stderr.log")
    count = int(rate * seconds)
    published: dict[int, float] = {}
    calls: dict[int, float] = {}
    bad: list[str] = []
    dup: list[int] = []
    try:
        _settle(broker, pool, spec.workers)
        time.sleep(1.0)  # let it finish starting up
        sampler = Sampler(process.pid)
        cpu_before = sampler.take().cpu
        begin = time.monotonic()
        for index in range(count):
            pause = begin + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            published[index] = time.time()
            broker.publish(run, index)
        wait_until(
            lambda: _collect(standin, run, calls, bad, dup, done=True) or len(calls) >= count,
            60,
            f"{count} calls",
        )
        # At a moderate rate, what the gateway node pays per notification (idle
        # threads, heartbeats and timers included), rather than at full speed.
        cpu_ms = 1000 * (sampler.take().cpu - cpu_before) / count
    finally:
        status = spec.stop(process)
        broker.delete(pool)
        broker.drop_notifier_queue()
    delays = sorted(1000 * (calls[i] - published[i]) for i in calls)

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(len(delays) * p))]

    return {
        "daemon": spec.label,
        "name": spec.name,
        "workers": spec.workers,
        "latency_ms": latency_ms,
        "rate": rate,
        "count": count,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": delays[-1],
        "mean_ms": statistics.fmean(delays),
        "cpu_ms": cpu_ms,
        "exit_status": status,
        "bad_calls": len(bad),
        "duplicate_calls": len(dup),
    }
