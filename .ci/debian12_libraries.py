"""Fail unless the libraries this run imports are Debian 12's own packages.

The debian12 tox environment is a virtualenv over /usr/bin/python3's dist-packages with
nothing installed from PyPI but k2hr3-osnl itself (--no-deps). A stray PyPI copy of a
library would make its green run prove nothing about Debian 12: this says which.
"""

from __future__ import annotations

import importlib.metadata
import sys

DEBIAN = "/usr/lib/python3/dist-packages"
#: Our run-time and test dependencies, and the setuptools that built us, with the
#: version bookworm carries.
BOOKWORM = {
    "setuptools": "66.1.1",
    "oslo.messaging": "14.0.3",
    "oslo.config": "9.0.0",
    "aiohttp": "3.8.4",
    "yarl": "1.8.2",
    "python-daemon": "2.3.2",
    "prometheus-client": "0.16.0",
    "kombu": "5.2.4",
    "keystoneauth1": "5.0.0",
    "hypothesis": "6.67.1",
    "pytest": "7.2.1",
    "pytest-timeout": "2.1.0",
}


def main() -> int:
    wrong = []
    for name, expected in BOOKWORM.items():
        dist = importlib.metadata.distribution(name)
        where = str(dist.locate_file(""))
        print(f"{name} {dist.version} from {where}")
        if where.rstrip("/") != DEBIAN or dist.version != expected:
            wrong.append(f"{name}: {dist.version} from {where}, expected {expected} from {DEBIAN}")
    for line in wrong:
        print(f"not Debian 12's: {line}", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
