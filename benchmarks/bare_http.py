"""Ceiling b: K2HR3 calls in a loop, nothing else: what one call costs through the library.

Each call is the daemon's own request (a DELETE with cuk, host and extra) against the
stand-in, on one shared ``requests.Session`` or ``urllib3.PoolManager``, from THREADS
threads; or, with ``aiohttp`` (what k2hr3-osnl uses), on one ``ClientSession`` from
THREADS concurrent tasks in one event loop. Prints one JSON line: calls/s and CPU ms per
call, after a warm-up.

    python bare_http.py requests|urllib3|aiohttp URL COUNT THREADS RUN
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.parse

HOSTS = '["172.16.0.1", "2001:db8::6"]'
WARMUP = 200


def main(library: str, url: str, count: str, threads: str, run: str) -> int:
    total, workers = int(count), int(threads)
    if library == "aiohttp":
        return _aiohttp(url, total, workers, int(run))
    if library == "requests":
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        session.trust_env = False
        session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=workers))

        def call(cuk: str) -> int:
            params = {"cuk": cuk, "host": HOSTS, "extra": "openstack-auto-v1"}
            with session.delete(url, params=params, timeout=(5, 30)) as response:
                return response.status_code
    else:
        import urllib3

        pool = urllib3.PoolManager(num_pools=1, maxsize=workers, retries=False)
        timeout = urllib3.Timeout(connect=5, read=30)

        def call(cuk: str) -> int:
            params = {"cuk": cuk, "host": HOSTS, "extra": "openstack-auto-v1"}
            query = urllib.parse.urlencode(params)
            return pool.request("DELETE", f"{url}?{query}", timeout=timeout).status

    counter = iter(range(total + WARMUP))
    lock = threading.Lock()
    marks: list[tuple[float, float]] = []
    failures = 0

    def loop() -> None:
        nonlocal failures
        while True:
            with lock:
                index = next(counter, None)
                if index == WARMUP:
                    marks.append((time.time(), time.process_time()))
            if index is None:
                return
            if call(f"{int(run):08x}-0000-4000-8000-{index:012x}") != 204:
                failures += 1

    pool_threads = [threading.Thread(target=loop) for _ in range(workers)]
    for thread in pool_threads:
        thread.start()
    for thread in pool_threads:
        thread.join()
    (t0, c0), t1, c1 = marks[0], time.time(), time.process_time()
    print(
        json.dumps(
            {
                "library": library,
                "threads": workers,
                "calls": total,
                "failures": failures,
                "per_second": total / (t1 - t0),
                "cpu_ms": 1000 * (c1 - c0) / total,
            }
        )
    )
    return 0


def _aiohttp(url: str, total: int, tasks: int, run: int) -> int:
    import asyncio

    import aiohttp
    import yarl

    async def drive() -> tuple[float, float, int]:
        counter = iter(range(total + WARMUP))
        marks: list[tuple[float, float]] = []
        failures = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
        connector = aiohttp.TCPConnector(limit=tasks)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def loop() -> None:
                nonlocal failures
                for index in counter:
                    if index == WARMUP:
                        marks.append((time.time(), time.process_time()))
                    cuk = f"{run:08x}-0000-4000-8000-{index:012x}"
                    params = {"cuk": cuk, "host": HOSTS, "extra": "openstack-auto-v1"}
                    target = yarl.URL(f"{url}?{urllib.parse.urlencode(params)}", encoded=True)
                    async with session.delete(target, allow_redirects=False) as response:
                        if response.status != 204:
                            failures += 1

            await asyncio.gather(*(loop() for _ in range(tasks)))
        (t0, c0), t1, c1 = marks[0], time.time(), time.process_time()
        return (t1 - t0), (c1 - c0), failures

    seconds, cpu, failures = asyncio.run(drive())
    print(
        json.dumps(
            {
                "library": "aiohttp",
                "threads": tasks,
                "calls": total,
                "failures": failures,
                "per_second": total / seconds,
                "cpu_ms": 1000 * cpu / total,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
