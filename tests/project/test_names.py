"""One word for one thing, and no figure that drifted from where it was measured."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from support import paths

ROOT = paths.ROOT
SRC = ROOT / "src" / "k2hr3_osnl"
#: The benchmark report (one run) and the history of earlier measurements.
REPORTS = {
    name: (ROOT / "docs" / name).read_text(encoding="utf-8")
    for name in ("benchmarks.md", "benchmarks-history.md")
}
FILES = sorted(SRC.rglob("*.py"))
#: A measured figure: a rate, a size, a share, a ratio or a CPU cost.
FIGURE = re.compile(r"(?<![\d,.])(\d[\d,]*(?:\.\d+)?)\s?(?:/s\b|MB\b|%|x\b|CPU-ms\b)")


def _sentences_citing_benchmarks(text: str) -> list[tuple[str, str]]:
    """``(sentence, the report it cites)``."""
    # Comments and docstrings alike: join the lines, drop the comment marks, split.
    flat = re.sub(r"\s*\n\s*(?:#:?\s*)?", " ", text)
    return [
        (sentence, name)
        for sentence in re.split(r"(?<=\.)\s", flat)
        for name in REPORTS
        if f"docs/{name}" in sentence
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_a_figure_quoted_from_the_benchmarks_is_the_one_they_measured(path: Path) -> None:
    quoted = [
        (figure, sentence, name)
        for sentence, name in _sentences_citing_benchmarks(path.read_text(encoding="utf-8"))
        for figure in FIGURE.findall(sentence)
    ]
    missing = [
        f"{figure} (docs/{name}) in: {sentence.strip()}"
        for figure, sentence, name in quoted
        if not re.search(rf"(?<![\d,.]){re.escape(figure)}(?![\d,]|\.\d)", REPORTS[name])
    ]
    assert not missing, f"not in the report cited: {missing}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_keeps_a_list_of_names_to_reexport(path: Path) -> None:
    """Import a name from the module that defines it: ``__all__`` hid where things live."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {
        t.id
        for n in tree.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert "__all__" not in names


def test_handler_means_the_handler_only() -> None:
    """A source is a source; the only class called a handler is the core's Handler
    (besides a logging handler and the HTTP server's request handler, their libraries'
    words for what they are)."""
    classes = {
        node.name
        for path in FILES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and "handler" in node.name.lower()
    }
    assert classes <= {"Handler", "JournalHandler", "_RequestHandler"}, classes
    from k2hr3_osnl.core import events

    assert not hasattr(events, "HANDLERS")


MODULES = {
    ".".join(p.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in FILES
}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_each_module_of_ours_is_imported_under_its_own_name(path: Path) -> None:
    """``wiring`` read as ``openstack`` in one file and ``openstack_parts`` in another."""
    renamed = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("k2hr3_osnl"):
            for alias in node.names:
                module = f"{node.module}.{alias.name}"
                if module in MODULES and alias.asname not in (None, f"_{alias.name}"):
                    renamed.append(f"{module} as {alias.asname}")
    assert not renamed
