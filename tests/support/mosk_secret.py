"""A secret shaped like the one MOSK makes for an external notification topic.

MOSK puts one Kubernetes secret per topic in the ``openstack-external`` namespace;
``kubectl get secret TOPIC -o json`` shows its values base64-encoded under ``data``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path


def secret(
    topic: str,
    *,
    hosts: Iterable[str],
    port_amqp: int,
    port_tls: int,
    vhost: str,
    username: str,
    password: str,
    ca_cert: Path,
    client_cert: Path,
    client_key: Path,
    overrides: Mapping[str, str | None] | None = None,
) -> dict[str, object]:
    """The secret as ``kubectl ... -o json`` prints it; ``overrides`` (None: removed)."""
    values: dict[str, str | None] = {
        "hosts": json.dumps(list(hosts)),
        "port_amqp": str(port_amqp),
        "port_amqp-tls": str(port_tls),
        "vhost": vhost,
        "username": username,
        "password": password,
        "ca_cert": ca_cert.read_text(),
        "client_cert": client_cert.read_text(),
        "client_key": client_key.read_text(),
        **(overrides or {}),
    }
    data = {
        name: base64.b64encode(value.encode()).decode()
        for name, value in values.items()
        if value is not None
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": topic, "namespace": "openstack-external"},
        "data": data,
    }
