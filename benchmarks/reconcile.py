"""What one reconciliation costs: 10,000 deleted servers in 20 pages, then an idle pass.

Run by hand, never in CI (docs/benchmarks.md, "Reconciliation")::

    .venv/bin/python benchmarks/reconcile.py [--servers 10000] [--page-size 500]

For each K2HR3 latency (0 and 50 ms, nginx as in the other benchmarks, see standin.py),
a fresh state directory and the real command, ``k2hr3-osnl reconcile``, which runs the
daemon's own pass (Reconciler -> Handler -> RoleClient) once:

- **peak RSS** of that process (its ``VmHWM``): a pass keeps one page of
  servers at a time, so it must stay flat however many servers Nova lists;
- **drain speed**: deletions per second between the first and the last call nginx
  logged, to compare with the notification path's drain in the same document;
- **Nova requests**: ``GET /servers/detail`` per pass, and again for an idle pass right
  after (nothing deleted since the checkpoint): one request per page.

The OpenStack stand-in (tests/support/openstack_standin.py) runs in this process; it
answers the 21 listing requests, not the 10,000 deletions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

from standin import StandIn, ensure_installed  # noqa: E402
from support.openstack_standin import OpenStackStandIn  # noqa: E402

NGINX_PORT = 18741
DETAIL = "/compute/v2.1/servers/detail"


def write_config(directory: Path, api_url: str, cloud: OpenStackStandIn, page_size: int) -> Path:
    credentials = "\n".join(f"{k} = {v}" for k, v in cloud.credentials(timeout=60).items())
    path = directory / "k2hr3-osnl.conf"
    path.write_text(
        f"""[DEFAULT]
log_file = {directory / "k2hr3-osnl.log"}
# Required of every configuration; a pass by hand never connects to it.
[oslo_messaging_notifications]
transport_url = rabbit://guest:guest@127.0.0.1:5672/
[k2hr3]
api_url = {api_url}
state_dir = {directory / "state"}
[reconcile]
enabled = true
page_size = {page_size}
[service_credentials]
{credentials}
""",
        encoding="utf-8",
    )
    return path


def one_pass(config: Path) -> tuple[int, float, float]:
    """``k2hr3-osnl reconcile``: exit status, wall seconds, peak RSS in MB.

    The peak is the process's own ``VmHWM``, read every 20 ms until it exits (Popen
    returns once the child has exec'd, so every reading is the command's): the
    ``ru_maxrss`` of ``wait4`` also counts what the forked child shared with this
    process (the stand-in's servers) before it exec'd the command.
    """
    command = [str(ROOT / ".venv" / "bin" / "k2hr3-osnl"), "-c", str(config), "reconcile"]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_kb = 0
    status_file = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.02)
    wall = time.monotonic() - started
    if process.returncode != 0:
        assert process.stderr is not None
        print(process.stderr.read().decode(), file=sys.stderr)
    return process.returncode, wall, peak_kb / 1024


def measure(latency_ms: int, servers: int, page_size: int, nginx: StandIn) -> dict[str, object]:
    cloud = OpenStackStandIn().start()
    try:
        deleted_at = time.time() - 3600
        for _ in range(servers):
            cloud.delete(cloud.create(project=f"p{_ % 50}"), when=deleted_at)
        with tempfile.TemporaryDirectory(prefix="k2hr3-osnl-reconcile-") as tmp:
            config = write_config(Path(tmp), nginx.url(latency_ms), cloud, page_size)
            nginx.mark()
            status, wall, rss = one_pass(config)
            time.sleep(0.5)  # nginx flushes its log every 200 ms
            calls = [c for c in nginx.new_calls() if c.status == 204]
            listing = cloud.count(DETAIL)
            cloud.requests.clear()
            idle_status, idle_wall, idle_rss = one_pass(config)
            idle_listing = cloud.count(DETAIL)
    finally:
        cloud.stop()
    span = max(c.at for c in calls) - min(c.at for c in calls) if len(calls) > 1 else 0.0
    return {
        "k2hr3_latency_ms": latency_ms,
        "servers": servers,
        "page_size": page_size,
        "exit_status": status,
        "deletions_sent": len(calls),
        "wall_seconds": round(wall, 2),
        "drain_per_second": round(len(calls) / span) if span else None,
        "peak_rss_mb": round(rss, 1),
        "nova_requests": listing,
        "idle_exit_status": idle_status,
        "idle_wall_seconds": round(idle_wall, 2),
        "idle_peak_rss_mb": round(idle_rss, 1),
        "idle_nova_requests": idle_listing,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--latency", type=int, action="append", help="ms (default: 0 and 50)")
    args = parser.parse_args()
    latencies = args.latency or [0, 50]
    ensure_installed()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="k2hr3-osnl-nginx-") as tmp:
        nginx = StandIn(Path(tmp), NGINX_PORT, latencies).start()
        try:
            results = [measure(ms, args.servers, args.page_size, nginx) for ms in latencies]
        finally:
            nginx.stop()
    print(
        json.dumps(
            {
                "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "commit": commit,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": os.cpu_count(),
                "results": results,
            },
            indent=1,
        )
    )
    return 0 if all(r["exit_status"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
