"""The whole benchmark in one command: k2hr3-osnl against k2hr3_osnl 1.0.8, same run.

    /work/venv/bin/python benchmarks/run.py            # ~13 minutes on 2 cores
    /work/venv/bin/python benchmarks/run.py --count 20000 --repeat 2   # docs: ~22 min
    /work/venv/bin/python benchmarks/run.py --quick    # a smoke run, ~4 minutes

Run it with a Python that has k2hr3-osnl installed (``pip install -e .``); it is never
run by CI or pytest. It needs the local RabbitMQ (guest/guest on 127.0.0.1:5672) and
root for apt-get the first time. What it does, in order:

1. makes sure of its tools: nginx and its echo module (Debian), k2hr3_osnl 1.0.8 in its
   own venv and matplotlib in another (PyPI), under ``--venvs`` (/work/bench-venvs);
2. starts the K2HR3 stand-in (nginx, see standin.py) with one path per latency;
3. measures the machine's ceilings: a bare oslo.messaging listener that does nothing
   (same queue design, executor, prefetch and threads as the daemon), and bare HTTP
   loops (requests and urllib3) against the stand-in;
4. for each K2HR3 latency, in turns: preloads ``--count`` neutron ``port.delete.end``
   notifications into a fresh pool queue and lets each daemon drain it (1.0.8,
   k2hr3-osnl, k2hr3-osnl with 2 workers);
5. drains ``--memory-count`` with each daemon at 0 ms for peak RSS and its growth;
6. publishes at ``--rate``/s to each running daemon for the publish-to-K2HR3 delay;
7. mixed traffic (mixed.py, issue 21): ``--mixed-runs`` runs of each daemon through a
   quiet, a busy and a burst phase, after ``--mixed-idle`` seconds idle;
8. one reconciliation pass over ``--reconcile-servers`` deleted servers (reconcile.py);
9. writes benchmarks/results/<date>.json, and (unless ``--no-docs``) the tables in
   docs/benchmarks.md, docs/benchmarks-summary.json, docs/benchmarks-throughput.png and
   docs/benchmarks-mixed.png, and copies the raw JSON to docs/benchmarks-raw/.

With ``--backlog5`` every drain is also made against K2HR3 behind a listen backlog of 5.

Everything on the broker is named ``bench_*`` and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import daemons  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402
import standin  # noqa: E402
from backlog import Broker  # noqa: E402

ROOT = HERE.parent
URL = "rabbit://guest:guest@127.0.0.1:5672/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ours_defaults() -> tuple[int, int, int]:
    """(prefetch, worker threads, batch size) k2hr3-osnl runs with when not told otherwise."""
    from k2hr3_osnl import config

    conf = config.new_conf()
    conf([], default_config_files=[], use_env=False)
    return (
        conf.oslo_messaging_rabbit.rabbit_qos_prefetch_count,
        conf.executor_thread_pool_size,
        conf.batch_size,
    )


def _version(distribution: str, python: str = sys.executable) -> str:
    if python == sys.executable:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return "?"
    code = f"from importlib import metadata; print(metadata.version({distribution!r}))"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def _command(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (result.stdout + result.stderr).strip().splitlines()[0] if result else "?"


def machine(old_python: Path) -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    git = _command(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rabbitmq": _command(["rabbitmqctl", "version"]),
        "nginx": _command([standin.NGINX, "-v"]).replace("nginx version: ", ""),
        "k2hr3-osnl": f"{_version('k2hr3-osnl')} ({git})",
        "k2hr3_osnl (old)": _version("k2hr3_osnl", str(old_python)),
        "oslo.messaging": _version("oslo.messaging"),
        "oslo.messaging (old venv)": _version("oslo.messaging", str(old_python)),
        "kombu": _version("kombu"),
        "urllib3": _version("urllib3"),
        "aiohttp": _version("aiohttp"),
        "requests": _version("requests"),
    }


def _json_line(command: list[str]) -> dict[str, Any]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{command[1]} failed: {result.stderr[-2000:]}")
    return json.loads(lines[-1])


def again(what: str, measure_once: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A measurement, tried again (up to 3 times) if something disturbed it: the shared
    broker restarted by someone else's test, say, which loses a transient queue."""
    for attempt in range(3):
        try:
            return measure_once(*args, **kwargs)
        except (RuntimeError, TimeoutError) as error:
            print(f"  {what}: disturbed ({error}); again", flush=True)
            if attempt == 2:
                raise
            time.sleep(10)
    raise AssertionError("unreachable")


def ceilings(
    broker: Broker,
    stand: standin.StandIn,
    args: argparse.Namespace,
    prefetch: int,
    threads: int,
    batch: int,
) -> dict[str, Any]:
    """a: bare listeners, one message per hand-off and in batches; b: bare HTTP loops.

    The threaded HTTP loops run as many threads as calls can be in flight (the
    prefetch), as a daemon with a thread per message would; aiohttp runs as many tasks.
    """
    found: dict[str, Any] = {"listener": [], "batch_listener": [], "http": []}
    for _ in range(args.repeat):
        for key, size, pool_threads in (
            ("listener", 0, prefetch),
            ("batch_listener", batch, threads),
        ):
            run = measure.next_run()
            pool = f"bench_pool_{run}"
            broker.declare(pool)
            broker.preload(pool, run, args.count)
            try:
                bare = _json_line(
                    [
                        sys.executable,
                        str(HERE / "bare_listener.py"),
                        broker.url,
                        broker.exchange,
                        broker.topic,
                        pool,
                        str(args.count),
                        str(prefetch),
                        str(pool_threads),
                        str(size),
                    ]
                )
            finally:
                broker.delete(pool)
            print(
                f"  bare {key} (batch {size}): {bare['per_second']:.0f}/s, {bare['cpu_ms']:.3f} ms",
                flush=True,
            )
            found[key].append(bare)
    for latency in args.latencies:
        for library in ("requests", "urllib3", "aiohttp"):
            counts = (1, prefetch) if latency == 0 and library != "aiohttp" else (prefetch,)
            for workers in counts:
                http = _json_line(
                    [
                        sys.executable,
                        str(HERE / "bare_http.py"),
                        library,
                        stand.url(latency),
                        str(args.http_count),
                        str(workers),
                        str(measure.next_run()),
                    ]
                )
                http["latency_ms"] = latency
                print(
                    f"  bare {library} x{workers} at {latency} ms: {http['per_second']:.0f}/s, "
                    f"{http['cpu_ms']:.3f} ms",
                    flush=True,
                )
                found["http"].append(http)
    return found


def drain_table(rows: list[dict[str, Any]]) -> str:
    """Drains per daemon, latency and listen backlog, with the load beside them."""
    lines = [
        "| daemon | K2HR3 latency | listen backlog | deletions/s | CPU ms / notification "
        "| peak RSS MB | machine busy |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['daemon']} | {row['latency_ms']} ms "
            f"| {'5' if row.get('small_backlog') else '4096'} | {row['per_second']:.0f} "
            f"| {row['cpu_ms']:.3f} | {row['peak_rss_mb']:.1f} | {row['machine_busy']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="backlog per drain")
    parser.add_argument("--memory-count", type=int, default=100_000, help="backlog for RSS")
    parser.add_argument("--http-count", type=int, default=10_000, help="calls per HTTP loop")
    parser.add_argument("--latencies", default="0,10,50,100", help="K2HR3 latencies, ms")
    parser.add_argument("--rate", type=float, default=100.0, help="steady rate, per second")
    parser.add_argument("--rate-seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1, help="drains per daemon and latency")
    parser.add_argument("--workers", default="1,2", help="k2hr3-osnl worker counts to drain")
    parser.add_argument("--venvs", type=Path, default=Path("/work/bench-venvs"))
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--no-docs", action="store_true", help="write only the raw JSON")
    parser.add_argument(
        "--skip",
        default="",
        help="parts to leave out, comma-separated: ceilings, memory, steady, mixed, reconcile",
    )
    parser.add_argument(
        "--backlog5",
        action="store_true",
        help="also drain at each latency against K2HR3 behind a listen backlog of 5",
    )
    parser.add_argument("--mixed-runs", type=int, default=5, help="mixed traffic runs; 0: none")
    parser.add_argument("--mixed-idle", type=float, default=15.0, help="idle seconds first")
    parser.add_argument("--mixed-latency", type=int, default=10, help="K2HR3 latency, ms")
    parser.add_argument(
        "--reconcile-servers", type=int, default=100_000, help="deleted servers; 0: none"
    )
    parser.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        help="another checkout's src/ to drain as one more daemon (git archive it first)",
    )
    args = parser.parse_args(argv)
    args.latencies = [int(x) for x in args.latencies.split(",")]
    args.workers = [int(x) for x in args.workers.split(",")]
    args.skip = {x for x in args.skip.split(",") if x}
    if args.quick:
        args.count, args.memory_count, args.http_count, args.rate_seconds = 3000, 12_000, 2000, 5
        args.mixed_runs, args.mixed_idle = min(args.mixed_runs, 1), 2.0
        args.reconcile_servers = min(args.reconcile_servers, 2000)

    standin.ensure_installed()
    old = daemons.old(args.venvs)
    plot_python = daemons.ensure_venv(args.venvs / "plot", ["matplotlib"])
    prefetch, threads, batch = _ours_defaults()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = HERE / "results" / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": "python benchmarks/run.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine(Path(old.command[0]).parent / "python"),
        "settings": {
            "count": args.count,
            "memory_count": args.memory_count,
            "rate": args.rate,
            "rate_seconds": args.rate_seconds,
            "ours_prefetch": prefetch,
            "ours_threads": threads,
            "ours_batch": batch,
            "old_prefetch": "unlimited (oslo.messaging default; 1.0.8 cannot set it)",
            "old_threads": 64,
        },
        "load_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    print(json.dumps(results["machine"], indent=1), flush=True)
    latencies = sorted({*args.latencies, args.mixed_latency, 0})
    stand = standin.StandIn(workdir / "nginx", _free_port(), latencies).start()
    broker = Broker(URL, f"bench_x_{stamp}", "bench_notifications")
    specs = [old] + [daemons.ours(workers=w) for w in args.workers]
    specs += [daemons.ours(src=src.resolve()) for src in args.also]
    try:
        print("ceilings", flush=True)
        if "ceilings" not in args.skip:
            results["ceilings"] = ceilings(broker, stand, args, prefetch, threads, batch)
        results["drain"] = []
        for small_backlog in (False, True) if args.backlog5 else (False,):
            for latency in args.latencies:
                for _ in range(args.repeat):
                    for spec in specs:
                        found = again(
                            "drain",
                            measure.drain,
                            spec,
                            broker,
                            stand,
                            latency,
                            args.count,
                            workdir,
                            small_backlog=small_backlog,
                        )
                        print(f"  drain {report.line(found)}", flush=True)
                        results["drain"].append(found)
        results["memory"] = []
        for spec in specs[:2] if "memory" not in args.skip else []:
            found = measure.drain(spec, broker, stand, 0, args.memory_count, workdir, rss_at=10_000)
            print(f"  memory {report.line(found)}", flush=True)
            results["memory"].append(found)
        results["steady"] = []
        for latency in args.latencies if "steady" not in args.skip else []:
            for spec in [*specs[:2]] * args.repeat:
                found = again(
                    "steady",
                    measure.steady,
                    spec,
                    broker,
                    stand,
                    latency,
                    args.rate,
                    args.rate_seconds,
                    workdir,
                )
                print(
                    f"  steady {spec.label} at {latency} ms: p50 {found['p50_ms']:.1f} ms, "
                    f"p99 {found['p99_ms']:.1f} ms",
                    flush=True,
                )
                results["steady"].append(found)
        if args.mixed_runs and "mixed" not in args.skip:
            results["mixed"] = mixed_traffic(specs[:2], broker, stand, workdir, args)
        if args.reconcile_servers and "reconcile" not in args.skip:
            import reconcile  # adds tests/ to the path, for the OpenStack stand-in

            print("reconciliation", flush=True)
            results["reconcile"] = [reconcile.measure(0, args.reconcile_servers, 500, stand)]
            print(f"  {results['reconcile'][0]}", flush=True)
    finally:
        results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
        stand.stop()
        broker.close()
        raw = HERE / "results" / f"{stamp}.json"
        raw.write_text(json.dumps(results, indent=1))
        print(f"raw results: {raw}", flush=True)
    if args.skip or args.also:
        # A partial run: the raw JSON and drain.py's table, not the docs' full report.
        print(drain_table(results["drain"]), flush=True)
        return 0
    summary = report.summarize(results)
    print(report.markdown(results, summary), flush=True)
    if not args.no_docs:
        docs = ROOT / "docs"
        (docs / "benchmarks-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        report.update_doc(docs / "benchmarks.md", report.markdown(results, summary))
        (docs / "benchmarks-raw" / f"run-{stamp}.json").write_text(raw.read_text())
        subprocess.run(
            [
                str(plot_python),
                str(HERE / "plot.py"),
                str(raw),
                str(docs / "benchmarks-throughput.png"),
            ],
            check=True,
        )
        if results.get("mixed"):
            rows = workdir / "mixed-rows.json"
            rows.write_text(json.dumps({"rows": results["mixed"]["rows"]}))
            subprocess.run(
                [
                    str(plot_python),
                    str(HERE / "plot_mixed.py"),
                    str(rows),
                    str(docs / "benchmarks-mixed.png"),
                ],
                check=True,
            )
    return 0


def mixed_traffic(
    specs: list[daemons.DaemonSpec],
    broker: Broker,
    stand: standin.StandIn,
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """mixed.py's runs, 1.0.8 and k2hr3-osnl in turns (the order swapped every run)."""
    import mixed

    print("mixed traffic", flush=True)
    rows = mixed.runs(
        specs, broker, stand, args.mixed_latency, workdir, args.mixed_idle, args.mixed_runs, []
    )
    return {
        "runs": args.mixed_runs,
        "latency_ms": args.mixed_latency,
        "idle_seconds": args.mixed_idle,
        "rows": rows,
        "summary": mixed.summarize(rows),
    }


if __name__ == "__main__":
    sys.exit(main())
