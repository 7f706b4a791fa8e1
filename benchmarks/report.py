"""From raw results to the summary, the targets of issue 5, and the table in the docs."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

OLD = "k2hr3_osnl 1.0.8"
OURS = "k2hr3-osnl"
OURS2 = "k2hr3-osnl, 2 workers"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def line(found: dict[str, Any]) -> str:
    return (
        f"{found['daemon']} at {found['latency_ms']} ms"
        + (" (listen backlog 5)" if found.get("small_backlog") else "")
        + f": {found['per_second']:.0f}/s, "
        f"{found['cpu_ms']:.3f} CPU-ms, peak RSS {found['peak_rss_mb']:.1f} MB"
        + (f", growth {found['rss_growth_mb']:.1f} MB" if "rss_growth_mb" in found else "")
        + (f", {found['bad_calls']} bad calls" if found["bad_calls"] else "")
    )


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    by: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    small: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in results.get("drain", []):
        (small if row.get("small_backlog") else by)[(row["daemon"], row["latency_ms"])].append(row)
    backlog5: dict[str, dict[int, float]] = defaultdict(dict)
    for (daemon, latency), rows in sorted(small.items(), key=lambda kv: kv[0][1]):
        backlog5[daemon][latency] = _median(rows, "per_second")
    throughput: dict[str, dict[int, float]] = defaultdict(dict)
    cpu: dict[str, dict[int, float]] = defaultdict(dict)
    for (daemon, latency), rows in sorted(by.items(), key=lambda kv: kv[0][1]):
        throughput[daemon][latency] = _median(rows, "per_second")
        cpu[daemon][latency] = _median(rows, "cpu_ms")

    threads = results["settings"]["ours_prefetch"]  # the HTTP loops' concurrency
    ceil = results.get("ceilings", {})
    a = _median(ceil["listener"], "per_second") if ceil.get("listener") else None
    batches = ceil.get("batch_listener") or []
    a_batch = _median(batches, "per_second") if batches else None
    http: dict[str, dict[str, float]] = defaultdict(dict)
    for row in ceil.get("http", []):
        key = f"{row['library']} x{row['threads']}"
        http[key][str(row["latency_ms"])] = row["per_second"]
        http[key + " cpu_ms"][str(row["latency_ms"])] = row["cpu_ms"]
    combined: dict[str, dict[str, float]] = defaultdict(dict)
    combined_batch: dict[str, dict[str, float]] = defaultdict(dict)
    for key, per_latency in list(http.items()):
        if key.endswith("cpu_ms"):
            continue
        for latency, b in per_latency.items():
            if a:
                combined[key][latency] = 1 / (1 / a + 1 / b)
            if a_batch:
                combined_batch[key][latency] = 1 / (1 / a_batch + 1 / b)

    summary: dict[str, Any] = {
        "throughput": throughput,
        "throughput_backlog5": backlog5,
        "cpu_ms": cpu,
        "ceilings": {
            "bare_listener_per_second": a,
            "bare_listener_cpu_ms": _median(ceil["listener"], "cpu_ms") if a else None,
            "bare_batch_listener_per_second": a_batch,
            "bare_batch_listener_cpu_ms": _median(batches, "cpu_ms") if a_batch else None,
            "batch_size": results["settings"].get("ours_batch"),
            "bare_http": http,
            "combined": combined,
            "combined_batch": combined_batch,
        },
        "memory": {
            row["daemon"]: {
                "count": row["count"],
                "peak_rss_mb": row["peak_rss_mb"],
                "rss_mb_at": row.get("rss_mb_at"),
                "growth_mb": row.get("rss_growth_mb"),
                "per_second": row["per_second"],
            }
            for row in results.get("memory", [])
        },
        "steady": defaultdict(dict),
    }
    steady: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in results.get("steady", []):
        steady[(row["daemon"], row["latency_ms"])].append(row)
    for (daemon, latency), rows in steady.items():
        # With --repeat, the median run: one stall of the shared machine is one run.
        summary["steady"][daemon][latency] = {
            "p50_ms": _median(rows, "p50_ms"),
            "p99_ms": _median(rows, "p99_ms"),
            "max_ms": _median(rows, "max_ms"),
            "cpu_ms": _median(rows, "cpu_ms") if all("cpu_ms" in r for r in rows) else None,
            "runs": len(rows),
        }
    if results.get("mixed"):
        summary["mixed"] = results["mixed"]["summary"]
    if results.get("reconcile"):
        summary["reconcile"] = results["reconcile"]
    summary["targets"] = _targets(summary, threads, results)
    plain = _plain(summary)
    plain["targets_21"] = _targets_21(plain)
    return plain


def _plain(value: Any) -> Any:
    """defaultdicts and int keys into what json writes back the same way."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _targets(summary: dict[str, Any], threads: int, results: dict[str, Any]) -> list[dict]:
    t, c = summary["throughput"], summary["cpu_ms"]
    out: list[dict[str, Any]] = []

    def target(what: str, goal: str, measured: str, met: bool | None) -> None:
        out.append({"target": what, "goal": goal, "measured": measured, "met": met})

    for latency in (0, 50):
        if OLD in t and OURS in t and latency in t[OLD] and latency in t[OURS]:
            ratio = c[OURS][latency] / c[OLD][latency]
            target(
                f"CPU per notification, {latency} ms",
                "<= 0.75x 1.0.8",
                f"{c[OURS][latency]:.3f} vs {c[OLD][latency]:.3f} ms = {ratio:.2f}x",
                ratio <= 0.75,
            )
    for latency in (0, 50):
        if OLD in t and OURS in t and latency in t[OLD] and latency in t[OURS]:
            ratio = t[OURS][latency] / t[OLD][latency]
            target(
                f"Throughput, 1 process, {latency} ms",
                ">= 1.3x 1.0.8",
                f"{t[OURS][latency]:.0f} vs {t[OLD][latency]:.0f}/s = {ratio:.2f}x",
                ratio >= 1.3,
            )
    # The ceiling (the target), then the one of the stack k2hr3-osnl is built on.
    for ceiling, library, what, goal in (
        ("combined", "requests", "Throughput vs ceiling 1/(1/a+1/b), a = bare listener", ">= 90%"),
        (
            "combined_batch",
            "aiohttp",
            "Throughput vs our own stack's ceiling: a = bare batch listener",
            "(stricter: what k2hr3-osnl is built on)",
        ),
    ):
        key = f"{library} x{threads}"
        bound = summary["ceilings"][ceiling].get(key, {}).get("0")
        if OURS in t and 0 in t[OURS] and bound:
            share = t[OURS][0] / bound
            target(
                f"{what}, b = bare {key}, 0 ms",
                goal,
                f"{t[OURS][0]:.0f} / {bound:.0f} = {100 * share:.0f}%",
                share >= 0.9 if ceiling == "combined" else None,
            )
    if OLD in t and OURS2 in t and 0 in t[OURS2]:
        ratio = t[OURS2][0] / t[OLD][0]
        target(
            "Throughput, workers = 2, 0 ms",
            ">= 1.8x 1.0.8",
            f"{t[OURS2][0]:.0f} vs {t[OLD][0]:.0f}/s = {ratio:.2f}x",
            ratio >= 1.8,
        )
    memory = summary["memory"].get(OURS)
    if memory:
        target(
            f"Peak RSS draining {memory['count']:,}",
            "<= 80 MB",
            f"{memory['peak_rss_mb']:.1f} MB",
            memory["peak_rss_mb"] <= 80,
        )
        if memory["growth_mb"] is not None:
            target(
                f"RSS growth 10,000 -> {memory['count']:,}",
                "< 10 MB",
                f"{memory['growth_mb']:.1f} MB",
                memory["growth_mb"] < 10,
            )
    rate = results["settings"]["rate"]
    steady = summary["steady"]
    for latency in (0, 50):
        ours_cpu = steady.get(OURS, {}).get(latency, {}).get("cpu_ms")
        old_cpu = steady.get(OLD, {}).get(latency, {}).get("cpu_ms")
        if ours_cpu and old_cpu:
            target(
                f"CPU per notification at {rate:.0f}/s (not saturated), {latency} ms",
                "(for comparison)",
                f"{ours_cpu:.3f} vs {old_cpu:.3f} ms = {ours_cpu / old_cpu:.2f}x",
                None,
            )
    for latency, steady in sorted(summary["steady"].get(OURS, {}).items()):
        goal = 20 + latency
        target(
            f"p99 publish -> K2HR3 answered, {rate:.0f}/s, {latency} ms",
            f"< {goal} ms",
            f"{steady['p99_ms']:.1f} ms",
            steady["p99_ms"] < goal,
        )
    return out


def _within(ours: float, old: float) -> bool:
    """Issue 21's bound: at or below 1.0.8, or within max(1 ms, 10%) of it."""
    return ours <= old + max(1.0, 0.1 * old)


def _targets_21(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def target(what: str, goal: str, measured: str, met: bool | None) -> None:
        out.append({"target": what, "goal": goal, "measured": measured, "met": met})

    mixed = summary.get("mixed") or {}
    if OLD in mixed and OURS in mixed:
        for phase in ("quiet", "busy", "burst"):
            for key in ("p50_ms", "p99_ms"):
                ours, old = mixed[OURS][phase][key], mixed[OLD][phase][key]
                target(
                    f"Mixed traffic, {phase}, {key[:3]} (median of the runs)",
                    "<= 1.0.8 or within max(1 ms, 10%)",
                    f"{ours:.1f} vs {old:.1f} ms",
                    _within(ours, old),
                )
    t, t5 = summary["throughput"], summary.get("throughput_backlog5", {})
    for latency in ("0", "10", "50"):
        if latency in t.get(OURS, {}) and latency in t.get(OLD, {}):
            ratio = t[OURS][latency] / t[OLD][latency]
            target(
                f"Drain, 1 process, {latency} ms",
                ">= 1.5x 1.0.8",
                f"{t[OURS][latency]:.0f} vs {t[OLD][latency]:.0f}/s = {ratio:.2f}x",
                ratio >= 1.5,
            )
    ours_t = t.get(OURS, {})
    if "10" in ours_t and "50" in ours_t:
        target(
            "Drain at 10 ms not below the drain at 50 ms",
            "10 ms >= 50 ms",
            f"{ours_t['10']:.0f} vs {ours_t['50']:.0f}/s",
            ours_t["10"] >= ours_t["50"],
        )
    for latency in sorted(t5.get(OURS, {}), key=int):
        if latency in t5.get(OLD, {}):
            ratio = t5[OURS][latency] / t5[OLD][latency]
            target(
                f"Drain against a listen backlog of 5, {latency} ms",
                "no worse than 1.0.8",
                f"{t5[OURS][latency]:.0f} vs {t5[OLD][latency]:.0f}/s = {ratio:.2f}x",
                ratio >= 1.0,
            )
    idle = (mixed.get(OURS) or {}).get("idle")
    if idle:
        target(
            "Idle CPU, default configuration",
            "<= 0.3 ms per second",
            f"{idle['cpu_ms_per_s']:.2f} ms/s (1.0.8: "
            f"{mixed.get(OLD, {}).get('idle', {}).get('cpu_ms_per_s', float('nan')):.2f})",
            idle["cpu_ms_per_s"] <= 0.3,
        )
        target(
            "Idle RSS, default configuration",
            "<= 55 MB",
            f"{idle['rss_mb']:.1f} MB (1.0.8: "
            f"{mixed.get(OLD, {}).get('idle', {}).get('rss_mb', float('nan')):.1f})",
            idle["rss_mb"] <= 55,
        )
    for row in summary.get("reconcile") or []:
        target(
            f"Reconciliation of {row['servers']:,} deleted servers in one pass",
            "<= 100 MB peak RSS",
            f"{row['peak_rss_mb']:.1f} MB, {row['drain_per_second']}/s",
            row["peak_rss_mb"] <= 100 and row["deletions_sent"] == row["servers"],
        )
        target(
            "A pass with nothing new",
            "one listing request",
            f"{row['idle_nova_requests']} listing request(s)",
            row["idle_nova_requests"] == 1,
        )
    return out


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any], summary: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [
        f"Measured {m['date']} with `{results['command'].strip()}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, Python {m['python']}, RabbitMQ {m['rabbitmq']}, {m['nginx']}. "
        f"Load average before/after: {' '.join(results['load_before'])} / "
        f"{' '.join(results.get('load_after', []))}.",
        "",
        f"Versions: k2hr3-osnl {m['k2hr3-osnl']}; k2hr3_osnl {m['k2hr3_osnl (old)']} "
        f"(oslo.messaging {m['oslo.messaging (old venv)']} in its venv); oslo.messaging "
        f"{m['oslo.messaging']}, kombu {m['kombu']}, aiohttp {m.get('aiohttp', '?')}, "
        f"urllib3 {m['urllib3']}, requests {m['requests']}.",
        "",
        f"Backlog {s['count']:,} per drain; k2hr3-osnl prefetch {s['ours_prefetch']}, "
        f"batches of {s.get('ours_batch', '?')}, {s['ours_threads']} worker threads; "
        f"1.0.8 prefetch {s['old_prefetch']}, {s['old_threads']} threads.",
        "",
        "### Drain of a preloaded backlog",
        "",
        "| daemon | K2HR3 latency | listen backlog | deletions/s | CPU ms / notification "
        "| peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    drains = results.get("drain", [])
    for row in sorted(
        drains, key=lambda r: (bool(r.get("small_backlog")), r["latency_ms"], r["daemon"])
    ):
        lines.append(
            f"| {row['daemon']} | {row['latency_ms']} ms | "
            f"{5 if row.get('small_backlog') else 4096} | {row['per_second']:.0f} | "
            f"{row['cpu_ms']:.3f} | {row['peak_rss_mb']:.1f} |"
        )
    ceil = summary["ceilings"]
    lines += [
        "",
        "### Ceilings of this machine (same run)",
        "",
        f"a = bare oslo.messaging listener, one message per hand-off: "
        f"{_fmt(ceil['bare_listener_per_second'])}/s, "
        f"{_fmt(ceil['bare_listener_cpu_ms'], 3)} CPU-ms per message.",
        "",
        f"a' = bare batch listener, batches of {ceil.get('batch_size')}: "
        f"{_fmt(ceil.get('bare_batch_listener_per_second'))}/s, "
        f"{_fmt(ceil.get('bare_batch_listener_cpu_ms'), 3)} CPU-ms per message.",
        "",
        "| bare HTTP loop b | latency | calls/s | CPU ms / call | 1/(1/a+1/b) | 1/(1/a'+1/b) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, per_latency in ceil["bare_http"].items():
        if key.endswith("cpu_ms"):
            continue
        for latency, b in per_latency.items():
            unit = "tasks in one loop" if key.startswith("aiohttp") else "threads"
            lines.append(
                f"| {key} {unit} | {latency} ms | {b:.0f} | "
                f"{ceil['bare_http'][key + ' cpu_ms'][latency]:.3f} | "
                f"{_fmt(ceil['combined'].get(key, {}).get(latency))} | "
                f"{_fmt(ceil.get('combined_batch', {}).get(key, {}).get(latency))} |"
            )
    lines += [
        "",
        "### Memory and latency",
        "",
        "| daemon | backlog | peak RSS MB | RSS at 10,000 | RSS at the end | deletions/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for daemon, mem in summary["memory"].items():
        at = mem.get("rss_mb_at") or {}
        values = list(at.values())
        lines.append(
            f"| {daemon} | {mem['count']:,} | {mem['peak_rss_mb']:.1f} | "
            f"{_fmt(values[0] if values else None, 1)} | "
            f"{_fmt(values[-1] if values else None, 1)} | {mem['per_second']:.0f} |"
        )
    lines += [
        "",
        f"Publish -> K2HR3 answered, {s['rate']:.0f} notifications/s for "
        f"{s['rate_seconds']:.0f} s (the median of the runs):",
        "",
        "| daemon | K2HR3 latency | p50 ms | p99 ms | max ms | CPU ms / notification |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for daemon, per_latency in summary["steady"].items():
        for latency, st in per_latency.items():
            lines.append(
                f"| {daemon} | {latency} ms | {st['p50_ms']:.1f} | {st['p99_ms']:.1f} | "
                f"{st['max_ms']:.1f} | {_fmt(st.get('cpu_ms'), 3)} |"
            )
    mixed = summary.get("mixed")
    if mixed:
        spec = results["mixed"]
        lines += [
            "",
            "### Mixed traffic: the exposure window (issue 21)",
            "",
            f"{spec['runs']} runs of each daemon, in turns; K2HR3 answering in "
            f"{spec['latency_ms']} ms; one `port.delete.end` in 20 messages; delay from just "
            "before `Notifier.info()` to nginx receiving the DELETE. Medians over the runs "
            "of each run's p50 / p99, in ms:",
            "",
            "| phase | " + " | ".join(mixed) + " |",
            "|---|" + "---:|" * len(mixed),
        ]
        for phase in ("quiet", "busy", "burst"):
            cells = [f"{m[phase]['p50_ms']:.1f} / {m[phase]['p99_ms']:.1f}" for m in mixed.values()]
            lines.append(f"| {phase} | " + " | ".join(cells) + " |")
        cells = [
            f"{m['idle']['cpu_ms_per_s']:.2f} CPU-ms/s, {m['idle']['rss_mb']:.1f} MB, "
            f"{m['idle']['threads']:.0f} threads"
            if "idle" in m
            else "-"
            for m in mixed.values()
        ]
        lines.append(f"| idle, {spec['idle_seconds']:.0f} s | " + " | ".join(cells) + " |")
    for row in summary.get("reconcile") or []:
        lines += [
            "",
            f"### Reconciliation: {row['servers']:,} deleted servers in one pass",
            "",
            "| K2HR3 latency | deletions sent | deletions/s | pass wall time | peak RSS MB "
            "| Nova listing requests | idle pass: listing requests, peak RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {row['k2hr3_latency_ms']} ms | {row['deletions_sent']:,} | "
            f"{row['drain_per_second']} | {row['wall_seconds']} s | {row['peak_rss_mb']} | "
            f"{row['nova_requests']} | {row['idle_nova_requests']}, {row['idle_peak_rss_mb']} |",
        ]
    for title, rows in (
        ("Targets (issue 5)", summary["targets"]),
        ("Targets (issue 21)", summary.get("targets_21") or []),
    ):
        if not rows:
            continue
        lines += ["", f"### {title}", "", "| target | goal | measured | met |", "|---|---|---|---|"]
        for row in rows:
            met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
            lines.append(f"| {row['target']} | {row['goal']} | {row['measured']} | {met} |")
    return "\n".join(lines) + "\n"


def update_doc(path: Path, table: str) -> None:
    """Put ``table`` between the result markers of ``path`` (appended if there are none)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
