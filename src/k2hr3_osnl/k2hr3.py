"""The K2HR3 Role API delete call, and what each answer means.

K2HR3 authorises this call by the caller's source address, so there is no token. One
urllib3 connection pool is shared by every worker thread: it is thread-safe and keeps
connections to K2HR3 open between deletions. urllib3 is used directly, not through
``requests``: the call is the same, and ``requests`` added about 0.2 ms of CPU to each
(a third of the daemon's whole cost per notification; see docs/benchmarks.md).
"""

from __future__ import annotations

import enum
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    SSLError,
    TimeoutError,
)

from k2hr3_osnl import __version__

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
        self.verify = verify
        self.cert = cert
        self.dry_run = dry_run
        self._headers = {"User-Agent": f"k2hr3-osnl/{__version__}"}
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._invalid = ""
        try:
            self._path = urllib3.util.parse_url(api_url).request_uri
            self._pool = urllib3.connection_from_url(api_url, **self._pool_options(pool_size))
        except (LocationParseError, ValueError) as error:
            self._invalid = f"invalid api_url: {error}"

    def _pool_options(self, pool_size: int) -> dict[str, object]:
        # No proxy from the environment between us and K2HR3: a pool is always direct.
        options: dict[str, object] = {
            "maxsize": pool_size,
            "block": False,
            "retries": False,  # the handler retries, through the circuit breaker
            "timeout": urllib3.Timeout(connect=self.timeout[0], read=self.timeout[1]),
            "headers": self._headers,
        }
        if self.api_url.lower().startswith("https:"):
            if self.verify is False:
                options["cert_reqs"] = "CERT_NONE"
                # Said once at start-up (config.check), not on every call.
                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            else:
                # Without ca_file: the system's trust store.
                options["cert_reqs"] = "CERT_REQUIRED"
                if isinstance(self.verify, str):
                    options["ca_certs"] = self.verify
            if isinstance(self.cert, tuple):
                options["cert_file"], options["key_file"] = self.cert
            elif self.cert:
                options["cert_file"] = self.cert
        return options

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
        if self._pool is None:
            return Answer(Outcome.REJECTED, None, self._invalid, _since(started))
        url = f"{self._path}?{urllib.parse.urlencode(params)}"
        try:
            response = self._pool.urlopen(
                "DELETE", url, redirect=False, assert_same_host=False, preload_content=True
            )
        except SSLError as error:
            # A certificate problem does not fix itself, but K2HR3 being mid-restart looks
            # the same on the wire; retrying is the safe side.
            return Answer(Outcome.RETRY, None, f"TLS error: {error}", _since(started))
        except (NewConnectionError, ProtocolError) as error:
            # Before TimeoutError: urllib3 makes NewConnectionError a kind of timeout.
            detail = f"connection failed: {_reason(error)}"
            return Answer(Outcome.RETRY, None, detail, _since(started))
        except TimeoutError:
            return Answer(Outcome.RETRY, None, "timed out", _since(started))
        except OSError as error:
            detail = f"connection failed: {_reason(error)}"
            return Answer(Outcome.RETRY, None, detail, _since(started))
        except LocationParseError as error:
            return Answer(Outcome.REJECTED, None, f"invalid api_url: {error}", _since(started))
        except HTTPError as error:
            return Answer(Outcome.RETRY, None, f"request failed: {error}", _since(started))
        status = response.status
        body = "" if status in (200, 204) else response.data[:200].decode("utf-8", "replace")
        return Answer(classify(status), status, body, _since(started))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _since(started: float) -> float:
    return time.monotonic() - started


def _reason(error: Exception) -> str:
    # urllib3 wraps the socket error several levels deep; the innermost says most.
    inner: BaseException = error
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    return str(reason or inner)
