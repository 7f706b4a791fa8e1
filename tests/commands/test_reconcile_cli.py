"""``k2hr3-osnl reconcile``: one pass on demand, as an operator runs it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from support.daemon import with_broker
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import PASSWORD, OpenStackStandIn

from k2hr3_osnl.reconcile.reconciler import CHECKPOINT_FILE


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


def test_a_config_in_dry_run_never_moves_the_checkpoint_a_live_pass_reads(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    gone = standin.create()
    standin.delete(gone, when=time.time() - 1000)
    config = write(tmp_path, k2hr3, standin.credentials())
    live_text = config.read_text(encoding="utf-8")
    config.write_text(live_text + "[k2hr3]\ndry_run = true\n", encoding="utf-8")

    dry = reconcile(config)
    assert dry.returncode == 0, dry.stderr
    *lines, _summary = dry.stdout.splitlines()
    assert lines == [f"would delete cuk={gone.id} (deleted in Nova)"]
    assert "dry_run = true: a pass as with --dry-run" in dry.stderr
    assert k2hr3.calls == []

    config.write_text(live_text, encoding="utf-8")
    live = reconcile(config)
    assert live.returncode == 0, live.stderr
    assert k2hr3.deleted() == [(gone.id, None)]


def test_absurd_windows_and_checkpoints_are_one_line_never_a_traceback(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    gone = standin.create()
    standin.delete(gone, when=standin.now() - 400)
    config = write(tmp_path, k2hr3, standin.credentials())

    ancient = reconcile(config, "--since", "1000000d", "--dry-run")
    assert ancient.returncode == 0, ancient.stderr
    *lines, summary = ancient.stdout.splitlines()
    assert lines == [f"would delete cuk={gone.id} (deleted in Nova)"]
    assert "--since reaches back before 2010-01-01T00:00:00Z" in ancient.stderr
    assert "since 2010-01-01T00:00:00Z" in summary

    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / CHECKPOINT_FILE).write_text('{"checkpoint_unix": -Infinity}\n')
    fallback = reconcile(config)
    assert fallback.returncode == 0, fallback.stderr
    assert "-inf is not a time; looking back 86400s as on a first start" in fallback.stderr
    assert "Traceback" not in ancient.stderr + fallback.stderr
    assert k2hr3.deleted() == [(gone.id, None)]


def test_a_pass_that_could_not_see_a_down_cell_is_no_ok(
    tmp_path: Path, k2hr3: FakeK2HR3, standin: OpenStackStandIn
) -> None:
    standin.cells["cell2"] = ["compute-21"]
    standin.down_cells.add("cell2")
    done = reconcile(write(tmp_path, k2hr3, standin.credentials()))
    assert done.returncode == 1, done.stderr
    summary = done.stdout.splitlines()[-1]
    assert summary.endswith("a Nova cell is down: its servers were not listed")
    assert not (tmp_path / "state" / CHECKPOINT_FILE).exists()
