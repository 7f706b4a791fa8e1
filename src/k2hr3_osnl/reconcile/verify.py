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
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from k2hr3_osnl.core.events import Delete, decide
from k2hr3_osnl.core.handler import Handler
from k2hr3_osnl.core.parking import Parked
from k2hr3_osnl.core.recheck import Rechecks, next_check
from k2hr3_osnl.core.types import Notification, Result
from k2hr3_osnl.core.verification import Breaker, Check, Verdict, Verifier
from k2hr3_osnl.openstack import neutron, nova
from k2hr3_osnl.openstack.session import Cloud, OpenStackError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
A = TypeVar("A")

#: Lookups in flight at once: enough for a batch, not a flood on Nova or Neutron.
MAX_LOOKUPS = 8
#: Seconds one batch's verification may take, whatever Keystone, Nova or Neutron do.
DEADLINE = 10.0
#: Servers asked for when proving at start that the account sees every project.
VIEW_SAMPLE = 50
#: Seconds between looks at the refusals held for another check.
RECHECK_INTERVAL = 10.0
#: The outcome counted when a refusal is final (k2hr3_osnl_verifications_total).
DROPPED = "dropped"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_BROKEN = (401, 403)
_FIX = (
    "give the account of [service_credentials] a role that reads servers and ports of "
    "every project (admin, or a reader role the Nova and Neutron policies allow), or set "
    "[reconcile] verify_deletions = false"
)
_FIX_401 = (
    "check the account of [service_credentials] (username, password, project, "
    "auth_url), or set [reconcile] verify_deletions = false"
)


_LATER = "verifying as it can, and checking again later"


def _fix(status: int | None) -> str:
    return _FIX_401 if status == 401 else _FIX


class ViewTooNarrow(Exception):
    """The account cannot prove deletions of every project: verification would be a no-op."""


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
        #: The start check could not run (OpenStack did not answer): :meth:`prove_view`
        #: runs it later, from the re-check thread.
        self.view_proven = view_proven
        #: Set once a late start check found the view too narrow: verification is broken.
        self.too_narrow: str | None = None
        #: Lookups in flight, hung ones included: a hung Keystone holds at most these.
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._failing: Verdict | None = None  # within a streak of failures: log once

    def prove_view(self) -> None:
        """The start check, late: a view found too narrow now breaks verification (every
        deletion is parked, and counted as broken) rather than stopping the daemon."""
        view = _view(self.cloud)
        if view.refusal is not None:
            self.too_narrow = view.refusal
            LOG.error("verification is broken until the account is fixed: %s", view.refusal)
        elif view.warning is not None and view.unchecked:
            return  # still no answer: again at the next look
        elif view.warning is not None:
            LOG.warning("%s", view.warning)
        else:
            LOG.info("the account sees every project: verification is proven to work")
        self.view_proven = True

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
        return _in_thread(self._lookup, delete, self._slots.release)

    def _lookup(self, delete: Delete) -> Check:
        proof = delete.proof
        assert proof is not None and proof.ident is not None
        try:
            if proof.target == "server":
                return _server(self.cloud, proof.ident)
            return _port(self.cloud, delete, proof.ident)
        except OpenStackError as error:
            if error.status in _BROKEN:
                return Check(Verdict.BROKEN, f"{error}: {_fix(error.status)}")
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
    if proof.target != "port":
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


def check_view(cloud: Cloud, deadline: float = DEADLINE) -> bool:
    """At start: prove the account sees every project, or raise :class:`ViewTooNarrow`.

    An account that sees one project gets 404 for every other project's server and an
    empty port list for its devices: every forged deletion would look proven. Keystone,
    Nova or Neutron not answering now is not a reason to stop: one line, and False (it
    is checked again later, :meth:`CloudVerifier.prove_view`).
    """
    future = _in_thread(_view, cloud)
    try:
        view = future.result(timeout=deadline)
    except TimeoutError:
        view = _View(
            f"cannot check at start that the account sees every project: no answer "
            f"within {deadline:g}s; verifying as it can, and checking again later",
            unchecked=True,
        )
    if view.refusal is not None:
        raise ViewTooNarrow(view.refusal)
    if view.warning is not None:
        LOG.warning("%s", view.warning)
    return not view.unchecked


@dataclass(frozen=True)
class _View:
    """What the start check found: a reason to refuse, or one to warn (or neither)."""

    warning: str | None = None
    refusal: str | None = None
    #: OpenStack did not answer: nothing is proven either way.
    unchecked: bool = False


def _view(cloud: Cloud) -> _View:
    where = "[reconcile] verify_deletions"
    unchecked = "cannot check at start that the account sees every project"
    try:
        servers = nova.any_project_servers(cloud, VIEW_SAMPLE)
        own = cloud.session.get_project_id()
        others = [
            s for s in servers if isinstance(s, Mapping) and s.get("tenant_id") not in (None, own)
        ]
        # Those with addresses (Nova's network cache): Neutron must list ports for them.
        addressed = [s for s in others if s.get("addresses")]
        for server in addressed[:3]:
            if neutron.ports(cloud, device_id=server.get("id")):
                return _View()
        if addressed:
            return _View(
                refusal=f"{where}: Neutron lists no port of {min(3, len(addressed))} "
                "server(s) of other projects that Nova shows with addresses: its view is "
                f"too narrow; {_FIX}"
            )
        if others:
            return _View()  # Nova sees other projects, and none of theirs has an address
        foreign = {
            p.get("project_id", p.get("tenant_id"))
            for p in neutron.ports(cloud, limit=VIEW_SAMPLE)
            if str(p.get("device_owner", "")).startswith("compute:")
        } - {None, own}
        if foreign:
            return _View(
                refusal=f"{where}: Nova lists no server of another project though Neutron "
                f"shows VM ports of {len(foreign)}: Nova's view is too narrow; {_FIX}"
            )
        return _View(
            "could not prove that the account sees every project: Nova and Neutron show "
            f"only project {own} (fine if it is the only one with VMs)"
        )
    except OpenStackError as error:
        if error.status == 401:
            return _View(refusal=f"{where}: {error}; {_FIX_401}")
        if error.status in _BROKEN:
            return _View(refusal=f"{where}: {error}: the account cannot see every project; {_FIX}")
        return _View(f"{unchecked} ({error}); {_LATER}", unchecked=True)
    except Exception as error:  # keystoneauth1 raising outside Cloud.get: not fatal
        return _View(f"{unchecked}: {error}; {_LATER}", unchecked=True)


def _in_thread(
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


class Rechecker:
    """Checks the held refusals (:mod:`k2hr3_osnl.core.recheck`) again when they are due.

    Gone now: handed to the handler as the daemon's own notification (not verified
    again). Still there at the last check: dropped, counted and logged as refused. No
    answer: left as it is, for the next look.
    """

    def __init__(
        self,
        rechecks: Rechecks,
        verifier: Verifier,
        handler: Handler,
        interval: float = RECHECK_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rechecks = rechecks
        self.verifier = verifier
        self.handler = handler
        self.interval = interval
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="recheck", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if isinstance(self.verifier, CloudVerifier) and not self.verifier.view_proven:
                    self.verifier.prove_view()
                self.run_once()
            except Exception:  # a bug of ours: the files stay, the next look tries again
                LOG.exception("re-checking refused deletions failed")
            self._stop.wait(self.interval)

    def run_once(self) -> None:
        for item in self.rechecks.due(self._clock()):
            if self._stop.is_set():
                return
            self._recheck(item)

    def _recheck(self, item: Parked) -> None:
        decision = decide(item.event_type, item.payload)
        if not isinstance(decision, Delete) or decision.proof is None:
            LOG.warning("%s: not a deletion to verify (edited?): removed", item.path)
            self.rechecks.remove(item)
            return
        target = decision.proof.target
        observer = self.handler.observer
        (check,) = self.verifier.verify([decision])
        if check.verdict is Verdict.GONE:
            observer.verified(target, check.verdict.value)
            note = Notification(
                item.message_id,
                item.event_type,
                item.publisher_id,
                item.payload,
                received=time.monotonic(),
                internal=True,
            )
            LOG.info(
                "message_id=%s re-checked: %s (first refused %.0fs ago): sending it",
                item.message_id,
                check.detail,
                self._clock() - item.first_seen,
            )
            if self.handler.handle_batch([note])[0] is not Result.REQUEUED:
                self.rechecks.remove(item)
        elif check.verdict in (Verdict.EXISTS, Verdict.REFUSED):
            if next_check(item.first_seen, item.attempts + 1) is not None:
                observer.verified(target, check.verdict.value)
                self.rechecks.checked(item)
                return
            observer.verified(target, DROPPED)
            self.rechecks.remove(item)
            LOG.warning(
                "message_id=%s event_type=%s %s: refused for good after %d checks over "
                "%.0f minutes: %s",
                item.message_id,
                item.event_type,
                Result.INVALID.value,
                item.attempts + 1,
                (self._clock() - item.first_seen) / 60,
                check.detail,
                extra={"outcome": Result.INVALID.value},
            )
        # No answer: left as it is; the next look asks again.
