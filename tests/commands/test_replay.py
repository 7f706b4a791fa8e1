"""``k2hr3-osnl replay``: "why wasn't this VM removed?", and re-driving parked deletions.

Run through the real command-line entry point, against the local K2HR3 stand-in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.k2hr3_standin import FakeK2HR3
from support.openstack_standin import OpenStackStandIn, Server
from support.samples import SAMPLES

from k2hr3_osnl.commands import cli
from k2hr3_osnl.core.parking import Parked, ParkingLot

NEUTRON = SAMPLES / "neutron" / "k2hr3_osnl__notifications_neutron.json"
VERSIONED = SAMPLES / "nova_versioned" / "resolved" / "instance-delete-end.json"
LEGACY_V2 = (
    SAMPLES / "wire" / "captured" / "odlproxy__compute.instance.delete.end.messagingv2.body.json"
)
CREATE = SAMPLES / "neutron" / "designate__port.create.end.json"
CONCAT = SAMPLES / "neutron" / "cerebro__eventos_amqp_create_port.concat.json"

NEUTRON_CUK = "12345678-1234-5678-1234-567812345678"
NEUTRON_IPS = ("172.16.0.1", "2001:db8::6")
VERSIONED_CUK = "178b0921-8f85-4257-88b6-2e743b5a975c"
CAPTURED_CUK = "d2e4fa5d-e93a-473a-ab43-af56f19d2af2"

# cli.main() installs its own logging.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def conf(tmp_path: Path, k2hr3: FakeK2HR3, state_dir: Path) -> str:
    path = tmp_path / "k2hr3-osnl.conf"
    path.write_text(
        f"[oslo_messaging_notifications]\ntransport_url = fake://\n"
        f"[k2hr3]\napi_url = {k2hr3.url}\nstate_dir = {state_dir}\n"
        f"timeout_seconds = 5\n",
        encoding="utf-8",
    )
    return str(path)


def replay(conf: str, *args: str | Path) -> int:
    return cli.main(["replay", "-c", conf, *map(str, args)])


def park_neutron(state_dir: Path) -> Parked:
    note = json.loads(NEUTRON.read_text(encoding="utf-8"))
    item = Parked(
        message_id=note["metadata"]["message_id"],
        event_type=note["event_type"],
        publisher_id=note["publisher_id"],
        payload=note["payload"],
        reason="K2HR3 rejected it: status 400",
        attempts=1,
        first_seen=time.time() - 60,
    )
    ParkingLot(state_dir).park(item)
    return item


# --- saved notifications ----------------------------------------------------------------


def test_dry_run_prints_each_decision_and_calls_nothing(
    conf: str, k2hr3: FakeK2HR3, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(conf, "--dry-run", NEUTRON, VERSIONED, LEGACY_V2, CREATE) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    neutron, versioned, legacy, create = lines
    assert neutron.startswith(f"{NEUTRON}: port.delete.end message_id=msgidfff-")
    assert f"delete cuk={NEUTRON_CUK} host={list(NEUTRON_IPS)}" in neutron
    assert f"delete cuk={VERSIONED_CUK} host=all of its IPs" in versioned
    assert f"delete cuk={CAPTURED_CUK}" in legacy  # unwrapped from its oslo.message envelope
    assert "ignore: event_type 'port.create.end' is not a deletion" in create
    assert k2hr3.requests == 0


def test_each_object_of_a_stream_is_numbered(conf: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay(conf, "--dry-run", CONCAT) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [f"{CONCAT}[0]", f"{CONCAT}[1]"]


def test_invalid_notification_says_why(
    conf: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = json.loads(NEUTRON.read_text(encoding="utf-8"))
    note["payload"]["port"]["device_id"] = "not-a-uuid"
    saved = tmp_path / "bad.json"
    saved.write_text(json.dumps(note), encoding="utf-8")
    assert replay(conf, "--dry-run", saved) == 0
    assert "invalid: payload.port.device_id is not a UUID" in capsys.readouterr().out


def test_replay_calls_k2hr3(
    conf: str, k2hr3: FakeK2HR3, capsys: pytest.CaptureFixture[str]
) -> None:
    assert replay(conf, NEUTRON, VERSIONED, CREATE) == 0
    assert k2hr3.deleted() == [(NEUTRON_CUK, NEUTRON_IPS), (VERSIONED_CUK, None)]
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("-> deleted (204)")
    assert out[1].endswith("-> deleted (204)")
    assert "->" not in out[2]


def test_replay_reports_a_failed_call(
    conf: str, k2hr3: FakeK2HR3, capsys: pytest.CaptureFixture[str]
) -> None:
    k2hr3.status = 400
    assert replay(conf, NEUTRON) == 1
    assert capsys.readouterr().out.rstrip().endswith("-> rejected (400)")


def test_non_json_file_is_a_clear_message(
    conf: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "body.txt"
    saved.write_text("this is not JSON\n", encoding="utf-8")
    assert replay(conf, "--dry-run", saved, NEUTRON) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{saved}: cannot read: not JSON")
    assert "delete cuk=" in out[1]  # the good file after it is still handled


def test_json_that_is_not_a_notification(conf: str, capsys: pytest.CaptureFixture[str]) -> None:
    meta = SAMPLES / "wire" / "generated" / "neutron__port.delete.end.messaging.meta.json"
    assert replay(conf, "--dry-run", meta) == 1
    assert "not a notification: no event_type and payload" in capsys.readouterr().out


def test_missing_and_binary_files(
    conf: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = tmp_path / "body.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert replay(conf, "--dry-run", tmp_path / "missing.json", binary) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert all(": cannot read: " in line for line in out)


def test_replay_needs_something_to_replay(conf: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        replay(conf)
    assert exit_.value.code == 2


# --- parked deletions -------------------------------------------------------------------


def test_list_parked_shows_why_and_calls_nothing(
    conf: str, k2hr3: FakeK2HR3, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    item = park_neutron(state_dir)
    assert replay(conf, "--parked", "--list") == 0
    out = capsys.readouterr().out
    assert "after 1 attempt(s): K2HR3 rejected it: status 400" in out
    assert "cause: operator (waits for an operator)" in out
    assert f"message_id={item.message_id}" in out
    assert f"delete cuk={NEUTRON_CUK}" in out
    assert f"1 parked in {state_dir / 'parked'}" in out
    assert k2hr3.requests == 0
    assert ParkingLot(state_dir).count() == 1


def test_parked_stays_while_k2hr3_still_rejects_it(
    conf: str, k2hr3: FakeK2HR3, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    park_neutron(state_dir)
    k2hr3.status = 400
    assert replay(conf, "--parked") == 1
    assert "still parked: rejected (400)" in capsys.readouterr().out
    assert ParkingLot(state_dir).count() == 1


def test_parked_is_delivered_and_removed_once_k2hr3_accepts(
    conf: str, k2hr3: FakeK2HR3, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The operator fixes the cause, runs replay --parked once, and the lot is empty."""
    park_neutron(state_dir)
    k2hr3.status = 400
    replay(conf, "--parked")
    k2hr3.status = 204
    assert replay(conf, "--parked") == 0
    out = capsys.readouterr().out
    assert "-> deleted (204)" in out
    assert "0 still parked" in out
    assert ParkingLot(state_dir).count() == 0
    assert k2hr3.deleted() == [(NEUTRON_CUK, NEUTRON_IPS)]
    # Nothing is sent twice on a second run.
    assert replay(conf, "--parked") == 0
    assert k2hr3.requests == 2


def test_parked_with_k2hr3_down_stays(
    conf: str, k2hr3: FakeK2HR3, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    park_neutron(state_dir)
    k2hr3.stop()
    assert replay(conf, "--parked") == 1
    assert "still parked: retry" in capsys.readouterr().out
    assert ParkingLot(state_dir).count() == 1


def test_dry_run_parked_only_lists(
    conf: str, k2hr3: FakeK2HR3, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    park_neutron(state_dir)
    assert replay(conf, "--parked", "--dry-run") == 0
    assert "1 parked in" in capsys.readouterr().out
    assert k2hr3.requests == 0
    assert ParkingLot(state_dir).count() == 1


# --- with verify_deletions: replay is no way around it ---------------------------------


@pytest.fixture
def verifying(conf: str, standin: OpenStackStandIn) -> str:
    lines = ["[reconcile]", "verify_deletions = true", "[service_credentials]"]
    lines += [f"{k} = {v}" for k, v in standin.credentials().items()]
    with open(conf, "a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return conf


def test_a_saved_deletion_of_a_live_server_is_not_sent_when_verification_is_on(
    verifying: str,
    standin: OpenStackStandIn,
    k2hr3: FakeK2HR3,
    capsys: pytest.CaptureFixture[str],
) -> None:
    standin.servers[VERSIONED_CUK] = Server(VERSIONED_CUK, "demo")
    assert replay(verifying, VERSIONED) == 1
    out = capsys.readouterr().out
    assert f"-> not sent: exists: Nova still has server {VERSIONED_CUK}" in out
    assert k2hr3.requests == 0

    standin.delete(standin.servers[VERSIONED_CUK])
    assert replay(verifying, VERSIONED) == 0
    assert k2hr3.deleted() == [(VERSIONED_CUK, None)]


def test_a_parked_port_deletion_that_cannot_be_verified_stays_parked(
    verifying: str, k2hr3: FakeK2HR3, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    park_neutron(state_dir)  # the sample's port id is a placeholder, not a UUID
    assert replay(verifying, "--parked") == 1
    assert "-> still parked: refused: payload.port.id 'portidff-" in capsys.readouterr().out
    assert ParkingLot(state_dir).count() == 1
    assert k2hr3.requests == 0
