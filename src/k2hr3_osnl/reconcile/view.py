"""verify_deletions' start check: the account must prove it sees every project.

An account that sees one project gets 404 for every other project's server and an empty
port list for its devices: with it, every forged deletion would look proven. So before
the daemon consumes, Nova's ``all_tenants`` listing must answer, and Neutron must list
the ports of servers of other projects that Nova shows with addresses (or Nova must show
the servers of the projects whose VM ports Neutron lists). A 401/403 or a narrower view
refuses the start in one line (:class:`ViewTooNarrow`); no answer at all does not: the
check runs again later from the re-check thread (:func:`prove_later`), and a view then
found too narrow breaks verification instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from k2hr3_osnl.openstack import neutron, nova
from k2hr3_osnl.openstack.session import Cloud, OpenStackError
from k2hr3_osnl.reconcile.verify import (
    BROKEN,
    DEADLINE,
    FIX,
    FIX_401,
    CloudVerifier,
    in_thread,
)

LOG = logging.getLogger(__name__)

#: Servers asked for when proving that the account sees every project.
VIEW_SAMPLE = 50

_LATER = "verifying as it can, and checking again later"


class ViewTooNarrow(Exception):
    """The account cannot prove deletions of every project: verification would be a no-op."""


def check_view(cloud: Cloud, deadline: float = DEADLINE) -> bool:
    """At start: prove the account sees every project, or raise :class:`ViewTooNarrow`.

    An account that sees one project gets 404 for every other project's server and an
    empty port list for its devices: every forged deletion would look proven. Keystone,
    Nova or Neutron not answering now is not a reason to stop: one line, and False (it
    is checked again later, :func:`prove_later`).
    """
    future = in_thread(_view, cloud)
    try:
        view = future.result(timeout=deadline)
    except TimeoutError:
        view = _View(
            f"cannot check at start that the account sees every project: no answer "
            f"within {deadline:g}s; {_LATER}",
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
                f"too narrow; {FIX}"
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
                f"shows VM ports of {len(foreign)}: Nova's view is too narrow; {FIX}"
            )
        return _View(
            "could not prove that the account sees every project: Nova and Neutron show "
            f"only project {own} (fine if it is the only one with VMs)"
        )
    except OpenStackError as error:
        if error.status == 401:
            return _View(refusal=f"{where}: {error}; {FIX_401}")
        if error.status in BROKEN:
            return _View(refusal=f"{where}: {error}: the account cannot see every project; {FIX}")
        return _View(f"{unchecked} ({error}); {_LATER}", unchecked=True)
    except Exception as error:  # keystoneauth1 raising outside Cloud.get: not fatal
        return _View(f"{unchecked}: {error}; {_LATER}", unchecked=True)


def prove_later(verifier: CloudVerifier) -> None:
    """The start check, late: a view found too narrow now breaks verification (every
    deletion is parked, and counted as broken) rather than stopping the daemon."""
    view = _view(verifier.cloud)
    if view.refusal is not None:
        verifier.too_narrow = view.refusal
        LOG.error("verification is broken until the account is fixed: %s", view.refusal)
    elif view.warning is not None and view.unchecked:
        return  # still no answer: again at the next look
    elif view.warning is not None:
        LOG.warning("%s", view.warning)
    else:
        LOG.info("the account sees every project: verification is proven to work")
    verifier.view_proven = True
