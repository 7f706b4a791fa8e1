"""Profile a daemon while it drains a backlog: py-spy on the live process, then a summary.

    /work/venv/bin/python benchmarks/profile.py [--old] [--latency MS] [--count N]

The same drain as run.py (nginx stand-in, preloaded pool queue); py-spy attaches to the
daemon once it starts and samples, at 250 Hz, only the thread holding the GIL
(``--gil``): with one core's worth of Python, that is where the CPU goes. The raw
profile is kept in benchmarks/results/ and summarised by profile_summary.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import daemons  # noqa: E402
import measure  # noqa: E402
import standin  # noqa: E402
from backlog import Broker  # noqa: E402
from run import URL, _free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", action="store_true", help="profile k2hr3_osnl 1.0.8")
    parser.add_argument("--latency", type=int, default=0, help="K2HR3 latency, ms")
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--venvs", type=Path, default=Path("/work/bench-venvs"))
    args = parser.parse_args()
    standin.ensure_installed()
    py_spy = daemons.ensure_venv(args.venvs / "profile", ["py-spy"]).parent / "py-spy"
    spec = daemons.old(args.venvs) if args.old else daemons.ours()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = HERE / "results" / f"profile-{stamp}"
    output = workdir / f"{spec.name}-{args.latency}ms.raw"
    workdir.mkdir(parents=True, exist_ok=True)
    stand = standin.StandIn(workdir / "nginx", _free_port(), [args.latency]).start()
    broker = Broker(URL, f"bench_x_{stamp}", "bench_notifications")
    spies: list[subprocess.Popen[bytes]] = []

    def attach(pid: int) -> None:
        command = [str(py_spy), "record", "--pid", str(pid), "--rate", "250", "--gil"]
        command += ["--nonblocking", "--format", "raw", "--output", str(output)]
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))

    try:
        found = measure.drain(spec, broker, stand, args.latency, args.count, workdir, attach=attach)
    finally:
        for spy in spies:
            spy.wait(60)
        stand.stop()
        broker.close()
    print(json.dumps(found, indent=1))
    subprocess.run([sys.executable, str(HERE / "profile_summary.py"), str(output)], check=True)
    print(f"raw profile: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
