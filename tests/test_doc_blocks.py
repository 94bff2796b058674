"""Docs that are output (issue 26): a generated block of the docs agrees with the command that writes it
(tools/doc_blocks.py), and every file of measured figures no command regenerates says it is a dated record."""
from __future__ import annotations

import re
import sys

import pytest

from support import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import doc_blocks  # noqa: E402

_NUMBER = re.compile(r"-?\d+\.\d+")


def _agree(got: str, want: str) -> bool:
    """The same text, and the same figures to the rounding of another instruction set (the block is recorded
    with one thread on this machine's kernels; a CPU with other kernels rounds the sums differently)."""
    if _NUMBER.sub("#", got) != _NUMBER.sub("#", want):
        return False
    return all(abs(float(a) - float(b)) <= 2e-3 * max(1.0, abs(float(b)))
               for a, b in zip(_NUMBER.findall(got), _NUMBER.findall(want)))


@pytest.mark.parametrize("name", list(doc_blocks.BLOCKS))
def test_a_generated_block_agrees_with_its_command(name):
    block, output = doc_blocks.block(name), doc_blocks.output(name)
    assert _agree(block, output), (f"{doc_blocks.BLOCKS[name][0]}: the {name!r} block differs from its command; "
                                   f"regenerate it: python tools/doc_blocks.py update\n--- block\n{block}--- "
                                   f"command\n{output}")


def test_the_comparison_catches_a_changed_figure():
    text = doc_blocks.block("demo")
    changed = text.replace(_NUMBER.findall(text)[1], "0.6536")
    assert _agree(text, text) and not _agree(changed, text)


@pytest.mark.parametrize("path", doc_blocks.RECORDS)
def test_figures_no_command_regenerates_are_marked_as_dated_records(path):
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    marked = [line for line in lines[:8] if line.startswith(doc_blocks.DATED_RECORD)]
    assert marked, f"{path}: its figures are measured, not generated: open it with a '{doc_blocks.DATED_RECORD}' line"
    assert re.search(r"20\d\d-\d\d-\d\d", marked[0]), f"{path}: the dated-record line must give the date"
