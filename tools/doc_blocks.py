"""Docs that are output: blocks of the docs written by the command that produces them.

A generated block sits between `<!-- generated: NAME -->` and `<!-- end generated -->`; BLOCKS maps NAME to the
file holding it and the command (argv of `fastafm`) whose output it is. `python tools/doc_blocks.py update`
reruns every command and rewrites its block; `python tools/doc_blocks.py check` (and tests/test_doc_blocks.py)
fails where a block and its command disagree. Figures that a command cannot reproduce here (benchmarks,
Frappe runs, other machines) are dated records instead: their file opens with a line starting with
DATED_RECORD, which the test requires of every file in RECORDS.
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: name -> (file, fastafm argv, first line of the output kept): one thread, so the run is bit-identical on a
#: machine (seconds, which vary, are in the lines before the kept part).
BLOCKS = {
    "demo": ("README.md", ["demo", "--threads", "1", "--quiet"], "| model | test RMSE |"),
}

DATED_RECORD = "> **Dated record"
#: Files of measured figures that no test regenerates: each opens (after its title) with a DATED_RECORD line
#: saying when, where and with which command they were measured.
RECORDS = ("bench/FRAPPE.md", "bench/RESULTS.md", "bench/ACCURACY.md", "docs/accuracy.md", "docs/serving.md",
           "docs/distributed.md")


def run(argv) -> str:
    """The output of `fastafm ARGV` from its kept line on."""
    from fastafm.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(list(argv))
    if code != 0:
        raise RuntimeError(f"fastafm {' '.join(argv)} exited {code}")
    return buffer.getvalue()


def output(name: str) -> str:
    _, argv, first = BLOCKS[name]
    text = run(argv)
    return text[text.index(first):].rstrip() + "\n"


def _pattern(name: str):
    return re.compile(rf"(<!-- generated: {re.escape(name)} -->\n```\n)(.*?)(```\n<!-- end generated -->)", re.S)


def block(name: str) -> str:
    """The block's text as the file holds it."""
    path = ROOT / BLOCKS[name][0]
    match = _pattern(name).search(path.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{path}: no generated block {name!r}")
    return match.group(2)


def update(name: str) -> None:
    path = ROOT / BLOCKS[name][0]
    text = path.read_text(encoding="utf-8")
    new = _pattern(name).sub(lambda m: m.group(1) + output(name) + m.group(3), text, count=1)
    path.write_text(new, encoding="utf-8")


def main(argv) -> int:
    if argv not in (["update"], ["check"]):
        print("usage: python tools/doc_blocks.py update|check", file=sys.stderr)
        return 2
    bad = []
    for name in BLOCKS:
        if argv == ["update"]:
            update(name)
        elif block(name) != output(name):
            bad.append(name)
    for name in bad:
        print(f"{BLOCKS[name][0]}: block {name!r} differs from `fastafm {' '.join(BLOCKS[name][1])}`",
              file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
