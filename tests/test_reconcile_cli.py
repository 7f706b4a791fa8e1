"""``k2hr3-osnl reconcile``: one pass on demand, as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon import with_broker
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import PASSWORD, OpenStackStandIn

from k2hr3_osnl.reconcile.reconciler import CHECKPOINT_FILE


@pytest.fixture
def standin() -> Iterator[OpenStackStandIn]:
    server = OpenStackStandIn().start()
    yield server
    server.stop()


def write(tmp_path: Path, k2hr3: FakeK2HR3, credentials: dict[str, object] | None) -> Path:
    lines = ["[k2hr3]", f"api_url = {k2hr3.url}", f"state_dir = {tmp_path / 'state'}"]
    if credentials is not None:
        lines += ["[service_credentials]", *(f"{k} = {v}" for k, v in credentials.items())]
        lines += ["[reconcile]", "enabled = true"]
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(with_broker("\n".join(lines) + "\n"), encoding="utf-8")
    return path


def reconcile(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "k2hr3_osnl", "-c", str(config), "reconcile", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dry_run_then_a_real_pass(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    gone, soft = standin.create(), standin.create()
    standin.delete(gone)
    standin.delete(soft, soft=True)
    config = write(tmp_path, k2hr3, standin.credentials())

    dry = reconcile(config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    *lines, summary = dry.stdout.splitlines()  # the summary is the result: on stdout
    assert lines == [f"would delete cuk={gone.id} (deleted in Nova)"]
    assert summary.startswith("1 deleted server(s) since ") and summary.endswith(" (dry run)")
    assert k2hr3.calls == [] and not (tmp_path / "state" / CHECKPOINT_FILE).exists()

    real = reconcile(config)
    assert real.returncode == 0, real.stderr
    *lines, summary = real.stdout.splitlines()
    assert lines == [f"deleted cuk={gone.id} (deleted in Nova)"]
    assert summary.endswith(", 0 already deleted, 1 sent")
    assert k2hr3.deleted() == [(gone.id, None)]
    assert (tmp_path / "state" / CHECKPOINT_FILE).exists()
    assert PASSWORD not in real.stdout + real.stderr


def test_since_limits_the_window(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    old, new = standin.create(), standin.create()
    standin.delete(old, when=time.time() - 7200)
    standin.delete(new)
    config = write(tmp_path, k2hr3, standin.credentials())
    done = reconcile(config, "--since", "1h")
    assert done.returncode == 0, done.stderr
    assert [cuk for cuk, _ in k2hr3.deleted()] == [new.id]


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    bad = reconcile(write(tmp_path, k2hr3, standin.credentials()), "--since", "last tuesday")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "k2hr3-osnl: --since: 'last tuesday' is neither an ISO 8601 time "
        "(2026-01-31T12:00:00Z) nor a duration (45s, 90m, 12h, 2d)"
    ]
    none = reconcile(write(tmp_path, k2hr3, None))
    assert none.returncode == 2 and "needs [service_credentials] auth_type" in none.stderr


def test_nova_failing_is_exit_1(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    standin.fail_with = 500
    failed = reconcile(write(tmp_path, k2hr3, standin.credentials()))
    assert failed.returncode == 1
    assert "reconciliation failed: Nova GET /servers/detail answered status 500" in failed.stderr
