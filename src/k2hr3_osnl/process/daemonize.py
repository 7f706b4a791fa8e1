"""``--daemonize``: detach from the terminal on hosts without systemd, with python-daemon.

python-daemon does the well-known steps (double fork, new session, chdir /, umask, close
inherited descriptors, stdio to /dev/null). What this adds is what the daemon must keep
across them: the open log files and the locked pidfile. It is called before any thread
or broker connection exists, since neither survives a fork.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from typing import IO

import daemon


def detach(keep: Iterable[IO[str] | int], umask: int = 0o027) -> None:
    """Become a background daemon; only the calling process's grandchild returns."""
    context = daemon.DaemonContext(
        working_directory="/",
        umask=umask,
        detach_process=True,
        files_preserve=list(keep),
        # Only job-control signals are ignored here: k2hr3_osnl.process.signals installs SIGTERM,
        # SIGINT and SIGHUP exactly as in the foreground.
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
    )
    context.open()
