"""A secret shaped like the one MOSK makes for an external notification topic.

As MOSK's page lists it: one Kubernetes secret per topic in the ``openstack-external``
namespace, named ``openstack-<topic>-notifications`` (its ``kubectl get secret``
listing), of type ``Opaque``, with the keys ``hosts``, ``port_amqp``, ``port_amqp-tls``,
``vhost``, ``username``, ``password``, ``ca_cert``, ``client_cert`` and ``client_key``.
``kubectl get secret NAME -o json`` (or ``-o yaml``) shows the values base64-encoded
under ``data``. The value formats (``hosts`` as a JSON list, PEM text) are not on the
page: they are assumptions, and mosk-config accepts the other forms an operator may meet.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml


def secret_name(topic: str) -> str:
    """The secret's name for ``topic``, from the listing on MOSK's page."""
    return f"openstack-{topic}-notifications"


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
        "metadata": {"name": secret_name(topic), "namespace": "openstack-external"},
        "data": data,
    }


def as_yaml(document: Mapping[str, object]) -> str:
    """The secret as ``kubectl ... -o yaml`` prints it (block style, keys sorted)."""
    return yaml.safe_dump(dict(document), default_flow_style=False, sort_keys=True)
