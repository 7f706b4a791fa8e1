"""Plot mixed.py's raw results: each run's p50 and p99 per phase, per daemon.

    .bench-venvs/plot/bin/python benchmarks/plot_mixed.py RESULTS.json OUTPUT.png

Run with the benchmark's own matplotlib venv (run.py makes it); every run is a point,
so one stall of the shared machine shows as one odd point, not as a shifted median.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PHASES = ("quiet", "busy", "burst")


def main(source: str, output: str) -> int:
    rows = json.loads(Path(source).read_text())["rows"]
    daemons = sorted({row["daemon"] for row in rows})
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    width = 0.8 / len(daemons)
    for axis, key, title in zip(axes, ("p50_ms", "p99_ms"), ("p50", "p99"), strict=True):
        for index, daemon in enumerate(daemons):
            mine = [row for row in rows if row["daemon"] == daemon]
            for phase_index, phase in enumerate(PHASES):
                values = sorted(row[phase][key] for row in mine)
                x = phase_index + (index - (len(daemons) - 1) / 2) * width
                axis.scatter([x] * len(values), values, s=14, color=f"C{index}", alpha=0.7)
                median = values[len(values) // 2]
                axis.hlines(median, x - width / 2.5, x + width / 2.5, color=f"C{index}")
            axis.plot([], [], "o", color=f"C{index}", label=daemon)
        axis.set_xticks(range(len(PHASES)), ["quiet\n10/s", "busy\n300/s", "burst\n4,000"])
        axis.set_yscale("log")
        axis.set_ylabel(f"{title}, ms (log)")
        axis.set_title(f"publish -> K2HR3 receives the DELETE, {title} (line: median)")
        axis.grid(axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
