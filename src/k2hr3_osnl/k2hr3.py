"""The K2HR3 Role API delete call, and what each answer means.

K2HR3 authorises this call by the caller's source address, so there is no token. One
``requests.Session`` is shared by every worker thread: its connection pool is
thread-safe and keeps connections to K2HR3 open between deletions.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

LOG = logging.getLogger(__name__)

EXTRA = "openstack-auto-v1"


class Outcome(enum.Enum):
    DELETED = "deleted"
    #: Worth another try later: K2HR3's storage or server is in trouble, or unreachable.
    RETRY = "retry"
    #: Trying again will not help: the caller is not allowed, or the URL is wrong.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: Outcome
    status: int | None
    detail: str
    seconds: float


def classify(status: int) -> Outcome:
    """The status policy: 204/200 done; 403, 408, 429, 5xx retry; other codes reject.

    400 means the caller is not allowed or K2HR3 is misconfigured, and 404 a wrong
    path: an operator must act, so hammering would only add noise.
    """
    if status in (200, 204):
        return Outcome.DELETED
    if status in (403, 408, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.REJECTED


class RoleClient:
    """Calls ``DELETE {api_url}?cuk=...&host=[...]&extra=openstack-auto-v1``."""

    def __init__(
        self,
        api_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        dry_run: bool = False,
        pool_size: int = 64,
    ) -> None:
        self.api_url = api_url
        self.timeout = (connect_timeout, read_timeout)
        self.dry_run = dry_run
        self.session = requests.Session()
        self.session.verify = verify
        self.session.cert = cert
        self.session.trust_env = False  # no proxy from the environment between us and K2HR3
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def params(self, cuk: str, ips: tuple[str, ...]) -> dict[str, str]:
        params = {"cuk": cuk}
        if ips:
            params["host"] = json.dumps(list(ips))
        params["extra"] = EXTRA
        return params

    def delete(self, cuk: str, ips: tuple[str, ...] = ()) -> Answer:
        params = self.params(cuk, ips)
        started = time.monotonic()
        if self.dry_run:
            answer = Answer(Outcome.DELETED, None, "dry run: not sent", 0.0)
        else:
            answer = self._send(params, started)
        LOG.info(
            "k2hr3 DELETE cuk=%s host=%s status=%s %.3fs %s%s",
            cuk,
            list(ips) or "all",
            answer.status if answer.status is not None else "-",
            answer.seconds,
            answer.outcome.value,
            f" ({answer.detail})" if answer.detail else "",
            extra={
                "cuk": cuk,
                "ips": list(ips),
                "status": answer.status,
                "outcome": answer.outcome.value,
                "duration": answer.seconds,
            },
        )
        return answer

    def _send(self, params: dict[str, str], started: float) -> Answer:
        try:
            response = self.session.delete(self.api_url, params=params, timeout=self.timeout)
        except requests.exceptions.InvalidURL as error:
            return Answer(Outcome.REJECTED, None, f"invalid api_url: {error}", _since(started))
        except requests.exceptions.SSLError as error:
            # A certificate problem does not fix itself, but K2HR3 being mid-restart looks
            # the same on the wire; retrying is the safe side.
            return Answer(Outcome.RETRY, None, f"TLS error: {error}", _since(started))
        except requests.exceptions.Timeout:
            return Answer(Outcome.RETRY, None, "timed out", _since(started))
        except requests.exceptions.ConnectionError as error:
            detail = f"connection failed: {_reason(error)}"
            return Answer(Outcome.RETRY, None, detail, _since(started))
        except requests.exceptions.RequestException as error:
            return Answer(Outcome.RETRY, None, f"request failed: {error}", _since(started))
        with response:
            body = "" if response.status_code in (200, 204) else response.text[:200]
        return Answer(classify(response.status_code), response.status_code, body, _since(started))

    def close(self) -> None:
        self.session.close()


def _since(started: float) -> float:
    return time.monotonic() - started


def _reason(error: Exception) -> str:
    # urllib3 wraps the socket error several levels deep; the innermost says most.
    inner: BaseException = error
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    return str(reason or inner)
