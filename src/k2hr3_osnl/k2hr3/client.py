"""The K2HR3 Role API delete call, and what each answer means.

K2HR3 authorises this call by the caller's source address, so there is no token. The
calls go through one aiohttp session, which keeps connections to K2HR3 open between
deletions, on one event loop in a background thread (eventloop.py): the handler's
worker threads wait for the answer while the loop does every call's I/O (why:
eventloop.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import ssl
import time
import urllib.parse
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import yarl

from k2hr3_osnl import __version__
from k2hr3_osnl.core.answers import Answer, Outcome, classify, retry_after
from k2hr3_osnl.k2hr3.eventloop import EventLoopThread
from k2hr3_osnl.k2hr3.openings import Openings
from k2hr3_osnl.observability import logs

LOG = logging.getLogger(__name__)

EXTRA = "openstack-auto-v1"

#: The most of an error answer's body that is read, and logged.
BODY_BYTES = 200

#: Beyond a call's own deadline, how long a worker waits for the event loop itself.
LOOP_GRACE_SECONDS = 5.0


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
        self._loop = EventLoopThread("k2hr3-client")
        # Made now, not on the first deletion: loading the trust store takes ~25 ms, which
        # the first deletion after a start would wait for. If it fails, the first call
        # tries again and reports why, as it always has.
        context = _prepared_ssl(verify, cert)
        # Built from values, not from self: the finaliser below must not keep self alive.
        self._session = _Session(
            functools.partial(_session_options, pool_size, self.timeout, verify, cert, context)
        )
        # A client replaced on reload is dropped, not closed: stop its thread then.
        self._finalizer = weakref.finalize(self, self._loop.close, self._session.close)
        self._invalid = ""
        try:
            self._url = yarl.URL(api_url)
            if self._url.scheme not in ("http", "https") or not self._url.host:
                raise ValueError("not an http:// or https:// URL")
            self._base = str(self._url.with_query(None).with_fragment(None))
        except (ValueError, TypeError) as error:
            self._invalid = f"invalid api_url: {error}"
        if not (dry_run or self._invalid):
            # The loop thread and the session now, not on the first deletion after a
            # start, which would wait for both (docs/benchmarks-history.md).
            self._loop.run(self._ready(), timeout=LOOP_GRACE_SECONDS)

    async def _ready(self) -> None:
        try:
            self._session.get()
        except Exception as error:
            # A bad ca_file, say: the first call tries again, and its answer says why.
            LOG.debug("k2hr3 session not made in advance: %s", error)

    def params(self, cuk: str, ips: tuple[str, ...]) -> dict[str, str]:
        params = {"cuk": cuk}
        if ips:
            params["host"] = json.dumps(list(ips))
        params["extra"] = EXTRA
        return params

    def delete(self, cuk: str, ips: tuple[str, ...] = ()) -> Answer:
        return self.delete_many([(cuk, ips)])[0]

    def delete_many(
        self,
        calls: Sequence[tuple[str, tuple[str, ...]]],
        fields: Sequence[Mapping[str, Any]] = (),
    ) -> list[Answer]:
        """Send every ``(cuk, ips)`` deletion at once and wait for all the answers.

        One hand-off to the event loop for the lot, then one log line per call, with
        that call's ``fields`` (which notification, which attempt) attached.
        """
        started = time.monotonic()
        if self.dry_run:
            answers = [Answer(Outcome.DELETED, None, "dry run: not sent", 0.0)] * len(calls)
        elif self._invalid:
            answers = [Answer(Outcome.REJECTED, None, self._invalid, 0.0)] * len(calls)
        else:
            queries = [urllib.parse.urlencode(self.params(cuk, ips)) for cuk, ips in calls]
            try:
                # Each call's own deadline is sum(timeout); this one only guards the loop.
                limit = sum(self.timeout) + LOOP_GRACE_SECONDS
                answers = self._loop.run(self._send_all(queries, started), timeout=limit)
            except TimeoutError:
                timed_out = Answer(Outcome.RETRY, None, "timed out", _since(started))
                answers = [timed_out] * len(calls)
        for index, ((cuk, ips), answer) in enumerate(zip(calls, answers, strict=True)):
            with logs.fields(**(fields[index] if index < len(fields) else {})):
                _log(cuk, ips, answer)
        return answers

    async def _send_all(self, queries: list[str], started: float) -> list[Answer]:
        return list(await asyncio.gather(*(self._send(query, started) for query in queries)))

    async def _send(self, query: str, started: float) -> Answer:
        opening = _Opening()
        try:
            return await self._call(query, started, opening)
        finally:
            opening.done(answered=False)  # a no-op once answered

    async def _call(self, query: str, started: float, opening: _Opening) -> Answer:
        url = yarl.URL(f"{self._base}?{query}", encoded=True)
        try:
            session = self._session.get()
            request = session.delete(url, allow_redirects=False, trace_request_ctx=opening)
            async with request as response:
                opening.done(answered=True)
                status = response.status
                body = b"" if status in (200, 204) else await response.content.read(BODY_BYTES)
                wait = retry_after(response.headers.get("Retry-After"), time.time())
        except (aiohttp.ClientSSLError, ssl.SSLError) as error:
            # A certificate problem does not fix itself, but K2HR3 being mid-restart looks
            # the same on the wire; retrying is the safe side.
            return Answer(Outcome.RETRY, None, f"TLS error: {error}", _since(started))
        except aiohttp.ClientConnectorError as error:
            detail = f"connection failed: {error.os_error.strerror or error.os_error}"
            return Answer(Outcome.RETRY, None, detail, _since(started))
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return Answer(Outcome.RETRY, None, "timed out", _since(started))
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, OSError) as error:
            detail = f"connection failed: {error or type(error).__name__}"
            return Answer(Outcome.RETRY, None, detail, _since(started))
        except aiohttp.InvalidURL as error:
            return Answer(Outcome.REJECTED, None, f"invalid api_url: {error}", _since(started))
        except aiohttp.ClientError as error:
            return Answer(Outcome.RETRY, None, f"request failed: {error}", _since(started))
        detail = body.decode("utf-8", "replace")
        if wait is not None and status not in (200, 204):
            detail = f"{detail} (Retry-After {wait:g}s)".strip()
        else:
            wait = None
        return Answer(classify(status), status, detail, _since(started), wait)

    def close(self) -> None:
        self._finalizer()


class _Session:
    """The client's aiohttp session, made on the loop's thread on first use (aiohttp
    binds a session to the loop it was made on)."""

    def __init__(self, options: Callable[[], dict[str, Any]]) -> None:
        self._options = options
        self._session: aiohttp.ClientSession | None = None
        self._pid = 0

    def get(self) -> aiohttp.ClientSession:
        # A forked worker inherits its parent's session, bound to a loop it does not
        # run (the event loop thread starts afresh there): it makes its own.
        if self._session is None or self._pid != os.getpid():
            self._session = aiohttp.ClientSession(**self._options())
            self._pid = os.getpid()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Opening:
    """A call's hold on the gate (:mod:`k2hr3_osnl.k2hr3.openings`), if it opened a new
    connection, and how long connecting took."""

    __slots__ = ("began", "connect_seconds", "gate")

    def __init__(self) -> None:
        self.gate: Openings | None = None
        self.began = 0.0
        self.connect_seconds: float | None = None

    def done(self, *, answered: bool) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.release(answered=answered, connect_seconds=self.connect_seconds)


def _gate_openings(ceiling: int) -> aiohttp.TraceConfig:
    """aiohttp's public trace hooks around each new connection: wait for the gate, then
    time the connect."""
    gate = Openings(ceiling)

    async def starting(session: Any, context: Any, params: Any) -> None:
        holder = context.trace_request_ctx
        if isinstance(holder, _Opening) and holder.gate is None:
            await gate.acquire()
            holder.gate = gate
            holder.began = time.monotonic()

    async def connected(session: Any, context: Any, params: Any) -> None:
        holder = context.trace_request_ctx
        if isinstance(holder, _Opening) and holder.gate is not None:
            holder.connect_seconds = time.monotonic() - holder.began

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_start.append(starting)
    trace.on_connection_create_end.append(connected)
    return trace


def _ssl(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    # Without ca_file: the system's trust store.
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:  # allow_self_signed_cert
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if isinstance(cert, tuple):
        context.load_cert_chain(*cert)
    elif cert:
        context.load_cert_chain(cert)
    return context


def _prepared_ssl(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext | None:
    try:
        return _ssl(verify, cert)
    except (OSError, ValueError, ssl.SSLError):
        return None


def _session_options(
    pool_size: int,
    timeout: tuple[float, float],
    verify: bool | str,
    cert: str | tuple[str, str] | None,
    context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    return {
        "connector": aiohttp.TCPConnector(limit=pool_size, ssl=context or _ssl(verify, cert)),
        # Made here, on the loop's thread, with the session: one gate per event loop.
        "trace_configs": [_gate_openings(ceiling=pool_size)],
        # A call's deadline in all: connecting, then waiting for the answer.
        "timeout": aiohttp.ClientTimeout(
            total=sum(timeout), sock_connect=timeout[0], sock_read=timeout[1]
        ),
        "headers": {"User-Agent": f"k2hr3-osnl/{__version__}"},
        # No proxy from the environment between us and K2HR3: always direct.
        "trust_env": False,
        "auto_decompress": False,
    }


def _log(cuk: str, ips: tuple[str, ...], answer: Answer) -> None:
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


def _since(started: float) -> float:
    return time.monotonic() - started
