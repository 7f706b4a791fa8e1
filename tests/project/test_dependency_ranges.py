"""The Debian package depends on the oslo.messaging releases the daemon supports.

``rabbit/seam.py`` reaches into oslo.messaging; the releases it is tested with are the
range in ``pyproject.toml``. ``${python3:Depends}`` carries no versions, so
``debian/control`` states the range itself, and this keeps the two the same: an
upgrade to an untested oslo.messaging must not come in through apt.
"""

from __future__ import annotations

import re
import tomllib

from support import paths

ROOT = paths.ROOT
#: pip's operators as Debian writes them.
DEBIAN_OPERATOR = {">=": ">=", "<": "<<", "<=": "<=", ">": ">>", "==": "="}


def pyproject_range(name: str) -> set[tuple[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (requirement,) = [
        r for r in project["dependencies"] if re.match(rf"{re.escape(name)}\b", r, re.I)
    ]
    spec = requirement[len(name) :].split(";")[0]
    found = set()
    for clause in spec.split(","):
        operator, version = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\w.]+)\s*", clause).groups()
        found.add((DEBIAN_OPERATOR[operator], version))
    return found


def control_range(package: str) -> set[tuple[str, str]]:
    control = (ROOT / "debian" / "control").read_text(encoding="utf-8")
    binary = control.split("\nPackage: ", 1)[1]
    depends = re.search(r"^Depends:(.*?)(?=^\S)", binary, re.M | re.S)
    assert depends, "no Depends in the binary package"
    found = set()
    for item in depends.group(1).split(","):
        match = re.fullmatch(rf"\s*{re.escape(package)}\s*\((\S+)\s+(\S+)\)\s*", item)
        if match:
            found.add((match.group(1), match.group(2)))
    return found


def test_the_debian_package_carries_the_oslo_messaging_range_of_pyproject() -> None:
    expected = pyproject_range("oslo.messaging")
    assert {operator for operator, _ in expected} == {">=", "<<"}, "a lower and an upper bound"
    assert control_range("python3-oslo.messaging") == expected
