"""A keystoneauth1 session from ``[service_credentials]``, and the one error type.

keystoneauth1 does the OpenStack part: version discovery, the token (kept and renewed,
and fetched again once on a 401), the catalog, TLS. This module only builds the session
from the options, picks endpoints by ``region_name`` and ``interface``, and turns every
failure into :class:`OpenStackError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

# keystoneauth1 (and requests) are imported where a session is made or used: a daemon
# without [service_credentials] never loads them (6 MB, 60 ms).
if TYPE_CHECKING:
    import requests
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1.session import Session

#: The group this module reads (ceilometer's name for the same thing: the account a
#: service uses to ask OpenStack); ``config/opts.py`` registers it under this name.
CREDENTIALS_GROUP = "service_credentials"
#: Seconds a Keystone, Nova or Neutron call may take when [service_credentials]
#: timeout is not set (keystoneauth1 would wait forever).
DEFAULT_TIMEOUT = 30.0


class OpenStackError(Exception):
    """Keystone, Nova or Neutron could not answer; the message says which and why.

    ``status`` is the HTTP status that said no, if one did: 401 and 403 do not heal by
    themselves, a 5xx or no answer at all may.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def listed(response: Any, where: str, key: str) -> list[Any]:
    """The list under ``key`` in a 200 answer to ``where`` (say, "Nova GET
    /servers/detail"); anything else raises :class:`OpenStackError`, with the status."""
    if response.status_code != 200:
        raise OpenStackError(
            f"{where} answered status {response.status_code}", response.status_code
        )
    try:
        found = response.json()[key]
    except (ValueError, KeyError, TypeError):
        raise OpenStackError(f"{where}: not a list of {key}") from None
    if not isinstance(found, list):
        raise OpenStackError(f"{where}: '{key}' is not a list")
    return found


def configured(conf: cfg.ConfigOpts) -> bool:
    """Is there an account to ask OpenStack with? Without one, nothing here runs.

    Without a ``[service_credentials]`` section the group is not even registered
    (:func:`k2hr3_osnl.config.load`).
    """
    return CREDENTIALS_GROUP in conf and bool(conf[CREDENTIALS_GROUP].auth_type)


@dataclass
class Cloud:
    """A session and where its endpoints are: what Nova and Neutron calls go through."""

    session: Session
    region_name: str | None = None
    interface: str = "public"

    def get(
        self,
        service_type: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        microversion: str | None = None,
    ) -> requests.Response:
        """GET ``path`` on the catalog endpoint of ``service_type``; any status returned.

        ``microversion`` asks for that API microversion (keystoneauth1 sends the headers).

        Raises :class:`OpenStackError` when there is no answer: Keystone refuses the
        account, the catalog has no such endpoint, or the connection fails.
        """
        from keystoneauth1 import exceptions as ks_exceptions

        endpoint = {
            "service_type": service_type,
            "interface": self.interface,
            "region_name": self.region_name,
        }
        try:
            return self.session.get(
                path,
                endpoint_filter=endpoint,
                params=params,
                raise_exc=False,
                microversion=microversion,
            )
        except ks_exceptions.Unauthorized as error:
            raise OpenStackError(
                f"Keystone refused the account: {_http(error)}", status=error.http_status or 401
            ) from None
        except ks_exceptions.EndpointNotFound:
            raise OpenStackError(
                f"no {self.interface} {service_type} endpoint in the Keystone catalog"
                + (f" for region {self.region_name}" if self.region_name else "")
            ) from None
        except ks_exceptions.HttpError as error:
            raise OpenStackError(
                f"Keystone answered {_http(error)}", status=error.http_status
            ) from None
        except ks_exceptions.ClientException as error:
            # Connection refused, timeout, TLS, discovery failure: the class says which.
            raise OpenStackError(f"{type(error).__name__}: {_first_line(error)}") from None


def connect(conf: cfg.ConfigOpts) -> Cloud:
    """The session of ``[service_credentials]`` (no request is made yet).

    Raises :class:`OpenStackError` if the options cannot make one (an unknown
    ``auth_type``, a missing ``auth_url``...).
    """
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1 import loading as ks_loading

    group = conf[CREDENTIALS_GROUP]
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, CREDENTIALS_GROUP)
        session = ks_loading.load_session_from_conf_options(conf, CREDENTIALS_GROUP, auth=auth)
    except ks_exceptions.ClientException as error:
        raise OpenStackError(f"[{CREDENTIALS_GROUP}]: {_first_line(error)}") from None
    if session.timeout is None:
        session.timeout = DEFAULT_TIMEOUT
    return Cloud(session, region_name=group.region_name, interface=group.interface)


def check(conf: cfg.ConfigOpts) -> list[str]:
    """Problems with ``[service_credentials]``, for --check-config (no request made)."""
    if not configured(conf):
        return []
    try:
        connect(conf)
    except OpenStackError as error:
        return [str(error)]
    return []


def _http(error: ks_exceptions.HttpError) -> str:
    return f"status {error.http_status}" if error.http_status else type(error).__name__


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
