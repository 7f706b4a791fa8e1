"""Neutron's ports: whether one still exists, and the ports a device still holds."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from k2hr3_osnl.openstack.session import Cloud, OpenStackError, listed

SERVICE = "network"


def port_exists(cloud: Cloud, port_id: str) -> bool:
    """True if Neutron still has the port, False on 404."""
    path = f"/v2.0/ports/{urllib.parse.quote(port_id)}"
    response = cloud.get(SERVICE, path)
    if response.status_code == 404:
        return False
    if response.status_code == 200:
        return True
    raise OpenStackError(
        f"Neutron GET {path} answered status {response.status_code}", response.status_code
    )


def ports(cloud: Cloud, **query: Any) -> list[Mapping[str, Any]]:
    """Ports matching ``query`` (``device_id=...``, ``limit=...``): those the account
    may see. Neutron keeps no deleted ports, so this is what a device holds now."""
    response = cloud.get(SERVICE, "/v2.0/ports", params=query)
    where = "/v2.0/ports?" + urllib.parse.urlencode(query)
    found = listed(response, f"Neutron GET {where}", "ports")
    return [port for port in found if isinstance(port, Mapping)]
