"""Nova's servers: the deleted ones since a time, page by page, and whether one exists.

Listing deleted servers of every project needs ``all_tenants`` and ``deleted``, which
Nova's default policy gives to admins (see the README for a reader role that will do).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

from k2hr3_osnl.openstack.session import Cloud, OpenStackError

SERVICE = "compute"


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
    if response.status_code != 200:
        raise OpenStackError(
            f"Nova GET /servers/detail?all_tenants=True answered {_status(response)}",
            response.status_code,
        )
    try:
        servers = response.json()["servers"]
    except (ValueError, KeyError, TypeError):
        raise OpenStackError("Nova GET /servers/detail: not a list of servers") from None
    if not isinstance(servers, list):
        raise OpenStackError("Nova GET /servers/detail: 'servers' is not a list")
    return servers


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
