"""A pidfile held by a ``flock``: one daemon per pidfile, and never a stale lock.

python-daemon's own ``pidfile`` module builds on the ``lockfile`` package, which is
unmaintained and locks by creating the file: after a crash, a kill -9 or a power cut the
file stays and the next start refuses until someone deletes it. A ``flock`` is released
by the kernel when the process dies, whatever the file's content, so a leftover file
never blocks a start. The lock belongs to the open file, so a lock taken before
python-daemon forks is still held by the detached child, and a second start can fail
in the foreground, with a message the operator sees.
"""

from __future__ import annotations

import fcntl
import os


class PidFileLocked(Exception):
    """Another running process holds the pidfile."""


class PidFile:
    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.fd: int | None = None

    def acquire(self) -> PidFile:
        """Lock the file (creating it), or raise :class:`PidFileLocked` naming the holder."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise PidFileLocked(
                    f"{self.path} is locked by a running k2hr3-osnl"
                    + (f" (pid {holder})" if holder else "")
                    + "; stop it first, or use another --pidfile"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # Locked; but if the previous holder removed the file meanwhile, our lock is on
            # a name nobody else will open: start over on the current file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return self
            os.close(fd)

    def write(self, pid: int | None = None) -> None:
        """Record ``pid`` (ours by default): call it again in the detached child."""
        assert self.fd is not None, "acquire() first"
        data = f"{pid or os.getpid()}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        """Remove the file, then unlock: a waiting starter re-checks the name (see above)."""
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
