"""Our own kombu connections to the pool's broker, beside oslo.messaging's.

A dry run deletes its queue with one, and the reconciler election holds its token on
one. Both must reach the same broker as the listener, with its TLS and login method,
read from the same public options (``transport_url``, ``[oslo_messaging_rabbit]``).
"""

from __future__ import annotations

import kombu
import oslo_messaging
from oslo_config import cfg


def hosts(conf: cfg.ConfigOpts) -> int:
    """How many brokers the transport URL names (a cluster: several)."""
    url = oslo_messaging.TransportURL.parse(conf, conf.oslo_messaging_notifications.transport_url)
    return max(1, len(url.hosts))


def connect(conf: cfg.ConfigOpts, index: int = 0, heartbeat: float = 0) -> kombu.Connection:
    """A kombu connection (not yet open) to broker ``index`` (modulo) of the transport URL."""
    url = oslo_messaging.TransportURL.parse(conf, conf.oslo_messaging_notifications.transport_url)
    host = url.hosts[index % len(url.hosts)]
    rabbit = conf.oslo_messaging_rabbit
    ssl: dict[str, str] | bool = False
    if rabbit.ssl:
        ssl = {
            key: value
            for key, value in (
                ("ca_certs", rabbit.ssl_ca_file),
                ("certfile", rabbit.ssl_cert_file),
                ("keyfile", rabbit.ssl_key_file),
            )
            if value
        } or True
    return kombu.Connection(
        hostname=host.hostname,
        port=host.port or (5671 if rabbit.ssl else 5672),
        userid=host.username,
        password=host.password,
        virtual_host=url.virtual_host or "/",
        ssl=ssl,
        login_method=rabbit.rabbit_login_method,
        connect_timeout=5,
        heartbeat=heartbeat,
    )
