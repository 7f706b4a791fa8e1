"""systemd's end of the notify protocol, for tests: a datagram socket that records.

Point ``$NOTIFY_SOCKET`` at :attr:`NotifySocket.path` before starting the daemon, then
assert on :attr:`NotifySocket.messages`, each one datagram split into its fields.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Message:
    at: float  # time.monotonic() of arrival
    fields: dict[str, str]
    raw: str

    def __contains__(self, key: str) -> bool:
        return key in self.fields


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            raw = data.decode()
            fields = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
            with self._lock:
                self.messages.append(Message(time.monotonic(), fields, raw))

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def find(self, key: str, value: str | None = None, start: int = 0) -> int | None:
        """Index of the first message from ``start`` on that carries ``key`` (``=value``)."""
        for index, message in enumerate(self.snapshot()[start:], start):
            if key in message and (value is None or message.fields[key] == value):
                return index
        return None

    def wait_for(
        self, key: str, value: str | None = None, start: int = 0, timeout: float = 20
    ) -> int:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(key, value, start)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                shown = "\n".join(repr(m.raw) for m in self.snapshot())
                raise AssertionError(
                    f"no {key}{'=' + value if value else ''} after message {start} within "
                    f"{timeout:.0f}s; received:\n{shown}"
                )
            time.sleep(0.05)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
        self._thread.join(1)
