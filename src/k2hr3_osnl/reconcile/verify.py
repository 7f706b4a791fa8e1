"""``[reconcile] verify_deletions`` at the edge: Nova and Neutron answer the handler's check.

Anyone who can publish on the bus can forge ``instance.delete.end`` for a live VM, and a
misrouted notification from another cloud names servers that exist here. The handler
asks :class:`CloudVerifier` between the decision and the delivery
(:mod:`k2hr3_osnl.core.verification` says what each answer means):

- an instance deletion is proven by Nova answering 404 for the server;
- a port deletion is proven by the device no longer holding those addresses: Neutron
  keeps no deleted ports, so a 404 for a port id proves nothing, while
  ``GET /v2.0/ports?device_id=`` lists what the device still holds. A port deletion
  without a port id, or with one that is not a UUID, is refused;
- 401 and 403 mean verification is broken (the account), anything else without an
  answer means OpenStack is unavailable for now.

Lookups run a few at a time, a batch's verification has an overall deadline, and after
a round without answers a breaker skips OpenStack until a backoff has passed: a Keystone
that never answers costs one deadline per backoff, not one timeout per notification.
The start check is :mod:`k2hr3_osnl.reconcile.view`; the re-checks of refusals,
:mod:`k2hr3_osnl.reconcile.recheck`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from typing import Any, TypeVar

from k2hr3_osnl.core.events import PORT, SERVER, Delete
from k2hr3_osnl.core.verification import Breaker, Check, Verdict
from k2hr3_osnl.openstack import neutron, nova
from k2hr3_osnl.openstack.session import Cloud, OpenStackError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")

#: Lookups in flight at once: enough for a batch, not a flood on Nova or Neutron.
MAX_LOOKUPS = 8
#: Seconds one batch's verification may take, whatever Keystone, Nova or Neutron do.
DEADLINE = 10.0

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
BROKEN = (401, 403)
FIX = (
    "give the account of [service_credentials] a role that reads servers and ports of "
    "every project (admin, or a reader role the Nova and Neutron policies allow), or set "
    "[reconcile] verify_deletions = false"
)
FIX_401 = (
    "check the account of [service_credentials] (username, password, project, "
    "auth_url), or set [reconcile] verify_deletions = false"
)


def fix(status: int | None) -> str:
    """The one line that says how to mend a 401 (the account) or a 403 (its role)."""
    return FIX_401 if status == 401 else FIX


class CloudVerifier:
    """The :class:`~k2hr3_osnl.core.verification.Verifier` that asks Nova and Neutron."""

    def __init__(
        self,
        cloud: Cloud,
        concurrency: int = MAX_LOOKUPS,
        deadline: float = DEADLINE,
        breaker: Breaker | None = None,
        view_proven: bool = True,
    ) -> None:
        self.cloud = cloud
        self.deadline = deadline
        self.breaker = breaker or Breaker()
        #: The start check could not run (OpenStack did not answer): the re-check thread
        #: runs it later (:func:`k2hr3_osnl.reconcile.view.prove_later`).
        self.view_proven = view_proven
        #: Set once a late start check found the view too narrow: verification is broken.
        self.too_narrow: str | None = None
        #: Lookups in flight, hung ones included: a hung Keystone holds at most these.
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._failing: Verdict | None = None  # within a streak of failures: log once

    def verify(self, deletions: Sequence[Delete]) -> list[Check]:
        checks: list[Check | None] = [_unprovable(d) for d in deletions]
        todo = [i for i, check in enumerate(checks) if check is None]
        if todo and self.too_narrow is not None:
            for i in todo:
                checks[i] = Check(Verdict.BROKEN, self.too_narrow)
        elif todo and not self.breaker.allow():
            skipped = Check(
                Verdict.UNKNOWN, "not asked: OpenStack did not answer lately (asked again soon)"
            )
            for i in todo:
                checks[i] = skipped
        elif todo:
            deadline = time.monotonic() + self.deadline
            futures = {i: self._start(deletions[i], deadline) for i in todo}
            wait([f for f in futures.values() if f is not None], timeout=self.deadline)
            for i, future in futures.items():
                if future is not None and future.done():
                    checks[i] = future.result()
                else:
                    checks[i] = Check(
                        Verdict.UNKNOWN, f"no answer from OpenStack within {self.deadline:g}s"
                    )
            asked = [c for i in todo if (c := checks[i]) is not None]
            self.breaker.record(all(c.verdict is not Verdict.UNKNOWN for c in asked))
            self._streak(asked)
        return [check for check in checks if check is not None]

    def _start(self, delete: Delete, deadline: float) -> Future[Check] | None:
        """A lookup on a thread of its own once a slot is free; None if none is in time.

        Daemon threads: a lookup hung on a silent Keystone must not keep a stopping
        daemon from exiting.
        """
        if not self._slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None
        return in_thread(self._lookup, delete, self._slots.release)

    def _lookup(self, delete: Delete) -> Check:
        proof = delete.proof
        assert proof is not None and proof.ident is not None
        try:
            if proof.target == SERVER:
                return _server(self.cloud, proof.ident)
            return _port(self.cloud, delete, proof.ident)
        except OpenStackError as error:
            if error.status in BROKEN:
                return Check(Verdict.BROKEN, f"{error}: {fix(error.status)}")
            return Check(Verdict.UNKNOWN, str(error))

    def _streak(self, checks: list[Check]) -> None:
        """One line when verification stops working, one when it works again."""
        failing = next((c for c in checks if c.verdict in (Verdict.BROKEN, Verdict.UNKNOWN)), None)
        with self._lock:
            before, self._failing = self._failing, failing.verdict if failing else None
        if failing is not None and before is not failing.verdict:
            LOG.log(
                logging.ERROR if failing.verdict is Verdict.BROKEN else logging.WARNING,
                "cannot verify deletions (%s) until it answers again (logged once)",
                failing.detail,
            )
        elif failing is None and before is not None:
            LOG.info("verification of deletions works again")


def _unprovable(delete: Delete) -> Check | None:
    """A check that needs no lookup: nothing to prove, or nothing that could."""
    proof = delete.proof
    if proof is None:
        return Check(Verdict.GONE, "its source is proof")
    if proof.target != PORT:
        return None
    if proof.ident is None:
        return Check(
            Verdict.REFUSED,
            "port deletion without payload.port.id cannot be verified: not deleting it "
            "from K2HR3 (verify_deletions)",
        )
    if not _UUID.fullmatch(proof.ident):
        return Check(
            Verdict.REFUSED,
            f"payload.port.id {proof.ident[:80]!r} is not a UUID: not deleting it from "
            "K2HR3 (verify_deletions)",
        )
    return None


def _server(cloud: Cloud, server_id: str) -> Check:
    if nova.server_exists(cloud, server_id):
        return Check(
            Verdict.EXISTS,
            f"Nova still has server {server_id}: not deleting it from K2HR3 "
            "(a forged or misrouted notification?)",
        )
    return Check(Verdict.GONE, f"Nova has no server {server_id}")


def _port(cloud: Cloud, delete: Delete, port_id: str) -> Check:
    held = neutron.ports(cloud, device_id=delete.cuk)
    if any(port.get("id") == port_id for port in held):
        return Check(
            Verdict.EXISTS,
            f"Neutron still has port {port_id} of device {delete.cuk}: not deleting it "
            "from K2HR3 (a forged or misrouted notification?)",
        )
    addresses = {_ip(entry) for port in held for entry in _fixed_ips(port)}
    # Compared as addresses, not text: "2001:DB8::5" and "2001:db8::5" are one address.
    still = [ip for ip in delete.ips if _normal(ip) in addresses]
    if still:
        return Check(
            Verdict.EXISTS,
            f"Neutron still has {', '.join(still)} on device {delete.cuk}: not deleting "
            "it from K2HR3 (a forged or misrouted notification?)",
        )
    return Check(Verdict.GONE, f"device {delete.cuk} holds none of {', '.join(delete.ips)}")


def _fixed_ips(port: Mapping[str, Any]) -> list[Any]:
    fixed = port.get("fixed_ips")
    return fixed if isinstance(fixed, list) else []


def _ip(entry: Any) -> str | None:
    """A fixed IP of a port, in one text form per address, to compare."""
    value = entry.get("ip_address") if isinstance(entry, Mapping) else None
    return _normal(value) if isinstance(value, str) else None


def _normal(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def in_thread(
    function: Callable[[A], T], argument: A, done: Callable[[], None] = lambda: None
) -> Future[T]:
    """``function(argument)`` on a daemon thread of its own."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(function(argument))
        except BaseException as error:
            future.set_exception(error)
        finally:
            done()

    threading.Thread(target=run, name="verify", daemon=True).start()
    return future
