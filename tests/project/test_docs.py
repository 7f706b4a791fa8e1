"""The configuration the docs show works when pasted (issue 18).

oslo.config keeps an inline ``# comment`` as part of the value, so ``retry = -1  # the
default`` pasted into nova.conf is a broken value. Every ini block of the README and
docs/ is checked for them, and every block of ours (not nova's or neutron's) is loaded
with ``--check-config`` on top of the shipped configuration, as an operator pastes it
into their file.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import paths

ROOT = paths.ROOT
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_SECTION = re.compile(r"^\[\w+\]\s*$", re.M)
#: ``key = value # comment``: the comment would be part of the value.
_INLINE = re.compile(r"^\s*[\w.-]+\s*=.*\s#")
#: Where a block is another service's file: said just before it.
_OTHERS = re.compile(r"nova\.conf|neutron\.conf")
#: Said just before a block that is printed output for the operator to fill in: the
#: next block of ours in the same document fills it in, and both load together.
_FILLED_IN_BELOW = "<!-- filled in below -->"
#: Paths the docs name as examples (certificates): absent on a test machine.
_ABSENT_FILE = re.compile(r"is not readable")


@dataclass(frozen=True)
class Block:
    where: str
    text: str
    ours: bool
    #: The block that fills this one in (see _FILLED_IN_BELOW), if any.
    completion: str = ""

    def __str__(self) -> str:
        return self.where


def blocks() -> list[Block]:
    found = []
    for doc in DOCS:
        text = doc.read_text("utf-8")
        for match in _FENCE.finditer(text):
            body = match.group(2)
            if not _SECTION.search(body):
                continue
            line = text.count("\n", 0, match.start()) + 1
            before = text[max(0, match.start() - 200) : match.start()]
            name = f"{doc.relative_to(ROOT)}:{line}"
            found.append(Block(name, body, ours=not _OTHERS.search(before)))
            if _FILLED_IN_BELOW in before:
                found[-1] = Block(name, body, ours=True, completion="pending")
            elif found[:-1] and found[-2].completion == "pending" and found[-1].ours:
                found[-2] = Block(found[-2].where, found[-2].text, True, completion=body)
    assert not any(block.completion == "pending" for block in found), "nothing fills it in"
    return found


BLOCKS = blocks()


def test_the_docs_have_config_blocks() -> None:
    assert len(BLOCKS) >= 5
    assert any(not block.ours for block in BLOCKS), "nova.conf/neutron.conf snippets found"


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_no_config_block_has_an_inline_comment(block: Block) -> None:
    inline = [line for line in block.text.splitlines() if _INLINE.match(line)]
    assert inline == [], f"{block}: oslo.config would keep these comments in the values"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.ours], ids=str)
def test_every_config_block_of_ours_loads_with_check_config(block: Block, tmp_path: Path) -> None:
    pasted = tmp_path / "pasted.conf"
    pasted.write_text(block.text + block.completion, "utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "k2hr3_osnl",
            "-c",
            str(ROOT / "etc" / "k2hr3-osnl.conf"),
            "-c",
            str(pasted),
            "--check-config",
            "-f",
            str(tmp_path / "log"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "", f"{block}: {done.stderr}"
    lines = done.stdout.splitlines()
    problems = [line for line in lines[:-1] if not line.startswith("warning: ")]
    assert [p for p in problems if not _ABSENT_FILE.search(p)] == [], f"{block}: {done.stdout}"
