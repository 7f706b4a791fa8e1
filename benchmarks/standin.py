"""The K2HR3 stand-in: nginx answering 204 to the Role API delete, logging every call.

Why nginx: it answers a DELETE in a few microseconds of its own CPU, in another process,
so it is never the bottleneck, and its access log is a record of every call that the
daemons cannot influence. The latency variants use ``echo_sleep`` from Debian's
``libnginx-mod-http-echo``: a timer in nginx's event loop, not a blocked worker, so one
nginx worker holds hundreds of slow calls at once at no CPU cost. (A Python stand-in
would share the two cores with the daemon under test and need threads or asyncio to
sleep per request; nginx needs neither.)

Each latency has its own path prefix: ``/v1/role`` answers at once, ``/l50/v1/role``
after 50 ms. The log line is ``<msec> <request_time> <status> <method> <uri>``;
``msec - request_time`` is when the request arrived, i.e. when the daemon called K2HR3.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
DEBIAN_PACKAGES = ("nginx", "nginx-common", "libnginx-mod-http-echo")
#: Where Debian's packages are unpacked when nginx is not installed: installing them
#: would start (and enable) an nginx on port 80 of a shared machine.
UNPACKED = Path(os.environ.get("K2HR3_BENCH_NGINX", "/tmp/k2hr3-osnl-bench-nginx"))

NGINX = "nginx"


def ensure_installed() -> None:
    """nginx and its echo module: the installed ones, or Debian's packages unpacked."""
    global NGINX, ECHO_MODULE
    if shutil.which("nginx") and os.path.exists(ECHO_MODULE):
        return
    binary = UNPACKED / "usr/sbin/nginx"
    module = UNPACKED / "usr/lib/nginx/modules/ngx_http_echo_module.so"
    if not (binary.exists() and module.exists()):
        download = UNPACKED.with_name(UNPACKED.name + "-debs")
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "-qq", *DEBIAN_PACKAGES], check=True, cwd=download)
        for deb in download.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(UNPACKED)], check=True)
    NGINX, ECHO_MODULE = str(binary), str(module)


def path_for(latency_ms: int) -> str:
    return "/v1/role" if latency_ms == 0 else f"/l{latency_ms}/v1/role"


_CONF = """\
load_module {module};
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon on;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp;
  proxy_temp_path {dir}/tmp;
  fastcgi_temp_path {dir}/tmp;
  uwsgi_temp_path {dir}/tmp;
  scgi_temp_path {dir}/tmp;
  log_format k2hr3 '$msec $request_time $status $request_method $request_uri';
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    access_log {dir}/access.log k2hr3 buffer=256k flush=200ms;
{locations}
  }}
  # The same K2HR3 behind a listen backlog of 5, as many are deployed: a client that
  # opens many connections at once loses SYNs here (each costs a 1 s retransmit).
  server {{
    listen 127.0.0.1:{small_port} backlog=5;
    access_log {dir}/access.log k2hr3 buffer=256k flush=200ms;
{locations}
  }}
}}
"""


@dataclass(frozen=True)
class Call:
    at: float  # when the request arrived (epoch seconds, ms resolution)
    done: float  # when the answer was sent
    status: int
    uri: str


class StandIn:
    def __init__(
        self, directory: Path, port: int, latencies_ms: Iterable[int], small_port: int = 0
    ) -> None:
        self.directory = directory
        self.port = port
        #: The port with a listen backlog of 5 (see :data:`_CONF`); 0: one is picked.
        self.small_port = small_port or _free_port()
        self.latencies_ms = sorted(set(latencies_ms))
        self.log = directory / "access.log"
        self._offset = 0

    def url(self, latency_ms: int, small_backlog: bool = False) -> str:
        port = self.small_port if small_backlog else self.port
        return f"http://127.0.0.1:{port}{path_for(latency_ms)}"

    def start(self) -> StandIn:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "tmp").mkdir(exist_ok=True)
        locations = []
        for ms in self.latencies_ms:
            if ms == 0:
                locations.append("    location = /v1/role { return 204; }")
            else:
                locations.append(
                    f"    location = {path_for(ms)} "
                    f"{{ echo_sleep {ms / 1000:.3f}; echo_status 204; }}"
                )
        conf = self.directory / "nginx.conf"
        conf.write_text(
            _CONF.format(
                module=ECHO_MODULE,
                dir=self.directory,
                port=self.port,
                small_port=self.small_port,
                locations="\n".join(locations),
            )
        )
        errors = str(self.directory / "error.log")
        prefix = str(self.directory)
        subprocess.run([NGINX, "-e", errors, "-c", str(conf), "-p", prefix], check=True)
        for _ in range(50):
            if (self.directory / "nginx.pid").exists():
                break
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        pid_file = self.directory / "nginx.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGQUIT)
            for _ in range(50):
                if not pid_file.exists():
                    break
                time.sleep(0.1)

    def pids(self) -> list[int]:
        """nginx's master and worker, to tell how much CPU the stand-in itself used."""
        master = int((self.directory / "nginx.pid").read_text())
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return [master, *map(int, children)]

    def mark(self) -> None:
        """Later :meth:`new_calls` return only calls logged after this point."""
        time.sleep(0.5)  # let nginx flush what is buffered
        self._offset = self.log.stat().st_size if self.log.exists() else 0

    def new_calls(self) -> Iterator[Call]:
        """Calls logged since the last :meth:`mark` or :meth:`new_calls`, whole lines only."""
        if not self.log.exists():
            return
        with self.log.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].decode().splitlines():
            msec, request_time, status, _method, uri = line.split(" ", 4)
            yield Call(float(msec) - float(request_time), float(msec), int(status), uri)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(uri: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(uri).query))
