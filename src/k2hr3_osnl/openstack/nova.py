"""Nova's servers: the deleted ones since a time, page by page, and whether one exists.

Listing deleted servers of every project needs ``all_tenants`` and ``deleted``, which
Nova's default policy gives to admins (see the README for a reader role that will do).
Whether every cell answered, and what time Nova says it is, come from
:func:`cells`.
"""

from __future__ import annotations

import datetime
import email.utils
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from k2hr3_osnl.openstack.session import Cloud, OpenStackError, listed

SERVICE = "compute"
#: From this microversion on, GET /os-services lists a down cell's nova-compute
#: services with status UNKNOWN instead of leaving them out without a word.
DOWN_CELLS_MICROVERSION = "2.69"
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Cells:
    """What ``GET /os-services`` said: are cells down, and what time is it in Nova."""

    #: nova-compute services Nova could not reach (a cell is down); None: cannot tell.
    unknown: int | None
    #: Why it cannot tell (Nova too old for 2.69, a policy refusing the listing...).
    problem: str = ""
    #: Nova's clock (Unix time): the ``Date`` of its answer or, without one, the newest
    #: heartbeat of its services; None if neither is there.
    clock: float | None = None
    #: Nova failed to answer this time (5xx, 401, 429): it may tell next time.
    transient: bool = False


def cells(cloud: Cloud) -> Cells:
    """Ask Nova, at microversion 2.69, whether any cell is down.

    A deleted-server listing uses filters and paging, so even at 2.69 Nova leaves a down
    cell's servers out of it silently; its compute services, though, are listed as
    ``UNKNOWN``. Raises :class:`OpenStackError` only when Nova gives no answer at all.
    """
    response = cloud.get(
        SERVICE,
        "/os-services",
        params={"binary": "nova-compute"},
        microversion=DOWN_CELLS_MICROVERSION,
    )
    clock = date_of(response)
    if response.status_code != 200:
        problem = f"Nova GET /os-services answered {_status(response)}"
        transient = response.status_code >= 500 or response.status_code in (401, 408, 429)
        return Cells(None, problem, clock, transient)
    try:
        services = response.json()["services"]
    except (ValueError, KeyError, TypeError):
        services = None
    if not isinstance(services, list):
        return Cells(None, "Nova GET /os-services: not a list of services", clock)
    down = sum(1 for s in services if isinstance(s, Mapping) and s.get("status") == UNKNOWN)
    return Cells(down, "", clock if clock is not None else _newest_heartbeat(services))


def _newest_heartbeat(services: list[Any]) -> float | None:
    """The latest ``updated_at`` of the services: Nova's database clock, seconds behind.

    Each service stamps it every ``report_interval`` (10 s), by Nova's own time.
    """
    newest: float | None = None
    for service in services:
        text = service.get("updated_at") if isinstance(service, Mapping) else None
        if not isinstance(text, str):
            continue
        try:
            stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.UTC)
        newest = max(newest or stamp.timestamp(), stamp.timestamp())
    return newest


def date_of(response: Any) -> float | None:
    """The ``Date`` header of an answer as Unix time: Nova's clock; None if absent or bad."""
    text = response.headers.get("Date")
    if not text:
        return None
    try:
        stamp = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def deleted_servers(cloud: Cloud, changes_since: str, page_size: int) -> Iterator[list[Any]]:
    """Pages of servers deleted (and soft-deleted) since ``changes_since`` (ISO 8601).

    Follows ``servers_links`` by its marker, with our own query each time: a ``next``
    link's host may be one that only Nova's proxy knows. Raises :class:`OpenStackError`
    on any failure, including in the middle of the listing.
    """
    params: dict[str, Any] = {
        "all_tenants": "True",
        "deleted": "True",
        "changes-since": changes_since,
        "limit": page_size,
    }
    markers: set[str] = set()
    while True:
        response = cloud.get(SERVICE, "/servers/detail", params=params)
        if response.status_code != 200:
            raise OpenStackError(f"Nova GET /servers/detail answered {_status(response)}")
        try:
            body = response.json()
            servers = body["servers"]
            links = body.get("servers_links") or []
        except (ValueError, KeyError, TypeError, AttributeError):
            raise OpenStackError("Nova GET /servers/detail: not a list of servers") from None
        if not isinstance(servers, list):
            raise OpenStackError("Nova GET /servers/detail: 'servers' is not a list")
        yield servers
        marker = _next_marker(links)
        if marker is None or not servers:
            return
        if marker in markers:
            raise OpenStackError(f"Nova GET /servers/detail: marker {marker} repeats")
        markers.add(marker)
        params = {**params, "marker": marker}


def server_exists(cloud: Cloud, server_id: str) -> bool:
    """True if Nova still has the server (soft-deleted included), False on 404."""
    response = cloud.get(SERVICE, f"/servers/{urllib.parse.quote(server_id)}")
    if response.status_code == 404:
        return False
    if response.status_code == 200:
        return True
    raise OpenStackError(
        f"Nova GET /servers/{server_id} answered {_status(response)}", response.status_code
    )


def any_project_servers(cloud: Cloud, limit: int) -> list[Any]:
    """A page of live servers of every project (``all_tenants``): what only an account
    that sees every project may list. Raises :class:`OpenStackError` (with the status)
    otherwise."""
    params = {"all_tenants": "True", "limit": limit}
    response = cloud.get(SERVICE, "/servers/detail", params=params)
    return listed(response, "Nova GET /servers/detail?all_tenants=True", "servers")


def _next_marker(links: Any) -> str | None:
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next":
            query = urllib.parse.urlsplit(str(link.get("href", ""))).query
            markers = urllib.parse.parse_qs(query).get("marker")
            if markers:
                return markers[-1]
    return None


def _status(response: Any) -> str:
    return f"status {response.status_code}"
