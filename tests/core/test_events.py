"""What the daemon decides for each notification: the parsing specification.

Every real sample under ``tests/samples`` is a case, named after its file, so a new sample
is covered as soon as it is added. Then hand-made cases, each a real sample payload with
one thing broken, pin down what is ignored and what is refused.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from support.samples import SAMPLES

from k2hr3_osnl.commands import formats
from k2hr3_osnl.core.events import (
    DELETION_EVENT_TYPES,
    MAX_IPS,
    SOURCES,
    Decision,
    Delete,
    Ignore,
    Invalid,
    ReconciledServer,
    decide,
)
from k2hr3_osnl.core.types import Notification

NEUTRON_CUK = "12345678-1234-5678-1234-567812345678"
NEUTRON_IPS = ("172.16.0.1", "2001:db8::6")
K2HR3_OSNL_CUK = "12345678-1234-5678-1234-567812345678"
NOVA_VERSIONED_CUK = "178b0921-8f85-4257-88b6-2e743b5a975c"
CAPTURED_CUK = "d2e4fa5d-e93a-473a-ab43-af56f19d2af2"

#: Every sample that is a deletion, and exactly what must be removed from K2HR3.
#: Nova deletions carry no usable IPs (the instance is gone as a whole): cuk only.
DELETIONS: dict[str, Delete] = {
    "neutron/k2hr3_osnl__notifications_neutron.json": Delete(NEUTRON_CUK, NEUTRON_IPS),
    "nova_legacy/k2hr3_osnl__notifications_nova.json": Delete(K2HR3_OSNL_CUK),
    "nova_versioned/other/k2hr3_osnl__versioned_notifications_nova.json": Delete(K2HR3_OSNL_CUK),
    "nova_versioned/resolved/instance-delete-end.json": Delete(NOVA_VERSIONED_CUK),
    "nova_versioned/resolved/instance-delete-end_compute_down.json": Delete(NOVA_VERSIONED_CUK),
    "nova_versioned/resolved/instance-delete-end_not_scheduled.json": Delete(NOVA_VERSIONED_CUK),
    "wire/captured/odlproxy__compute.instance.delete.end.messagingv2.body.json": Delete(
        CAPTURED_CUK
    ),
    "wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json": Delete(
        CAPTURED_CUK
    ),
    "wire/generated/neutron__port.delete.end.messaging.body.json": Delete(NEUTRON_CUK, NEUTRON_IPS),
    "wire/generated/neutron__port.delete.end.messagingv2.body.json": Delete(
        NEUTRON_CUK, NEUTRON_IPS
    ),
    "wire/generated/nova_legacy__compute.instance.delete.end.messaging.body.json": Delete(
        CAPTURED_CUK
    ),
    "wire/generated/nova_legacy__compute.instance.delete.end.messagingv2.body.json": Delete(
        CAPTURED_CUK
    ),
    "wire/generated/nova_versioned__instance.delete.end.messaging.body.json": Delete(
        NOVA_VERSIONED_CUK
    ),
    "wire/generated/nova_versioned__instance.delete.end.messagingv2.body.json": Delete(
        NOVA_VERSIONED_CUK
    ),
}

#: Samples of a deletion's event type that are still ignored, and why.
IGNORED: dict[str, Ignore] = {
    "neutron/designate__port.delete.end.json": Ignore(
        "payload has only port_id (neutron before Newton): no device"
    ),
}


def _not_a_notification(relative: str) -> bool:
    """Files in the samples tree that are not notifications at all."""
    return (
        relative.startswith("nova_versioned/source/common_payloads/")
        or relative.endswith(".meta.json")
        or relative.endswith("/listener_side_check.json")
        # nova's documentation samples with unresolved "$ref"s: the uuid of the delete
        # sample lives in the referenced file. resolved/ holds the same 18 notifications
        # in the standalone form nova actually sends.
        or relative.startswith("nova_versioned/source/")
    )


def _sample_cases() -> list[Any]:
    """(sample id, notification) for every notification in every sample file."""
    cases = []
    for path in sorted(SAMPLES.rglob("*.json")):
        relative = path.relative_to(SAMPLES).as_posix()
        if _not_a_notification(relative):
            continue
        documents = list(formats.documents(path.read_text(encoding="utf-8")))
        for index, document in enumerate(documents):
            case_id = relative if len(documents) == 1 else f"{relative}[{index}]"
            cases.append(pytest.param(case_id, formats.notification(document), id=case_id))
    return cases


SAMPLE_CASES = _sample_cases()


def _payload(relative: str) -> dict[str, Any]:
    """A deep copy of a sample's payload, free to break."""
    document = json.loads((SAMPLES / relative).read_text(encoding="utf-8"))
    return copy.deepcopy(formats.notification(document).payload)


def neutron_payload() -> dict[str, Any]:
    return _payload("neutron/k2hr3_osnl__notifications_neutron.json")


def versioned_payload() -> dict[str, Any]:
    return _payload("nova_versioned/resolved/instance-delete-end.json")


def legacy_payload() -> dict[str, Any]:
    return _payload("wire/captured/odlproxy__compute.instance.delete.end.messagingv2.inner.json")


# --- every real sample ----------------------------------------------------------------


@pytest.mark.parametrize(("case_id", "note"), SAMPLE_CASES)
def test_sample(case_id: str, note: Notification) -> None:
    """A deletion sample gives exactly its cuk and IPs; every other sample is ignored,
    for its event type unless ``IGNORED`` names another reason."""
    decision = decide(note.event_type, note.payload)
    expected = DELETIONS.get(case_id)
    if expected is None:
        expected = IGNORED.get(case_id, Ignore(f"event_type {note.event_type!r} is not a deletion"))
    assert decision == expected


def test_every_listed_deletion_is_a_sample() -> None:
    """A renamed or removed sample must not silently drop out of the table."""
    ids = {param.values[0] for param in SAMPLE_CASES}
    assert set(DELETIONS) <= ids
    # 56 when written: the concatenated captures count once per object they hold.
    assert len(ids) >= 56


def test_samples_cover_every_deletion_event_type() -> None:
    covered = {note.event_type for _, note in (p.values for p in SAMPLE_CASES)}
    # Reconciliation's own event is ours, not OpenStack's: no sample of it exists.
    assert covered >= DELETION_EVENT_TYPES - set(ReconciledServer.event_types)


def test_a_server_reconciliation_found_is_deleted_by_cuk_alone() -> None:
    event_type = "k2hr3_osnl.reconcile.server.deleted"
    found = decide(event_type, {"uuid": NOVA_VERSIONED_CUK}, internal=True)
    assert found == Delete(NOVA_VERSIONED_CUK)
    assert isinstance(decide(event_type, {"uuid": "not-a-uuid"}, internal=True), Invalid)
    assert isinstance(decide(event_type, {}, internal=True), Invalid)


@pytest.mark.parametrize("source", [s for s in SOURCES if s.internal])
def test_an_internal_source_is_refused_from_the_bus_however_well_formed(source: type) -> None:
    for event_type in source.event_types:
        decision = decide(event_type, {"uuid": NOVA_VERSIONED_CUK})
        assert isinstance(decision, Invalid)
        assert (
            decision.reason
            == f"event_type {event_type} is the daemon's own: never taken from the bus"
        )


def test_only_the_daemons_own_sources_are_internal() -> None:
    assert [s for s in SOURCES if s.internal] == [ReconciledServer]


def test_wire_v1_and_v2_bodies_decide_the_same() -> None:
    """oslo.messaging's two drivers wrap the same notification differently."""
    generated = SAMPLES / "wire" / "generated"
    for v1 in sorted(generated.glob("*.messaging.body.json")):
        v2 = v1.with_name(v1.name.replace(".messaging.", ".messagingv2."))
        a = formats.notification(json.loads(v1.read_text(encoding="utf-8")))
        b = formats.notification(json.loads(v2.read_text(encoding="utf-8")))
        assert a.payload == b.payload
        assert decide(a.event_type, a.payload) == decide(b.event_type, b.payload)


# --- neutron: which ports are VMs' ----------------------------------------------------


@pytest.mark.parametrize(
    "owner",
    ["network:dhcp", "network:router_interface", "network:router_gateway", "", None, 42],
)
def test_port_not_owned_by_a_vm_is_ignored(owner: Any) -> None:
    """DHCP and router ports have a device_id that is not an instance: nothing to remove."""
    payload = neutron_payload()
    payload["port"]["device_owner"] = owner
    assert decide("port.delete.end", payload) == Ignore(f"device_owner {owner!r} is not a VM")


def test_port_without_device_owner_is_ignored() -> None:
    payload = neutron_payload()
    del payload["port"]["device_owner"]
    assert decide("port.delete.end", payload) == Ignore("device_owner None is not a VM")


@pytest.mark.parametrize("owner", ["compute:nova", "compute:az-2", "compute:None"])
def test_any_compute_availability_zone_is_a_vm(owner: str) -> None:
    payload = neutron_payload()
    payload["port"]["device_owner"] = owner
    assert decide("port.delete.end", payload) == Delete(NEUTRON_CUK, NEUTRON_IPS)


def test_port_id_only_is_ignored() -> None:
    """neutron before Newton (and every port.delete.start) sends no port object."""
    payload = neutron_payload()
    del payload["port"]
    assert "port_id" in payload
    assert decide("port.delete.end", payload) == Ignore(
        "payload has only port_id (neutron before Newton): no device"
    )


def test_port_with_no_ips_is_ignored() -> None:
    """Without ``host`` K2HR3 removes *every* IP of the VM, including its other ports'.

    A port that had no address removed nothing, and the VM may well live on with other
    ports, so no host would remove all IPs of the VM: the safe answer is to do nothing.
    """
    payload = neutron_payload()
    payload["port"]["fixed_ips"] = []
    assert decide("port.delete.end", payload) == Ignore("the port had no IP addresses")


def test_port_payload_with_neither_port_nor_port_id_is_invalid() -> None:
    decision = decide("port.delete.end", {"something": "else"})
    assert isinstance(decision, Invalid)
    assert "port" in decision.reason


def test_other_port_events_are_ignored_even_with_a_vm_port() -> None:
    """port.delete.start carries the same port, but the port still exists then."""
    for event_type in ("port.delete.start", "port.create.end", "port.update.end"):
        assert decide(event_type, neutron_payload()) == Ignore(
            f"event_type '{event_type}' is not a deletion"
        )


# --- nova: the whole instance is gone -------------------------------------------------


def test_versioned_delete_ignores_ip_addresses() -> None:
    """Naming a subset of IPs would leave the others in K2HR3: delete by cuk alone."""
    start = _payload("nova_versioned/resolved/instance-delete-start.json")
    assert start["nova_object.data"]["ip_addresses"]
    assert decide("instance.delete.end", start) == Delete(NOVA_VERSIONED_CUK)


def test_legacy_delete_ignores_fixed_ips() -> None:
    payload = legacy_payload()
    payload["fixed_ips"] = [{"address": "10.0.0.2", "type": "fixed"}]
    assert decide("compute.instance.delete.end", payload) == Delete(CAPTURED_CUK)


@pytest.mark.parametrize("event_type", [None, 42, ["port.delete.end"], "", "PORT.DELETE.END"])
def test_unknown_event_type_is_ignored(event_type: Any) -> None:
    assert decide(event_type, neutron_payload()) == Ignore(
        f"event_type {event_type!r} is not a deletion"
    )


def test_a_long_unknown_event_type_is_cut_short_in_the_reason() -> None:
    """The reason goes into a log line: a forged event type of any length stays short."""
    event_type = "x" * 1000
    assert decide(event_type, neutron_payload()) == Ignore(
        f"event_type '{'x' * 76}... is not a deletion"
    )


# --- refused: never sent to K2HR3 -----------------------------------------------------


def _invalid(event_type: str, payload: Any, field: str) -> Decision:
    # As the daemon's own notifications are decided: their shape is what is checked.
    decision = decide(event_type, payload, internal=True)
    assert isinstance(decision, Invalid), decision
    assert field in decision.reason, decision.reason
    return decision


BAD_UUIDS = [
    "not-a-uuid",
    "",
    "portidff-ffff-ffff-ffff-ffffffffffff",  # the neutron sample's placeholder style
    "12345678123456781234567812345678",  # no dashes: K2HR3 keys use the dashed form
    "12345678-1234-5678-1234-5678123456789",
    "12345678-1234-5678-1234-567812345678\n",  # a regex "$" would let this through
    " 12345678-1234-5678-1234-567812345678",
    "12345678-1234-5678-1234-567812345678&host=x",
    None,
    12345678,
    ["12345678-1234-5678-1234-567812345678"],
]


@pytest.mark.parametrize("cuk", BAD_UUIDS)
def test_neutron_bad_device_id_is_invalid(cuk: Any) -> None:
    payload = neutron_payload()
    payload["port"]["device_id"] = cuk
    _invalid("port.delete.end", payload, "payload.port.device_id")


@pytest.mark.parametrize("cuk", BAD_UUIDS)
def test_versioned_bad_uuid_is_invalid(cuk: Any) -> None:
    payload = versioned_payload()
    payload["nova_object.data"]["uuid"] = cuk
    _invalid("instance.delete.end", payload, 'payload["nova_object.data"].uuid')


@pytest.mark.parametrize("cuk", BAD_UUIDS)
def test_legacy_bad_instance_id_is_invalid(cuk: Any) -> None:
    payload = legacy_payload()
    payload["instance_id"] = cuk
    _invalid("compute.instance.delete.end", payload, "payload.instance_id")


def test_uuid_case_is_kept() -> None:
    """K2HR3 compares cuks as strings; the notification's spelling is the one it stored."""
    payload = legacy_payload()
    payload["instance_id"] = CAPTURED_CUK.upper()
    assert decide("compute.instance.delete.end", payload) == Delete(CAPTURED_CUK.upper())


def test_missing_ids_are_invalid() -> None:
    payload = legacy_payload()
    del payload["instance_id"]
    _invalid("compute.instance.delete.end", payload, "payload.instance_id")
    payload = versioned_payload()
    del payload["nova_object.data"]
    _invalid("instance.delete.end", payload, 'payload["nova_object.data"]')
    payload = neutron_payload()
    del payload["port"]["device_id"]
    _invalid("port.delete.end", payload, "payload.port.device_id")


@pytest.mark.parametrize("event_type", sorted(DELETION_EVENT_TYPES))
@pytest.mark.parametrize("payload", [[], ["port"], "port", "", None, 7, True])
def test_payload_that_is_not_an_object_is_invalid(event_type: str, payload: Any) -> None:
    _invalid(event_type, payload, "payload is")


def _set(path: tuple[Any, ...], value: Any) -> Any:
    """A breaker that sets ``payload[path...] = value``."""

    def apply(payload: Any) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _drop(path: tuple[Any, ...]) -> Any:
    def apply(payload: Any) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


WRONG_TYPES = {
    "port-str": ("port.delete.end", _set(("port",), "a port"), "payload.port"),
    "port-list": ("port.delete.end", _set(("port",), ["a port"]), "payload.port"),
    "fixed_ips-dict": (
        "port.delete.end",
        _set(("port", "fixed_ips"), {"ip_address": "172.16.0.1"}),
        "payload.port.fixed_ips is dict",
    ),
    "fixed_ips-str": (
        "port.delete.end",
        _set(("port", "fixed_ips"), "172.16.0.1"),
        "payload.port.fixed_ips is str",
    ),
    "fixed_ips-null": (
        "port.delete.end",
        _set(("port", "fixed_ips"), None),
        "payload.port.fixed_ips is NoneType",
    ),
    "fixed_ip-str": (
        "port.delete.end",
        _set(("port", "fixed_ips", 0), "172.16.0.1"),
        "payload.port.fixed_ips[0]",
    ),
    "ip_address-int": (
        "port.delete.end",
        _set(("port", "fixed_ips", 1, "ip_address"), 3232235777),
        "payload.port.fixed_ips[1].ip_address is int",
    ),
    "ip_address-missing": (
        "port.delete.end",
        _drop(("port", "fixed_ips", 0, "ip_address")),
        "payload.port.fixed_ips[0].ip_address",
    ),
    "uuid-int": (
        "instance.delete.end",
        _set(("nova_object.data", "uuid"), 1),
        'payload["nova_object.data"].uuid',
    ),
    "nova_object.data-str": (
        "instance.delete.end",
        _set(("nova_object.data",), "data"),
        'payload["nova_object.data"] is str',
    ),
    "nova_object.data-list": (
        "instance.delete.end",
        _set(("nova_object.data",), [1]),
        'payload["nova_object.data"] is list',
    ),
    "instance_id-list": (
        "compute.instance.delete.end",
        _set(("instance_id",), [CAPTURED_CUK]),
        "payload.instance_id",
    ),
}
PAYLOADS = {
    "port.delete.end": neutron_payload,
    "instance.delete.end": versioned_payload,
    "compute.instance.delete.end": legacy_payload,
}


@pytest.mark.parametrize(("event_type", "break_it", "field"), WRONG_TYPES.values(), ids=WRONG_TYPES)
def test_wrong_types_are_invalid(event_type: str, break_it: Any, field: str) -> None:
    """Each broken field is named, so an operator can find it in the message."""
    payload = PAYLOADS[event_type]()
    break_it(payload)
    _invalid(event_type, payload, field)


@pytest.mark.parametrize(
    "ip",
    [
        "999.1.1.1",
        "172.16.0",
        "172.16.0.1/24",
        "",
        " 172.16.0.1",
        "172.16.0.1\n",
        "2001:db8::g",
        "2001:db8:::6",
        "localhost",
        "172.016.000.001",
        "fe80::1%eth0",
    ],
)
def test_invalid_ip_is_invalid(ip: str) -> None:
    """One bad address refuses the whole port: never a partial removal."""
    payload = neutron_payload()
    payload["port"]["fixed_ips"][1]["ip_address"] = ip
    decision = _invalid("port.delete.end", payload, "payload.port.fixed_ips[1].ip_address")
    assert "not an IP address" in decision.reason


def test_too_many_ips_is_invalid() -> None:
    payload = neutron_payload()
    template = payload["port"]["fixed_ips"][0]
    payload["port"]["fixed_ips"] = [
        dict(template, ip_address=f"10.{i // 250}.{i % 250}.1") for i in range(MAX_IPS + 1)
    ]
    decision = _invalid("port.delete.end", payload, "payload.port.fixed_ips")
    assert str(MAX_IPS) in decision.reason


def test_max_ips_is_still_accepted() -> None:
    payload = neutron_payload()
    template = payload["port"]["fixed_ips"][0]
    ips = [f"10.{i // 250}.{i % 250}.1" for i in range(MAX_IPS)]
    payload["port"]["fixed_ips"] = [dict(template, ip_address=ip) for ip in ips]
    assert decide("port.delete.end", payload) == Delete(NEUTRON_CUK, tuple(ips))


def test_invalid_reason_is_short_for_huge_values() -> None:
    """The reason goes to the log: a 1 MB bad value must not go with it."""
    payload = legacy_payload()
    payload["instance_id"] = "x" * 1_000_000
    decision = _invalid("compute.instance.delete.end", payload, "payload.instance_id")
    assert len(decision.reason) < 200


# --- addresses as K2HR3 stores them ---------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "2001:DB8::6",
        "2001:0db8:0000:0000:0000:0000:0000:0006",
        "2001:db8:0:0:0:0:0:6",
        "fe80::0001",
        "::ffff:10.0.0.1",
        "10.0.0.1",
    ],
)
def test_an_address_is_sent_as_the_notification_wrote_it(given: str) -> None:
    """K2HR3 compares host strings with what it stored: a rewritten form matches nothing."""
    payload = neutron_payload()
    payload["port"]["fixed_ips"][1]["ip_address"] = given
    assert decide("port.delete.end", payload) == Delete(NEUTRON_CUK, ("172.16.0.1", given))


def test_repeated_addresses_are_sent_once_each_spelling_kept() -> None:
    payload = neutron_payload()
    entries = payload["port"]["fixed_ips"]
    v4, v6 = copy.deepcopy(entries)
    v6_upper = dict(v6, ip_address="2001:DB8:0::6")
    payload["port"]["fixed_ips"] = [v6, v4, v4, v6_upper, v6]
    assert decide("port.delete.end", payload) == Delete(
        NEUTRON_CUK, ("2001:db8::6", "172.16.0.1", "2001:DB8:0::6")
    )


def test_the_payload_is_not_modified() -> None:
    """The same payload may be parked and replayed later: decide() must not touch it."""
    payload = neutron_payload()
    payload["port"]["fixed_ips"][1]["ip_address"] = "2001:DB8::6"
    before = copy.deepcopy(payload)
    decide("port.delete.end", payload)
    assert payload == before
