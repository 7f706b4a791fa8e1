"""Shared fixtures: the samples, a local K2HR3 stand-in, the real RabbitMQ."""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
sys.path.insert(0, str(Path(__file__).parent))

from support.harness import Harness  # noqa: E402
from support.k2hr3_standin import FakeK2HR3  # noqa: E402
from support.openstack_standin import OpenStackStandIn  # noqa: E402

RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
RABBITMQ_URL = f"rabbit://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The daemon's logging set-up replaces the root's handlers and levels: undo it."""
    from k2hr3_osnl.observability import logs

    root = logging.getLogger()
    handlers = list(root.handlers)
    names = ["", "k2hr3_osnl", *logs.LIBRARIES]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def standin() -> Iterator[OpenStackStandIn]:
    """Local Keystone, Nova and Neutron that answer as the real ones do."""
    server = OpenStackStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def k2hr3() -> Iterator[FakeK2HR3]:
    server = FakeK2HR3().start()
    yield server
    server.stop()


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbitmq() -> str:
    """The real broker's URL. Missing broker: a failure, unless explicitly skipped."""
    if not _rabbitmq_up():
        if os.environ.get("K2HR3_OSNL_SKIP_RABBITMQ"):
            pytest.skip("RabbitMQ not running and K2HR3_OSNL_SKIP_RABBITMQ is set")
        pytest.fail(
            f"RabbitMQ is not reachable on {RABBITMQ_HOST}:{RABBITMQ_PORT}; "
            "start it with 'rabbitmq-server -detached'"
        )
    return RABBITMQ_URL


@pytest.fixture
def e2e(tmp_path: Path, rabbitmq: str, k2hr3: FakeK2HR3, unique: str) -> Iterator[Harness]:
    """A real daemon's surroundings: its config, exchanges and pool queue on the broker."""
    with Harness(tmp_path, unique, k2hr3.url, rabbitmq) as harness:
        yield harness


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for pools and exchanges on the shared broker."""
    return f"t{uuid.uuid4().hex[:10]}"
