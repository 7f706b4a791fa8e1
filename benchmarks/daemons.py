"""The two daemons under test, each with a config file that asks the same of it.

Both listen on the same pool queue design (queue ``<pool>`` bound to
``<exchange>/<topic>.info``), log one line per deletion at ``info`` to a file, and call
the same stand-in URL. What differs is what each can be told:

- k2hr3_osnl 1.0.8 builds its transport from oslo.config's global ``CONF``, which it
  never parses: it ignores ``[oslo_messaging_rabbit]`` and ``executor_thread_pool_size``
  in its file, so it runs with oslo.messaging's defaults, unlimited prefetch and 64
  worker threads. It listens on one exchange and one topic only, and retries
  (``max_retries``, ``retry_interval_seconds``) only on socket timeouts, which a
  stand-in answering 204 never causes.
- k2hr3-osnl reads the same file for oslo.messaging's options; it runs with its own
  defaults (prefetch and worker threads, see config.py), as an operator would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

OLD_VERSION = "1.0.8"


def ensure_venv(path: Path, packages: list[str]) -> Path:
    """A venv at ``path`` with ``packages`` from PyPI; returns its python."""
    python = path / "bin" / "python"
    marker = path / ".bench-installed"
    wanted = " ".join(packages)
    if not (marker.exists() and marker.read_text() == wanted):
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
            check=True,
        )
        marker.write_text(wanted)
    return python


@dataclass
class DaemonSpec:
    name: str  # "old" or "ours"
    label: str  # what the report calls it
    command: list[str]
    stop_signal: signal.Signals
    workers: int = 1
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Environment beyond ours: PYTHONPATH to run another checkout's src/, say.
    env: dict[str, str] = field(default_factory=dict)

    def config(self, directory: Path, url: str, exchange: str, topic: str, pool: str, api: str):
        directory.mkdir(parents=True, exist_ok=True)
        sections: dict[str, dict[str, str]] = {
            "DEFAULT": {
                "debug_level": "info",
                "libs_debug_level": "warn",
                "log_file": str(directory / f"{self.name}.log"),
            },
            "oslo_messaging_notifications": {
                "transport_url": url,
                "exchange": exchange,
                "topic": topic,
                "pool": pool,
                "executor": "threading",
            },
            "k2hr3": {
                "api_url": api,
                "timeout_seconds": "30",
                "retry_interval_seconds": "1",
            },
        }
        if self.name == "ours":
            if self.workers != 1:
                sections["DEFAULT"]["workers"] = str(self.workers)
            sections["k2hr3"]["state_dir"] = str(directory / "state")
        else:
            sections["k2hr3"]["max_retries"] = "3"
        for section, values in self.extra.items():
            sections.setdefault(section, {}).update(values)
        path = directory / f"{self.name}.conf"
        with path.open("w") as out:
            for section, values in sections.items():
                out.write(f"[{section}]\n")
                out.writelines(f"{k} = {v}\n" for k, v in values.items())
                out.write("\n")
        return path

    def start(self, config: Path, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as stderr:
            return subprocess.Popen(
                [*self.command, "-c", str(config)],
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
                env=dict(os.environ, PYTHONWARNINGS="ignore", **self.env),
            )

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 60) -> int:
        if process.poll() is None:
            process.send_signal(self.stop_signal)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()


def old(venvs: Path) -> DaemonSpec:
    python = ensure_venv(venvs / "old", [f"k2hr3_osnl=={OLD_VERSION}"])
    # It stops on KeyboardInterrupt only: SIGINT.
    return DaemonSpec(
        "old", f"k2hr3_osnl {OLD_VERSION}", [str(python.parent / "k2hr3-osnl")], signal.SIGINT
    )


def ours(
    python: str = sys.executable,
    workers: int = 1,
    src: Path | None = None,
    **extra: dict[str, str],
) -> DaemonSpec:
    """k2hr3-osnl as installed, or from another checkout's ``src`` (an A/B in one run)."""
    label = "k2hr3-osnl" if workers == 1 else f"k2hr3-osnl, {workers} workers"
    if src is not None:
        label += f" ({src.parent.name})"
    return DaemonSpec(
        "ours",
        label,
        [python, "-m", "k2hr3_osnl"],
        signal.SIGTERM,
        workers=workers,
        extra=dict(extra),
        env={"PYTHONPATH": str(src)} if src is not None else {},
    )


def git_describe() -> str:
    """The commit under test (``-dirty`` if the tree has changes)."""
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return result.stdout.strip() or "?"
