"""A real HTTP server that answers like Keystone v3, Nova v2.1 and Neutron v2.0, enough for us.

It is what keystoneauth1 and the daemon really talk to in the tests: version discovery
on ``/`` and ``/v3``, ``POST /v3/auth/tokens`` with a password (201, ``X-Subject-Token``
and a catalog; 401 for a wrong password), and 401 on Nova or Neutron without a valid
token. Nova's ``GET /servers/detail`` follows Nova's own rules:

- without ``all_tenants``, only the token's project; ``all_tenants`` needs the admin role;
- ``changes-since`` (ISO 8601, 400 otherwise) keeps servers updated at or after it, and
  includes deleted ones; ``deleted=True`` keeps only deleted ones, soft-deleted included
  (Nova's database query does the same);
- ``limit`` (at most :attr:`OpenStackStandIn.max_limit`) and ``marker`` page the result,
  newest first, and a full page carries ``servers_links`` with ``rel: next``; an unknown
  marker is a 400.

``GET /servers/{id}`` and Neutron's ``GET /v2.0/ports/{id}`` answer 404 for what is
deleted or unknown; ``GET /v2.0/ports?device_id=`` lists a device's ports with their
fixed IPs, scoped to the token's project as Neutron's policy does (an admin sees all).

Nova has cells and a clock of its own, as a real one does:

- every answer's ``Date`` header is Nova's time, :meth:`OpenStackStandIn.now`, which
  :attr:`OpenStackStandIn.clock_offset` puts ahead of (or behind) ours; servers are
  stamped ``updated`` by that clock;
- a server lives in a cell (:attr:`OpenStackStandIn.cells`: cell -> its compute hosts);
  while a cell is in :attr:`OpenStackStandIn.down_cells`, a deleted-server listing
  leaves its servers out without a word (filters and paging: even 2.69 gives no partial
  constructs), and ``GET /os-services`` (admin only) leaves its nova-compute services
  out below microversion 2.69 and lists them as ``{"binary", "host", "status":
  "UNKNOWN"}`` from 2.69 on;
- a microversion above :attr:`OpenStackStandIn.max_microversion` is a 406.

:attr:`OpenStackStandIn.fail_with` makes Nova answer that status,
:meth:`OpenStackStandIn.stop` makes everything unreachable, and :attr:`requests` records
each request's method and path.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

USERNAME, PASSWORD = "k2hr3-osnl", "s3cret-pass"
PROJECT, ADMIN_PROJECT = "demo", "admin"
REGION = "RegionOne"


@dataclass
class Server:
    id: str
    project_id: str
    status: str = "ACTIVE"
    updated: float = field(default_factory=time.time)
    ports: list[str] = field(default_factory=list)
    cell: str = "cell1"

    @property
    def deleted(self) -> bool:
        return self.status in ("DELETED", "SOFT_DELETED")

    def to_json(self, base: str) -> dict[str, Any]:
        # Roughly what Nova sends, so that page sizes in the benchmark are honest.
        stamp = _iso(self.updated)
        return {
            "id": self.id,
            "name": f"vm-{self.id[:8]}",
            "status": self.status,
            "tenant_id": self.project_id,
            "user_id": "0" * 32,
            "created": stamp,
            "updated": stamp,
            "hostId": "f" * 56,
            "image": {"id": "70a599e0-31e7-49b7-b260-868f441e862b"},
            "flavor": {"id": "1"},
            "addresses": {},
            "metadata": {},
            "links": [{"rel": "self", "href": f"{base}/servers/{self.id}"}],
            "OS-EXT-STS:vm_state": self.status.lower(),
            "OS-EXT-STS:task_state": None,
            "OS-EXT-SRV-ATTR:host": "compute-1",
            "accessIPv4": "",
            "accessIPv6": "",
        }


class OpenStackStandIn:
    def __init__(self, max_limit: int = 1000) -> None:
        self.max_limit = max_limit
        self.servers: dict[str, Server] = {}
        self.ports: dict[str, str] = {}  # port id -> device id, while the port exists
        #: Nova answers this status to everything while set (None: it works).
        self.fail_with: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.tokens: dict[str, str] = {}  # token -> project
        #: Seconds Nova's clock is ahead of ours (negative: behind).
        self.clock_offset = 0.0
        #: Nova's cells and the compute hosts of each.
        self.cells: dict[str, list[str]] = {"cell1": ["compute-1", "compute-2"]}
        #: Cells Nova cannot reach now.
        self.down_cells: set[str] = set()
        #: The highest compute microversion this Nova knows.
        self.max_microversion = (2, 95)
        #: GET /os-services alone answers this status while set (a cell database timing out).
        self.services_fail_with: int | None = None
        #: Whether answers carry a Date header (a proxy may strip it).
        self.send_date = True
        #: The microversion each GET /os-services asked for, in order.
        self.services_microversions: list[tuple[int, int]] = []
        self.port_ips: dict[str, list[str]] = {}  # port id -> its fixed IPs
        #: Neutron shows an admin every project's ports (False: only its own, as a
        #: policy that is narrower than Nova's would).
        self.neutron_sees_all = True
        #: Keystone answers this status to token requests while set (None: it works).
        self.keystone_fails_with: int | None = None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # The cloud's state, changed by the tests.

    def now(self) -> float:
        """What time it is in Nova."""
        return time.time() + self.clock_offset

    def create(self, project: str = PROJECT, ports: int = 0, cell: str = "cell1") -> Server:
        server = Server(str(uuid.uuid4()), project, updated=self.now(), cell=cell)
        with self._lock:
            self.servers[server.id] = server
            for _ in range(ports):
                port_id = str(uuid.uuid4())
                server.ports.append(port_id)
                self.ports[port_id] = server.id
        return server

    def delete(self, server: Server, soft: bool = False, when: float | None = None) -> None:
        """Delete ``server`` now, or at ``when`` by Nova's clock."""
        with self._lock:
            server.status = "SOFT_DELETED" if soft else "DELETED"
            server.updated = self.now() if when is None else when
            if not soft:
                for port_id in server.ports:
                    self.ports.pop(port_id, None)

    def delete_port(self, port_id: str) -> None:
        with self._lock:
            self.ports.pop(port_id, None)
            self.port_ips.pop(port_id, None)

    def add_port(self, server: Server, *ips: str) -> str:
        """A port of ``server`` holding ``ips``; returns its id."""
        port_id = str(uuid.uuid4())
        with self._lock:
            server.ports.append(port_id)
            self.ports[port_id] = server.id
            self.port_ips[port_id] = list(ips)
        return port_id

    # The server.

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/v3"

    def credentials(self, **overrides: object) -> dict[str, object]:
        """A ``[service_credentials]`` section for this stand-in."""
        return {
            "auth_type": "password",
            "auth_url": self.auth_url,
            "username": USERNAME,
            "password": PASSWORD,
            "user_domain_name": "Default",
            "project_name": ADMIN_PROJECT,
            "project_domain_name": "Default",
            "region_name": REGION,
            "interface": "internal",
            "timeout": 5,
            **overrides,
        }

    def start(self, port: int = 0) -> OpenStackStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                standin._handle(self, "GET")

            def do_POST(self) -> None:
                standin._handle(self, "POST")

            def log_message(self, *args: object) -> None:
                pass

            def send_header(self, keyword: str, value: str) -> None:
                if keyword != "Date" or standin.send_date:
                    super().send_header(keyword, value)

            def date_time_string(self, timestamp: float | None = None) -> str:
                # Nova's clock, not ours, in the Date header of every answer.
                return super().date_time_string(standin.now() if timestamp is None else timestamp)

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.request_queue_size = 128
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for _, path in self.requests if path.startswith(prefix))

    # Requests.

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(request.path)
        with self._lock:
            self.requests.append((method, url.path))
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        status, payload, headers = self._route(method, url, request.headers, body)
        data = json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _route(
        self, method: str, url: urllib.parse.SplitResult, headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        path = url.path.rstrip("/")
        if method == "GET" and path == "":
            return 300, {"versions": {"values": [self._version()]}}, {}
        if method == "GET" and path == "/v3":
            return 200, {"version": self._version()}, {}
        if method == "POST" and path == "/v3/auth/tokens":
            if self.keystone_fails_with is not None:
                return self.keystone_fails_with, {"error": {"code": self.keystone_fails_with}}, {}
            return self._issue(body)
        if path.startswith("/compute") or path.startswith("/network"):
            project = self.tokens.get(headers.get("X-Auth-Token") or "")
            if project is None:
                return 401, {"error": {"code": 401, "message": "Unauthorized"}}, {}
            if path.startswith("/compute"):
                if self.fail_with is not None:
                    return self.fail_with, {"computeFault": {"code": self.fail_with}}, {}
                microversion = _microversion(headers, self.max_microversion)
                if microversion is None:
                    return 406, {"computeFault": {"code": 406, "message": "Version"}}, {}
                if path.removeprefix("/compute").removeprefix("/v2.1") == "/os-services":
                    return self._services(urllib.parse.parse_qs(url.query), project, microversion)
                return self._nova(path.removeprefix("/compute"), url.query, project)
            if path.removeprefix("/network") == "/v2.0/ports":
                return self._port_list(urllib.parse.parse_qs(url.query), project)
            return self._neutron(path.removeprefix("/network"))
        return 404, {"error": "not found"}, {}

    def _version(self) -> dict[str, Any]:
        return {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.auth_url}/"}],
            "media-types": [
                {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
            ],
        }

    def _issue(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            auth = json.loads(body)["auth"]
            user = auth["identity"]["password"]["user"]
            project = auth["scope"]["project"]["name"]
        except (ValueError, KeyError, TypeError):
            return 400, {"error": {"code": 400, "message": "bad auth request"}}, {}
        if user.get("name") != USERNAME or user.get("password") != PASSWORD:
            return 401, {"error": {"code": 401, "message": "invalid credentials"}}, {}
        token = uuid.uuid4().hex
        with self._lock:
            self.tokens[token] = project
        roles = [{"name": "admin"}] if project == ADMIN_PROJECT else [{"name": "member"}]
        catalog = [
            self._service("compute", "nova", "/compute/v2.1"),
            self._service("network", "neutron", "/network"),
            self._service("identity", "keystone", "/v3"),
        ]
        expires = _iso(time.time() + 3600)
        payload = {
            "token": {
                "methods": ["password"],
                "expires_at": expires,
                "issued_at": _iso(time.time()),
                "user": {"id": "u1", "name": USERNAME, "domain": {"id": "default"}},
                "project": {"id": project, "name": project, "domain": {"id": "default"}},
                "roles": roles,
                "catalog": catalog,
            }
        }
        return 201, payload, {"X-Subject-Token": token}

    def _service(self, kind: str, name: str, path: str) -> dict[str, Any]:
        return {
            "type": kind,
            "name": name,
            "id": name,
            "endpoints": [
                {
                    "id": f"{name}-{i}",
                    "interface": i,
                    "region": REGION,
                    "region_id": REGION,
                    "url": f"{self.url}{path}",
                }
                for i in ("public", "internal", "admin")
            ],
        }

    def _nova(self, path: str, query: str, project: str) -> tuple[int, Any, dict[str, str]]:
        base = f"{self.url}/compute/v2.1"
        if path in ("", "/v2.1"):
            return 200, {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.95"}}, {}
        path = path.removeprefix("/v2.1")
        if path == "/servers/detail":
            return self._list(urllib.parse.parse_qs(query), project, base)
        if path.startswith("/servers/"):
            server = self.servers.get(path.removeprefix("/servers/"))
            if server is None or server.status == "DELETED":
                return 404, {"itemNotFound": {"code": 404, "message": "not found"}}, {}
            return 200, {"server": server.to_json(base)}, {}
        return 404, {"itemNotFound": {"code": 404}}, {}

    def _list(
        self, params: dict[str, list[str]], project: str, base: str
    ) -> tuple[int, Any, dict[str, str]]:
        def one(name: str) -> str | None:
            return params[name][-1] if name in params else None

        with self._lock:
            # A down cell's servers are left out, without a word.
            servers = [s for s in self.servers.values() if s.cell not in self.down_cells]
        if _true(one("all_tenants")):
            if project != ADMIN_PROJECT:
                return 403, {"forbidden": {"code": 403, "message": "all_tenants"}}, {}
        else:
            servers = [s for s in servers if s.project_id == project]
        since_text = one("changes-since")
        deleted = one("deleted")
        if since_text is not None:
            try:
                since = _parse(since_text)
            except ValueError:
                return 400, {"badRequest": {"code": 400, "message": "changes-since"}}, {}
            servers = [s for s in servers if s.updated >= since]
        if deleted is not None and _true(deleted):
            servers = [s for s in servers if s.deleted]
        elif deleted is not None or since_text is None:
            servers = [s for s in servers if not s.deleted]
        servers.sort(key=lambda s: (-s.updated, s.id))
        marker = one("marker")
        if marker is not None:
            ids = [s.id for s in servers]
            if marker not in ids:
                return 400, {"badRequest": {"code": 400, "message": "marker not found"}}, {}
            servers = servers[ids.index(marker) + 1 :]
        limit = min(int(one("limit") or self.max_limit), self.max_limit)
        page = servers[:limit]
        body: dict[str, Any] = {"servers": [self._addressed(s, s.to_json(base)) for s in page]}
        if len(page) == limit and page:
            query = {k: v[-1] for k, v in params.items() if k != "marker"}
            query["marker"] = page[-1].id
            href = f"{base}/servers/detail?{urllib.parse.urlencode(query)}"
            body["servers_links"] = [{"rel": "next", "href": href}]
        return 200, body, {}

    def _services(
        self, params: dict[str, list[str]], project: str, microversion: tuple[int, int]
    ) -> tuple[int, Any, dict[str, str]]:
        """``GET /os-services``: a down cell's computes are UNKNOWN from 2.69 on."""
        with self._lock:
            self.services_microversions.append(microversion)
        if self.services_fail_with is not None:
            code = self.services_fail_with
            return code, {"computeFault": {"code": code, "message": "Unexpected API Error."}}, {}
        if project != ADMIN_PROJECT:
            message = "Policy doesn't allow os_compute_api:os-services:list to be performed."
            return 403, {"forbidden": {"code": 403, "message": message}}, {}
        services: list[dict[str, Any]] = [
            {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, "conductor")), "binary": "nova-conductor",
             "host": "controller-1", "state": "up", "status": "enabled", "zone": "internal",
             "updated_at": self._heartbeat(), "disabled_reason": None, "forced_down": False}
        ]  # fmt: skip
        for cell, hosts in sorted(self.cells.items()):
            for host in hosts:
                if cell in self.down_cells:
                    if microversion >= (2, 69):
                        services.append(
                            {"binary": "nova-compute", "host": host, "status": "UNKNOWN"}
                        )
                    continue
                services.append(
                    {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, host)), "binary": "nova-compute",
                     "host": host, "state": "up", "status": "enabled", "zone": "nova",
                     "updated_at": self._heartbeat(), "disabled_reason": None,
                     "forced_down": False}
                )  # fmt: skip
        binary = params.get("binary", [""])[-1]
        if binary:
            services = [s for s in services if s["binary"] == binary]
        version = f"compute {microversion[0]}.{microversion[1]}"
        return 200, {"services": services}, {"OpenStack-API-Version": version}

    def _heartbeat(self) -> str:
        """A service's last report, a few seconds ago by Nova's clock, as Nova writes it."""
        stamp = datetime.datetime.fromtimestamp(self.now() - 3, datetime.UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")

    def _neutron(self, path: str) -> tuple[int, Any, dict[str, str]]:
        if path.startswith("/v2.0/ports/"):
            port_id = path.removeprefix("/v2.0/ports/")
            with self._lock:
                device = self.ports.get(port_id)
            if device is None:
                return 404, {"NeutronError": {"type": "PortNotFound"}}, {}
            return 200, {"port": {"id": port_id, "device_id": device}}, {}
        return 404, {"NeutronError": {"type": "HTTPNotFound"}}, {}

    def _addressed(self, server: Server, body: dict[str, Any]) -> dict[str, Any]:
        """Nova's ``addresses`` (from its network cache): the IPs of the server's ports."""
        with self._lock:
            ips = [ip for port in server.ports for ip in self.port_ips.get(port, [])]
        if ips:
            body["addresses"] = {"private": [{"version": 4, "addr": ip} for ip in ips]}
        return body

    def _port_list(
        self, params: dict[str, list[str]], project: str
    ) -> tuple[int, Any, dict[str, str]]:
        """``GET /v2.0/ports``: the ports the token's project may see, by ``device_id``;
        an admin sees every project's (unless :attr:`neutron_sees_all` is off)."""
        device = params.get("device_id", [None])[-1]
        limit = int(params.get("limit", ["0"])[-1] or 0)
        with self._lock:
            found = []
            for port_id, device_id in self.ports.items():
                server = self.servers.get(device_id)
                owner = server.project_id if server else project
                if owner != project and not (project == ADMIN_PROJECT and self.neutron_sees_all):
                    continue
                if device is not None and device_id != device:
                    continue
                found.append(
                    {
                        "id": port_id,
                        "device_id": device_id,
                        "device_owner": "compute:nova",
                        "project_id": owner,
                        "tenant_id": owner,
                        "fixed_ips": [
                            {"subnet_id": "s1", "ip_address": ip}
                            for ip in self.port_ips.get(port_id, [])
                        ],
                    }
                )
        return 200, {"ports": found[:limit] if limit else found}, {}


def _microversion(headers: Any, highest: tuple[int, int]) -> tuple[int, int] | None:
    """The compute microversion a request asks for (2.1 without one); None: too high."""
    text = ""
    for value in headers.get_all("OpenStack-API-Version") or []:
        service, _, version = value.strip().partition(" ")
        if service.lower() == "compute":
            text = version.strip()
    text = text or (headers.get("X-OpenStack-Nova-API-Version") or "").strip()
    if not text:
        return (2, 1)
    if text.lower() == "latest":
        return highest
    major, _, minor = text.partition(".")
    wanted = (int(major), int(minor or 0))
    return wanted if wanted <= highest else None


def _true(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


def _parse(text: str) -> float:
    stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _iso(when: float) -> str:
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
