"""Publishing the way nova and neutron do: oslo.messaging's own Notifier."""

from __future__ import annotations

from typing import Any

import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg


class Notifiers:
    """oslo.messaging's own Notifier, one transport per exchange, as nova and neutron do.

    A notifier publishes to its transport's default exchange, which is the
    ``control_exchange`` option of the configuration it was built from ("nova" in nova,
    "neutron" in neutron), on routing key ``<topic>.<priority>``. The driver decides the
    body: ``messaging`` is flat, ``messagingv2`` wraps it in ``oslo.message``.
    """

    def __init__(self, transport_url: str, durable: bool = False, quorum: bool = False) -> None:
        self.transport_url = transport_url
        #: ``[oslo_messaging_rabbit] amqp_durable_queues`` of the publishing service.
        self.durable = durable
        #: ``[oslo_messaging_rabbit] rabbit_quorum_queue`` of the publishing service.
        self.quorum = quorum
        self._transports: dict[str, oslo_messaging.Transport] = {}

    def transport(self, exchange: str) -> oslo_messaging.Transport:
        if exchange not in self._transports:
            conf = cfg.ConfigOpts()
            for group, group_opts in oslo_messaging.opts.list_opts():
                conf.register_opts(group_opts, group=group)
            conf([], project="k2hr3-osnl-tests", default_config_files=[], use_env=False)
            conf.set_override("control_exchange", exchange)
            conf.set_override("amqp_durable_queues", self.durable, "oslo_messaging_rabbit")
            conf.set_override("rabbit_quorum_queue", self.quorum, "oslo_messaging_rabbit")
            self._transports[exchange] = oslo_messaging.get_notification_transport(
                conf, url=self.transport_url
            )
        return self._transports[exchange]

    def notify(
        self,
        exchange: str,
        topic: str,
        driver: str,
        event_type: str,
        payload: Any,
        publisher_id: str,
        priority: str = "info",
    ) -> None:
        notifier = oslo_messaging.Notifier(
            self.transport(exchange),
            publisher_id=publisher_id,
            driver=driver,
            topics=[topic],
            # A failed publish must fail the test, not be logged and forgotten.
            retry=3,
        )
        getattr(notifier, priority)({}, event_type, payload)

    def close(self) -> None:
        for transport in self._transports.values():
            transport.cleanup()
        self._transports.clear()


# Deletion notifications built from the real samples, with a fresh instance UUID each, so
# that every test knows exactly which cuks it expects at K2HR3.
