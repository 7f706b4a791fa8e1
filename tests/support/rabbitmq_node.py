"""RabbitMQ nodes of a test's own, beside the machine's broker on 5672 and never touching it.

Each :class:`Node` has its own name, AMQP port, Erlang distribution port, data and log
directories, configuration, enabled-plugins file and (through ``HOME``) its own Erlang
cookie, so starting, killing or clustering it changes nothing for anyone else on the
machine. The scripts are called from ``/usr/lib/rabbitmq/bin`` directly: the Debian
wrappers in ``/usr/sbin`` would switch to the ``rabbitmq`` user and the machine's
settings in ``/etc/rabbitmq``.

- :meth:`Node.start` / :meth:`Node.stop` / :meth:`Node.kill`, :meth:`Node.ctl` runs
  ``rabbitmqctl`` against it;
- :func:`running` starts nodes (clustered, if more than one) and always stops them,
  even when the test fails; module-scoped fixtures wrap it, because a node takes
  seconds to boot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from support.scrape import free_port

SBIN = Path("/usr/lib/rabbitmq/bin")
HOST = "localhost"
#: Seconds a node may take to boot on a busy 2-core machine.
BOOT_TIMEOUT = 120.0


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Node:
    """One RabbitMQ node under ``base``; ``conf`` is added to its ``rabbitmq.conf``."""

    def __init__(
        self,
        base: Path,
        name: str,
        *,
        home: Path,
        conf: str = "",
        plugins: Sequence[str] = (),
        tls_port: int | None = None,
    ) -> None:
        self.base = base
        self.name = name
        #: Holds the Erlang cookie; nodes of one cluster (and rabbitmqctl) share it.
        self.home = home
        self.port = free_port()
        self.dist_port = free_port()
        self.tls_port = tls_port
        self.conf = conf
        self.plugins = tuple(plugins)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def nodename(self) -> str:
        return f"{self.name}@{HOST}"

    @property
    def log_file(self) -> Path:
        return self.base / "log" / f"{self.nodename}.log"

    def env(self) -> dict[str, str]:
        """What makes this node (and rabbitmqctl talking to it) its own."""
        return {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            # Not /etc/rabbitmq/rabbitmq-env.conf, which names the machine's node.
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            # rabbitmqctl's own distribution ports: a range nobody else's CLI uses.
            "RABBITMQ_CTL_DIST_PORT_MIN": "35700",
            "RABBITMQ_CTL_DIST_PORT_MAX": "35799",
        }

    def write_files(self, peers: Sequence[Node] = ()) -> None:
        (self.base / "log").mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq-env.conf").write_text("")
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            "loopback_users = none",
            # The machine's disk is shared: never stop publishers for its free space.
            "disk_free_limit.absolute = 1MB",
            "log.console = false",
            "log.file.level = info",
        ]
        if peers:
            # Join the first peer on first boot: faster than join_cluster round trips.
            lines.append("cluster_formation.peer_discovery_backend = classic_config")
            lines += [
                f"cluster_formation.classic_config.nodes.{i} = {peer.nodename}"
                for i, peer in enumerate(peers, 1)
            ]
        (self.base / "rabbitmq.conf").write_text("\n".join([*lines, self.conf, ""]))
        (self.base / "enabled_plugins").write_text(f"[{','.join(self.plugins)}].\n")

    def start(self, wait: bool = True) -> Node:
        assert not self.alive, f"{self.nodename} is already running"
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "server.out", "ab") as out:
            # Its own session: kill() reaches the shell script and the Erlang VM at once.
            self.process = subprocess.Popen(
                [str(SBIN / "rabbitmq-server")],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        if wait:
            self.wait_up()
        return self

    def wait_up(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until the AMQP port listens (it opens last, once the node has booted)."""
        deadline = time.monotonic() + timeout
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        while not all(_listening(port) for port in ports):
            if not self.alive:
                raise RuntimeError(self.report(f"{self.nodename} exited while booting"))
            if time.monotonic() > deadline:
                raise RuntimeError(self.report(f"{self.nodename} not up after {timeout:.0f}s"))
            time.sleep(0.2)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 60, tool: str = "rabbitmqctl"
    ) -> str:
        """``rabbitmqctl -n NODE ARGS`` (or another CLI ``tool``); its output, or an error."""
        result = subprocess.run(
            [str(SBIN / tool), "-q", "-n", self.nodename, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} on {self.nodename}: exit {result.returncode}: "
                f"{result.stdout.strip()} {result.stderr.strip()}"
            )
        return result.stdout

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (``rabbitmqctl stop``), SIGKILL if it does not come."""
        if not self.alive:
            return
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.ctl("stop", timeout=timeout)
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """The node dies at once, as on a power loss: SIGKILL to its whole session."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def amqp_url(self, user: str, password: str, vhost: str = "/", scheme: str = "amqp") -> str:
        """kombu's ``amqp://`` URL, or oslo.messaging's with ``scheme="rabbit"``."""
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}/{_quote(vhost)}"

    def report(self, what: str, tail: int = 40) -> str:
        text = ""
        for path in (self.base / "server.out", self.log_file):
            if path.exists():
                lines = path.read_text("utf-8", "replace").splitlines()[-tail:]
                text += f"\n--- {path} ---\n" + "\n".join(lines)
        return what + text


def _quote(vhost: str) -> str:
    return "%2F" if vhost == "/" else vhost.replace("/", "%2F")


def make_nodes(
    base: Path, count: int, *, conf: str = "", plugins: Sequence[str] = (), tls: bool = False
) -> list[Node]:
    """``count`` nodes with unique names under ``base``, sharing one cookie."""
    prefix = f"k2hr3t{uuid.uuid4().hex[:8]}"
    home = base / "home"
    nodes: list[Node] = []
    for index in range(count):
        tls_port = free_port() if tls else None
        node_conf = conf.replace("{tls_port}", str(tls_port)) if tls_port else conf
        nodes.append(
            Node(
                base / f"node{index}",
                f"{prefix}-{index}",
                home=home,
                conf=node_conf,
                plugins=plugins,
                tls_port=tls_port,
            )
        )
    return nodes


@contextlib.contextmanager
def running(nodes: Sequence[Node]) -> Iterator[Sequence[Node]]:
    """Start ``nodes`` (the first alone, the others joining it) and always stop them."""
    try:
        first, *others = nodes
        for node in nodes:
            node.write_files(peers=[first] if node is not first else [])
        first.start()
        for node in others:
            node.start(wait=False)
        for node in others:
            node.wait_up()
        if others:
            wait_clustered(first, len(nodes))
        yield nodes
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.stop(timeout=30)
            node.kill()


def wait_clustered(node: Node, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        text = node.ctl("eval", "length(rabbit_nodes:all_running()).", check=False).strip()
        if text == str(count):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(node.report(f"{count} nodes not clustered: {text!r} running"))
        time.sleep(0.5)
