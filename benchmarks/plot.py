"""Throughput against K2HR3 latency, for each daemon, from one raw results file.

python plot.py RESULTS.json OUT.png     (run by run.py in a venv with matplotlib)
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {
    "k2hr3_osnl 1.0.8": ("tab:gray", "o", "--"),
    "k2hr3-osnl": ("tab:blue", "s", "-"),
    "k2hr3-osnl, 2 workers": ("tab:green", "^", "-"),
}


def main(source: str, target: str) -> int:
    with open(source) as raw:
        results = json.load(raw)
    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in results["drain"]:
        if not row.get("small_backlog"):  # the listen-backlog-5 drains are a table of their own
            series[row["daemon"]][row["latency_ms"]].append(row["per_second"])
    figure, axes = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for daemon, points in series.items():
        latencies = sorted(points)
        values = [statistics.median(points[x]) for x in latencies]
        color, marker, dash = STYLE.get(daemon, ("tab:red", "x", ":"))
        axes.plot(latencies, values, dash, color=color, marker=marker, label=daemon)
        below = daemon.endswith("1.0.8")  # its labels go under its points
        for x, y in zip(latencies, values, strict=True):
            axes.annotate(
                f"{y:.0f}",
                (x, y),
                textcoords="offset points",
                xytext=(0, -13 if below else 6),
                ha="center",
                fontsize=8,
                color=color,
            )
    listener = results.get("ceilings", {}).get("listener", [])
    http = [
        r
        for r in results.get("ceilings", {}).get("http", [])
        if r["library"] == "requests"
        and r["latency_ms"] == 0
        and r["threads"] == results["settings"]["ours_threads"]
    ]
    if listener and http:
        a = statistics.median(r["per_second"] for r in listener)
        b = http[0]["per_second"]
        axes.axhline(
            1 / (1 / a + 1 / b),
            color="tab:orange",
            linewidth=0.8,
            linestyle=":",
            label=f"ceiling at 0 ms, 1/(1/listener + 1/requests): {1 / (1 / a + 1 / b):.0f}/s",
        )
    axes.set_xlabel("K2HR3 latency (ms)")
    axes.set_ylabel("deletions per second (drain of a backlog)")
    axes.set_title(
        f"Drain throughput, {results['settings']['count']:,} notifications, "
        f"{results['machine']['cores']} cores"
    )
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
