"""The real daemon, the real RabbitMQ, notifications published as OpenStack does (issue 2).

Each test starts ``k2hr3-osnl`` as a subprocess from a config file, publishes with
oslo.messaging's own Notifier (or raw bytes with kombu, for what a Notifier cannot
send), and asserts on the requests that reached a local K2HR3 stand-in.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from support import paths
from support.broker import TcpProxy, queue_counts
from support.daemon import Daemon
from support.harness import Harness
from support.k2hr3_standin import FakeK2HR3
from support.samples import (
    neutron_port_delete,
    nova_legacy_delete,
    nova_versioned,
    nova_versioned_delete,
    wire_body,
)
from support.waiting import wait_until

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(120)]

DRIVERS = ("messaging", "messagingv2")


def new_cuk() -> str:
    return str(uuid.uuid4())


def wait_drained(daemon: Daemon, queue: str, timeout: float = 30) -> None:
    """Until the queue holds nothing, not even unacknowledged messages."""
    try:
        wait_until(lambda: queue_counts(queue) == (0, 0, 1), timeout, f"queue {queue} empty", 0.5)
    except AssertionError as error:
        raise AssertionError(daemon.report(f"{error}: {queue_counts(queue)}")) from None


def test_deletions_from_both_services_and_both_drivers(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    """One daemon, two exchanges, two topics: each deletion removes the right cuk and IPs."""
    daemon = e2e.start()
    expected: Counter[tuple[str, tuple[str, ...] | None]] = Counter()

    # What must not reach K2HR3, published first and in between the deletions.
    def noise(driver: str) -> None:
        cuk = new_cuk()
        for name in ("instance-create-end", "instance-soft_delete-end", "instance-delete-start"):
            e2e.notify(e2e.nova, e2e.versioned, driver, nova_versioned(name, cuk))
        port_delete_start = json.loads(
            (e2e_samples / "neutron/designate__port.delete.start.json").read_text()
        )
        e2e.notify(
            e2e.neutron,
            e2e.notifications,
            driver,
            ("port.delete.start", port_delete_start["publisher_id"], port_delete_start["payload"]),
        )
        dhcp = neutron_port_delete(cuk, ["10.0.0.2"])
        dhcp[2]["port"]["device_owner"] = "network:dhcp"
        e2e.notify(e2e.neutron, e2e.notifications, driver, dhcp)
        # Not a deletion, at another priority: acknowledged, not acted on.
        e2e.notify(
            e2e.nova,
            e2e.versioned,
            driver,
            nova_versioned("instance-create-end", cuk),
            priority="error",
        )

    for driver in DRIVERS:
        noise(driver)
        port_cuk, ips = new_cuk(), ("172.16.0.1", "2001:db8::6")
        e2e.notify(e2e.neutron, e2e.notifications, driver, neutron_port_delete(port_cuk, ips))
        expected[(port_cuk, ips)] += 1
        legacy_cuk = new_cuk()
        e2e.notify(e2e.nova, e2e.notifications, driver, nova_legacy_delete(legacy_cuk))
        expected[(legacy_cuk, None)] += 1
        versioned_cuk = new_cuk()
        e2e.notify(e2e.nova, e2e.versioned, driver, nova_versioned_delete(versioned_cuk))
        expected[(versioned_cuk, None)] += 1
        noise(driver)

    assert k2hr3.wait_for(len(expected), timeout=30), daemon.report(f"K2HR3 saw {k2hr3.calls}")
    wait_drained(daemon, e2e.pool)
    assert Counter(k2hr3.deleted()) == expected, daemon.report("wrong K2HR3 calls")
    assert k2hr3.requests == len(expected)
    assert daemon.stop() == 0

    # The Notifier also left a copy of each info notification in '<topic>.info' (its
    # default queue): proof that both wire formats went out, for every kind of deletion.
    shapes = set()
    for queue in (f"{e2e.notifications}.info", f"{e2e.versioned}.info"):
        for body in e2e.broker.drain(queue):
            message = json.loads(body)
            shape = "messagingv2" if "oslo.message" in message else "messaging"
            if shape == "messagingv2":
                message = json.loads(message["oslo.message"])
            shapes.add((shape, message["event_type"]))
    for driver in DRIVERS:
        for event_type in ("port.delete.end", "compute.instance.delete.end", "instance.delete.end"):
            assert (driver, event_type) in shapes


e2e_samples = paths.TESTS / "samples"


def test_deletions_at_another_priority_are_deletions(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    """nova with ``[notifications] default_level = WARN`` (or any publisher's level)
    sends deletions at warn or error: the VMs are gone all the same, so K2HR3 hears of
    them, and the log says once per priority that they came there."""
    daemon = e2e.start()
    port_cuk, legacy_cuk, versioned_cuk = new_cuk(), new_cuk(), new_cuk()
    port = neutron_port_delete(port_cuk, ["10.0.0.5"])
    e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", port, priority="warn")
    legacy = nova_legacy_delete(legacy_cuk)
    e2e.notify(e2e.nova, e2e.notifications, "messagingv2", legacy, priority="error")
    versioned = nova_versioned_delete(versioned_cuk)
    e2e.notify(e2e.nova, e2e.versioned, "messagingv2", versioned, priority="warn")
    assert k2hr3.wait_for(3), daemon.report(f"K2HR3 saw {k2hr3.calls}")
    assert sorted(k2hr3.deleted()) == sorted(
        [(port_cuk, ("10.0.0.5",)), (legacy_cuk, None), (versioned_cuk, None)]
    )
    wait_drained(daemon, e2e.pool)
    log = daemon.log()
    assert log.count("arrived at priority warn, not info: handled as a deletion") == 1
    assert log.count("arrived at priority error, not info: handled as a deletion") == 1
    assert daemon.stop() == 0


def test_addresses_reach_k2hr3_as_neutron_wrote_them(e2e: Harness, k2hr3: FakeK2HR3) -> None:
    """K2HR3 matches the host text it stored: an IPv6 address in a non-canonical
    spelling is sent in that spelling, not rewritten."""
    daemon = e2e.start()
    cuk, ips = new_cuk(), ("2001:DB8:0:0::6", "fe80::0001", "10.0.0.7")
    e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(cuk, ips))
    assert k2hr3.wait_for(1), daemon.report(f"K2HR3 saw {k2hr3.calls}")
    assert k2hr3.deleted() == [(cuk, ips)]
    assert daemon.stop() == 0


def test_config_file_of_k2hr3_osnl_1_0_8(e2e: Harness, k2hr3: FakeK2HR3, tmp_path: Path) -> None:
    """A 1.0.8 file, every option set, starts the daemon unchanged and means the same."""
    config = tmp_path / "k2hr3_osnl.conf"
    config.write_text(
        f"""[DEFAULT]
debug_level = info
libs_debug_level = warn
log_file = {tmp_path / "k2hr3_osnl.log"}

[oslo_messaging_notifications]
event_type = ^port\\.delete\\.end$
publisher_id = ^network.*$
transport_url = {e2e.transport_url}
topic = {e2e.notifications}
exchange = {e2e.neutron}
executor = threading
pool = {e2e.pool}
allow_requeue = True

[k2hr3]
api_url = {k2hr3.url}
timeout_seconds = 30
max_retries = 5
retry_interval_seconds = 60
allow_self_signed_cert = False
requeue_on_error = False
""",
        encoding="utf-8",
    )
    daemon = e2e.daemon(config).start()
    cuk = new_cuk()
    # 1.0.8's filter: neutron only. A nova deletion on the same exchange is not acted on.
    e2e.notify(e2e.neutron, e2e.notifications, "messagingv2", nova_legacy_delete(new_cuk()))
    e2e.notify(e2e.neutron, e2e.notifications, "messaging", neutron_port_delete(cuk, ["10.1.2.3"]))
    assert k2hr3.wait_for(1, timeout=20), daemon.report("the neutron deletion did not arrive")
    wait_drained(daemon, e2e.pool)
    assert k2hr3.deleted() == [(cuk, ("10.1.2.3",))]
    log = daemon.log()
    for group, option in (
        ("oslo_messaging_notifications", "allow_requeue"),
        ("k2hr3", "max_retries"),
        ("k2hr3", "requeue_on_error"),
    ):
        assert re.search(f'"{option}" from group "{group}" is deprecated', log), daemon.report(
            f"no deprecation warning for [{group}] {option}"
        )
    assert daemon.stop() == 0


def test_without_a_pool_the_shared_topic_queues_keep_what_came_first(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    """pool = '': the daemon consumes '<topic>.info', which a Notifier creates and fills
    even before any listener exists, so nothing published before the start is lost."""
    early = [new_cuk(), new_cuk()]
    e2e.notify(
        e2e.neutron, e2e.notifications, "messagingv2", neutron_port_delete(early[0], ["10.9.9.9"])
    )
    e2e.notify(e2e.nova, e2e.versioned, "messaging", nova_versioned_delete(early[1]))
    queues = [f"{e2e.notifications}.info", f"{e2e.versioned}.info"]
    daemon = e2e.daemon(e2e.config(pool=""), queues=queues).start()
    late = new_cuk()
    e2e.notify(e2e.nova, e2e.notifications, "messagingv2", nova_legacy_delete(late))
    assert k2hr3.wait_for(3, timeout=20), daemon.report(f"K2HR3 saw {k2hr3.deleted()}")
    assert sorted(k2hr3.deleted()) == sorted(
        [(early[0], ("10.9.9.9",)), (early[1], None), (late, None)]
    )
    assert daemon.stop() == 0


def test_sigterm_stops_an_idle_daemon_promptly(e2e: Harness) -> None:
    daemon = e2e.start()
    started = time.monotonic()
    assert daemon.stop(timeout=15) == 0
    seconds = time.monotonic() - started
    print(f"idle daemon: SIGTERM to exit in {seconds:.2f}s")
    assert seconds < 10, daemon.report(f"took {seconds:.1f}s to stop")
    assert "stopped" in daemon.log()


@pytest.mark.parametrize(
    ("section", "option", "value", "expected"),
    [
        ("k2hr3", "timeout_seconds", "abc", "timeout_seconds"),
        ("oslo_messaging_notifications", "transport_url", "rabbit//x", "transport_url"),
        ("k2hr3", "api_url", "k2hr3.example.com", "api_url"),
        ("DEFAULT", "debug_level", "loud", "debug_level"),
        ("k2hr3", "this line", "", "k2hr3-osnl.conf"),  # not 'name = value'
        (None, None, None, "no such file"),
    ],
)
def test_invalid_config_exits_non_zero_with_one_line(
    e2e: Harness, section: str | None, option: str, value: str, expected: str
) -> None:
    if section is None:
        config = e2e.tmp_path / "missing.conf"
    elif value:
        config = e2e.config(sections={section: {option: value}})
    else:
        config = e2e.config()
        text = config.read_text("utf-8").replace(f"[{section}]\n", f"[{section}]\n{option}\n")
        config.write_text(text, "utf-8")
    started = time.monotonic()
    result = e2e.cli(config, timeout=30)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result
    assert time.monotonic() - started < 20
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("k2hr3-osnl: "), result.stderr
    assert expected in lines[0], result.stderr


def test_broker_unreachable_at_start_is_retried_until_it_appears(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    proxy = TcpProxy()  # not started yet: connections to its port are refused
    daemon = e2e.daemon(e2e.config(transport_url=proxy.url)).start(wait=False)
    try:
        wait_until(
            lambda: daemon.log().count("Connection refused") >= 2,
            20,
            "the daemon to log its failed connections",
        )
        assert daemon.alive, daemon.report("the daemon gave up on an unreachable broker")
        proxy.start()
        daemon.wait_listening(timeout=30)
        cuk = new_cuk()
        e2e.notify(e2e.nova, e2e.notifications, "messagingv2", nova_legacy_delete(cuk))
        assert k2hr3.wait_for(1, timeout=20), daemon.report("nothing delivered")
        assert k2hr3.deleted() == [(cuk, None)]
        assert daemon.stop() == 0
    finally:
        proxy.stop()


def test_sigterm_while_the_broker_is_unreachable(e2e: Harness) -> None:
    closed = TcpProxy()  # never started
    daemon = e2e.daemon(e2e.config(transport_url=closed.url)).start(wait=False)
    wait_until(lambda: "Connection refused" in daemon.log(), 20, "a failed connection")
    started = time.monotonic()
    assert daemon.stop(timeout=15) == 0
    assert time.monotonic() - started < 10


def _poison(good_cuk: str) -> list[tuple[str, bytes]]:
    """(what, body) pairs a broken or hostile publisher could send; none is a deletion."""

    def v1(**fields: object) -> bytes:
        message = json.loads(wire_body(*nova_legacy_delete(good_cuk), v2=False))
        message.update(fields)
        return json.dumps(message).encode()

    def port(**fields: object) -> dict[str, object]:
        payload = neutron_port_delete(new_cuk(), ["10.0.0.9"])[2]
        payload["port"].update(fields)
        return payload

    deep = 100_000
    return [
        ("not JSON", b"this is not JSON"),
        ("empty body", b""),
        ("JSON string", b'"compute.instance.delete.end"'),
        ("JSON list", b"[1, 2, 3]"),
        ("JSON null", b"null"),
        ("broken oslo.message", b'{"oslo.version": "2.0", "oslo.message": "{\\"event_type\\": "}'),
        ("oslo.message not a string", b'{"oslo.version": "2.0", "oslo.message": 42}'),
        ("unknown envelope version", b'{"oslo.version": "9.0", "oslo.message": "{}"}'),
        ("priority null", v1(priority=None, payload={"instance_id": "not-a-uuid"})),
        ("priority a number", v1(priority=5, payload={"instance_id": "not-a-uuid"})),
        ("event_type a number", v1(event_type=42)),
        ("payload a string", v1(payload="instance_id")),
        ("payload a list", v1(payload=[good_cuk])),
        ("instance_id a number", v1(payload={"instance_id": 12345})),
        ("instance_id not a UUID", v1(payload={"instance_id": "not-a-uuid"})),
        ("instance_id too long", v1(payload={"instance_id": good_cuk + "0"})),
        ("instance_id 3 MB", v1(payload={"instance_id": "a" * 3_000_000})),
        (
            "versioned data null",
            wire_body("instance.delete.end", "nova-compute:x", {"nova_object.data": None}),
        ),
        ("device_id not a UUID", wire_body(*neutron_port_delete("12345678-1234", ["10.0.0.9"]))),
        ("fixed_ips a string", wire_body("port.delete.end", "network.x", port(fixed_ips="x"))),
        (
            "IPv4 out of range",
            wire_body(
                "port.delete.end", "network.x", port(fixed_ips=[{"ip_address": "999.1.1.1"}])
            ),
        ),
        (
            "IPv6 garbage",
            wire_body("port.delete.end", "network.x", port(fixed_ips=[{"ip_address": "fe80::zz"}])),
        ),
        (
            "IP null",
            wire_body("port.delete.end", "network.x", port(fixed_ips=[{"ip_address": None}])),
        ),
        (
            "3 MB of IPs",
            wire_body(
                "port.delete.end",
                "network.x",
                port(
                    fixed_ips=[
                        {"ip_address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}
                        for i in range(120_000)
                    ]
                ),
            ),
        ),
        ("nested 100000 deep", b'{"payload": ' + b"[" * deep + b"]" * deep + b"}"),
        (
            "nested 100000 deep in oslo.message",
            json.dumps({"oslo.version": "2.0", "oslo.message": "[" * deep + "]" * deep}).encode(),
        ),
        (
            "nested payload 500 deep",
            wire_body("port.delete.end", "network.x", {"port": json.loads("[" * 500 + "]" * 500)}),
        ),
        ("not UTF-8", b"\xff\xfe" + wire_body(*nova_legacy_delete(new_cuk()))),
        ("latin-1 inside", v1().replace(b'"priority"', b'"pri\xe9ority"')),
    ]


def test_poison_is_acknowledged_once_and_good_ones_still_delivered(
    e2e: Harness, k2hr3: FakeK2HR3
) -> None:
    daemon = e2e.start()
    good: set[str] = set()
    bodies: list[tuple[str, bytes]] = []
    for what, body in _poison(new_cuk()):
        cuk = new_cuk()
        good.add(cuk)
        bodies.append(("good", wire_body(*nova_legacy_delete(cuk), v2=len(good) % 2 == 0)))
        bodies.append((what, body))
    last = new_cuk()
    good.add(last)
    bodies.append(("good", wire_body(*nova_legacy_delete(last))))
    for _what, body in bodies:
        e2e.broker.publish_raw(e2e.nova, f"{e2e.notifications}.info", [body])

    assert k2hr3.wait_for(len(good), timeout=30), daemon.report(
        f"delivered {len(k2hr3.deleted())} of {len(good)}"
    )
    wait_drained(daemon, e2e.pool)
    called = {cuk for cuk, _host in k2hr3.deleted()}
    assert called == good, daemon.report(f"unexpected calls: {called - good}")
    assert k2hr3.requests == len(good)
    assert daemon.alive, daemon.report("the daemon died")
    # Each rejected message is logged (with its message_id when it has one) exactly once:
    # acknowledged, not requeued in a loop.
    rejected = re.findall(r"message_id=(\S+) .*invalid", daemon.log())
    assert len(rejected) >= 16, daemon.report(f"only {len(rejected)} rejections logged")
    assert all(n == 1 for n in Counter(rejected).values()), daemon.report(
        f"rejected more than once: {Counter(rejected).most_common(3)}"
    )
    assert "payload.instance_id is not a UUID: 'not-a-uuid'" in daemon.log()
    # Bodies the driver cannot decode are one warning line each, not a traceback.
    assert "invalid message rejected: not a readable message" in daemon.log()
    assert "Traceback" not in daemon.log(), daemon.report("a traceback was logged")
    assert daemon.stop() == 0
