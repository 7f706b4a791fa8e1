"""The package's layout is its architecture: the pure core imports no I/O library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from support import paths

SRC = paths.ROOT / "src" / "k2hr3_osnl"
CORE = sorted(p.stem for p in (SRC / "core").glob("*.py") if p.stem != "__init__")
#: What the core must never pull in, directly or through anything it imports.
EDGES = ("oslo_messaging", "oslo_config", "kombu", "aiohttp")


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_none_of_the_edge_libraries(module: str) -> None:
    code = (
        f"import sys, k2hr3_osnl.core.{module}\n"
        f"print(' '.join(m for m in {EDGES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"k2hr3_osnl.core.{module} imports {result.stdout}"


def test_every_module_lives_in_a_subpackage() -> None:
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert top == ["__init__.py", "__main__.py"]


#: The layers, bottom first (docs/architecture.md, "The layers"). A module may import
#: its own package and any package of a lower layer, never one of its own layer or above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("observability",),
    ("rabbit", "k2hr3", "openstack"),
    ("config", "reconcile"),
    ("process",),
    ("commands",),
    ("__main__",),
)
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}
PACKAGE = "k2hr3_osnl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(module: str, source: str, is_package: bool) -> list[tuple[int, str]]:
    """Every ``k2hr3_osnl`` module ``source`` imports, anywhere in it (functions too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.append((node.lineno, child if child in MODULES else base))
    return [(line, name) for line, name in found if name.split(".")[0] == PACKAGE]


def layer_of(module: str) -> str | None:
    """The package that places ``module`` (None: the package's own ``__init__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def wrong_way(module: str, imported: str) -> bool:
    """Whether importing ``imported`` from ``module`` runs sideways or up the layers."""
    here, there = layer_of(module), layer_of(imported)
    if there is None or here == there:
        return False  # k2hr3_osnl.__version__, or within one package
    assert here is not None and here in RANK, f"{module}: add its package to LAYERS"
    assert there in RANK, f"{imported}: add its package to LAYERS"
    return RANK[there] >= RANK[here]


def test_every_package_has_a_layer() -> None:
    packages = {layer_of(m) for m in MODULES} - {None}
    assert packages == set(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down_the_layers(module: str) -> None:
    path = MODULES[module]
    wrong = [
        f"line {line}: {name}"
        for line, name in imports_of(module, path.read_text(), path.name == "__init__.py")
        if wrong_way(module, name)
    ]
    assert not wrong, f"{module} imports up or across the layers: {wrong}"


def test_the_check_sees_a_late_import_running_up() -> None:
    """The rule reads function-level imports too: a loop hidden by a late import is found."""
    source = "def f():\n    from k2hr3_osnl.config import opts\n"
    (line, name), *_ = imports_of("k2hr3_osnl.openstack.session", source, False)
    assert (line, name) == (2, "k2hr3_osnl.config.opts")
    assert wrong_way("k2hr3_osnl.openstack.session", name)
    assert wrong_way("k2hr3_osnl.rabbit.seam", "k2hr3_osnl.k2hr3.client")  # sideways
    assert not wrong_way("k2hr3_osnl.process.service", "k2hr3_osnl.core.handler")


def _observer_patches(tree: ast.AST) -> list[int]:
    """Lines that set ``<object>.observer`` on anything but ``self``."""
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr == "observer"
                and not (isinstance(target.value, ast.Name) and target.value.id == "self")
            ):
                found.append(node.lineno)
    return found


def test_built_objects_are_not_given_observers_afterwards() -> None:
    """The daemon is assembled in one place (process/service.py's ``build``): each part
    is made with what it reports to, never patched once built (issue 19, item 2)."""
    patches = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := _observer_patches(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert patches == {}
    assert _observer_patches(ast.parse("handler.observer = Observers(())")) == [1]
