"""The parking lot: deletions that could not be delivered, kept on disk for an operator."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from k2hr3_osnl.core.parking import Cause, Parked, ParkingLot, cause_of

PAYLOAD = {
    "port": {
        "device_id": "12345678-1234-5678-1234-567812345678",
        "device_owner": "compute:nova",
        "fixed_ips": [{"ip_address": "172.16.0.1"}, {"ip_address": "2001:db8::6"}],
    }
}


def parked(message_id: str = "m-1", **changes: object) -> Parked:
    fields: dict[str, object] = {
        "message_id": message_id,
        "event_type": "port.delete.end",
        "publisher_id": "network.node1",
        "payload": PAYLOAD,
        "reason": "K2HR3 rejected it: status 400",
        "attempts": 1,
        "first_seen": time.time() - 5,
    }
    fields.update(changes)
    return Parked(**fields)  # type: ignore[arg-type]


def files(lot: ParkingLot) -> list[str]:
    return sorted(p.name for p in lot.directory.iterdir()) if lot.directory.exists() else []


def test_park_writes_one_readable_json_file(tmp_path: Path) -> None:
    """An operator can read a parked deletion with cat, and tools with json."""
    lot = ParkingLot(tmp_path)
    item = parked()
    path = lot.park(item)
    assert path.parent == tmp_path / "parked"
    assert files(lot) == [path.name]
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["message_id"] == "m-1"
    assert data["payload"] == PAYLOAD
    assert data["reason"] == item.reason
    assert data["attempts"] == 1
    assert data["first_seen"] <= data["parked_at"]
    assert "path" not in data


def test_parked_items_survive_a_new_instance(tmp_path: Path) -> None:
    """A restarted daemon (or replay in another process) sees what was parked."""
    first, second = parked("m-1"), parked("m-2", attempts=7, reason="retry budget spent")
    writer = ParkingLot(tmp_path)
    writer.park(first)
    writer.park(second)
    reader = ParkingLot(tmp_path)
    assert list(reader) == [first, second]
    assert all(item.path is not None and item.path.exists() for item in reader)
    assert reader.count() == 2


def test_a_failed_write_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written to a temporary file and renamed: a reader never sees half a file."""
    lot = ParkingLot(tmp_path)
    lot.park(parked("m-1"))

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("k2hr3_osnl.core.parking.os.fsync", disk_full)
    with pytest.raises(OSError):
        lot.park(parked("m-2"))
    assert len(files(lot)) == 1
    assert [item.message_id for item in lot] == ["m-1"]


def test_content_never_stops_parking(tmp_path: Path) -> None:
    """What JSON cannot hold (bytes from kombu's decoder, a set) is kept as text, and
    the deletion itself beside it, so replay can still send it."""
    lot = ParkingLot(tmp_path)
    payload = {**PAYLOAD, "extra": b"x", "odd": {1, 2}}
    path = lot.park(
        parked(
            "m-2", payload=payload, cuk="12345678-1234-5678-1234-567812345678", ips=["172.16.0.1"]
        )
    )
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["payload"]["extra"] == "b'x'"
    assert data["payload"]["odd"] == "{1, 2}"
    assert data["cuk"] == "12345678-1234-5678-1234-567812345678"
    assert data["ips"] == ["172.16.0.1"]
    assert [item.cuk for item in lot] == [data["cuk"]]


def test_a_failed_directory_sync_after_the_rename_still_counts_as_parked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is in place under its name: raising would park it a second time."""
    lot = ParkingLot(tmp_path)
    lot.park(parked("m-0"))  # the directory exists now
    synced: list[int] = []
    real = __import__("os").fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        if len(synced) > 1:  # the file's own sync works, the directory's fails
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr("k2hr3_osnl.core.parking.os.fsync", fsync)
    path = lot.park(parked("m-1"))
    assert path.exists()
    assert lot.count() == 2


def test_a_new_parking_directory_is_synced_into_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut right after the first parking must not lose the directory."""
    import os

    synced: list[str] = []
    real_open = os.open

    def track_open(path: object, flags: int, *args: object) -> int:
        fd = real_open(path, flags, *args)  # type: ignore[arg-type]
        synced.append(str(path))
        return fd

    monkeypatch.setattr("k2hr3_osnl.core.parking.os.open", track_open)
    ParkingLot(tmp_path).park(parked("m-1"))
    assert str(tmp_path) in synced
    assert str(tmp_path / "parked") in synced


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    """A crash mid-write leaves a .tmp- file behind; an hour later it is cleaned up,
    while a fresh one (a write under way in another worker) stays."""
    import os

    lot = ParkingLot(tmp_path)
    lot.park(parked("m-1"))
    old = lot.directory / ".tmp-old"
    fresh = lot.directory / ".tmp-fresh"
    old.write_text("{")
    fresh.write_text("{")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))
    ParkingLot(tmp_path)  # a restarted daemon
    assert not old.exists()
    assert fresh.exists()
    assert lot.count() == 1


def test_leftover_temporary_files_are_not_parked_items(tmp_path: Path) -> None:
    """A crash mid-write leaves a .tmp- file: it is neither listed nor counted."""
    lot = ParkingLot(tmp_path)
    lot.park(parked())
    (lot.directory / ".tmp-abcd").write_text('{"message_id": "half', encoding="utf-8")
    assert [item.message_id for item in lot] == ["m-1"]
    assert ParkingLot(tmp_path).count() == 1


def test_unreadable_file_is_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One damaged file must not hide the other parked deletions."""
    lot = ParkingLot(tmp_path)
    lot.park(parked("m-1"))
    broken = lot.directory / "0000000000000-broken.json"
    broken.write_text("{not json", encoding="utf-8")
    alien = lot.directory / "0000000000001-alien.json"
    alien.write_text('{"something": "else"}', encoding="utf-8")
    listed = lot.directory / "0000000000002-list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    caplog.set_level(logging.ERROR, logger="k2hr3_osnl.core.parking")
    assert [item.message_id for item in lot] == ["m-1"]
    reported = " ".join(r.getMessage() for r in caplog.records)
    for path in (broken, alien, listed):
        assert str(path) in reported


def test_remove(tmp_path: Path) -> None:
    lot = ParkingLot(tmp_path)
    lot.park(parked("m-1"))
    lot.park(parked("m-2"))
    first, second = list(lot)
    lot.remove(first)
    assert [item.message_id for item in ParkingLot(tmp_path)] == ["m-2"]
    assert lot.count() == 1
    lot.remove(first)  # removing twice (two replays at once) is harmless
    lot.remove(second)
    assert lot.count() == 0
    assert list(lot) == []


def test_count(tmp_path: Path) -> None:
    lot = ParkingLot(tmp_path / "never-created")
    assert lot.count() == 0
    assert list(lot) == []
    for i in range(3):
        lot.park(parked(f"m-{i}"))
    assert lot.count() == 3


def test_count_sees_removals_by_another_process(tmp_path: Path) -> None:
    """The daemon's count must drop when ``replay --parked`` empties the spool."""
    daemon, replayer = ParkingLot(tmp_path), ParkingLot(tmp_path)
    daemon.park(parked("m-1"))
    assert daemon.count() == 1
    for item in replayer:
        replayer.remove(item)
    assert daemon.count() == 0


def test_same_id_in_the_same_millisecond_is_kept_twice(tmp_path: Path) -> None:
    """Notifications without a message_id all park as 'None'; none may overwrite another."""
    lot = ParkingLot(tmp_path)
    at = time.time()
    lot.park(parked("None", parked_at=at))
    lot.park(parked("None", parked_at=at))
    assert lot.count() == 2


def test_message_id_cannot_escape_the_directory(tmp_path: Path) -> None:
    """The message_id comes from the broker: it must not choose where we write."""
    lot = ParkingLot(tmp_path / "state")
    path = lot.park(parked("../../../etc/evil/\x00name"))
    assert path.parent == tmp_path / "state" / "parked"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]
    assert [item.message_id for item in lot] == ["../../../etc/evil/\x00name"]


def test_listed_in_parking_order(tmp_path: Path) -> None:
    lot = ParkingLot(tmp_path)
    now = time.time()
    for i, message_id in enumerate(("zeta", "alpha", "mid")):
        lot.park(parked(message_id, parked_at=now + i))
    assert [item.message_id for item in lot] == ["zeta", "alpha", "mid"]


def test_parking_fails_loudly_when_the_disk_cannot_take_it(tmp_path: Path) -> None:
    """The handler requeues on OSError; that only works if parking raises it."""
    (tmp_path / "parked").write_text("a file where the directory should be")
    with pytest.raises(OSError):
        ParkingLot(tmp_path).park(parked())


# --- causes ------------------------------------------------------------------------


def test_a_parked_file_says_its_cause(tmp_path: Path) -> None:
    lot = ParkingLot(tmp_path)
    path = lot.park(parked(cause=Cause.OUTAGE))
    assert json.loads(path.read_text(encoding="utf-8"))["cause"] == "outage"
    (item,) = list(lot)
    assert cause_of(item) == Cause.OUTAGE


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        ("K2HR3 rejected it: status 400 ", "operator"),
        ("K2HR3 rejected it: status 404 not found", "operator"),
        ("retry budget spent: no answer connection failed: Connection refused", "outage"),
        ("K2HR3 failed it 8 times while accepting other deletions: status 403", "strikes"),
        ("verification unavailable: Nova answered 403", "verification-unavailable"),
        ("internal error: RuntimeError('x')", "operator"),
        ("something no release ever wrote", "operator"),
    ],
)
def test_a_file_written_before_causes_loads_and_is_treated_by_its_reason(
    tmp_path: Path, reason: str, cause: str
) -> None:
    """A file parked by an earlier release (no cause, no re-send count) still loads;
    its reason decides, and anything unknown waits for an operator."""
    directory = tmp_path / "parked"
    directory.mkdir()
    old = {
        "message_id": "m-old",
        "event_type": "port.delete.end",
        "publisher_id": "network.node1",
        "payload": PAYLOAD,
        "reason": reason,
        "attempts": 3,
        "first_seen": 1700000000.0,
        "parked_at": 1700000100.0,
        "cuk": "12345678-1234-5678-1234-567812345678",
        "ips": ["172.16.0.1"],
    }
    (directory / "001700000100000-m-old-0badc0de.json").write_text(json.dumps(old))
    (item,) = list(ParkingLot(tmp_path))
    assert item.cause is None and item.resends == 0
    assert cause_of(item) == cause


def test_an_unknown_cause_in_a_file_is_read_from_its_reason(tmp_path: Path) -> None:
    lot = ParkingLot(tmp_path)
    lot.park(parked(cause="gremlins", reason="retry budget spent: status 503"))
    (item,) = list(lot)
    assert cause_of(item) == Cause.OUTAGE


def test_rewrite_replaces_the_file_in_place(tmp_path: Path) -> None:
    """A re-sent deletion that is still parked keeps its one file, with its new state."""
    lot = ParkingLot(tmp_path)
    lot.park(parked(cause=Cause.STRIKES))
    (item,) = list(lot)
    item.resends, item.last_resend = 3, 1700000000.0
    assert lot.rewrite(item) == item.path
    assert files(lot) == [item.path.name]
    (again,) = list(lot)
    assert (again.resends, again.last_resend, again.cause) == (3, 1700000000.0, "strikes")


def test_an_unreadable_file_is_reported_once_however_often_the_lot_is_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon reads the lot every few seconds to re-send what is due."""
    lot = ParkingLot(tmp_path)
    lot.park(parked("m-1"))
    (lot.directory / "0000000000000-broken.json").write_text("{not json", encoding="utf-8")
    caplog.set_level(logging.ERROR, logger="k2hr3_osnl.core.parking")
    for _ in range(5):
        assert [item.message_id for item in lot] == ["m-1"]
    assert len([r for r in caplog.records if "unreadable parked file" in r.getMessage()]) == 1


def test_fields_a_later_release_adds_do_not_make_a_file_unreadable(tmp_path: Path) -> None:
    lot = ParkingLot(tmp_path)
    path = lot.park(parked("m-1"))
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**data, "verified_by": "nova"}), encoding="utf-8")
    assert [item.message_id for item in lot] == ["m-1"]
