"""Neutron's ports: whether one still exists."""

from __future__ import annotations

import urllib.parse

from k2hr3_osnl.openstack.session import Cloud, OpenStackError

SERVICE = "network"


def port_exists(cloud: Cloud, port_id: str) -> bool:
    """True if Neutron still has the port, False on 404."""
    path = f"/v2.0/ports/{urllib.parse.quote(port_id)}"
    response = cloud.get(SERVICE, path)
    if response.status_code == 404:
        return False
    if response.status_code == 200:
        return True
    raise OpenStackError(f"Neutron GET {path} answered status {response.status_code}")
