"""The suite must hold on a slow CPU, a fast one and a busy one: no test may assume how long work takes.

Every line of a test module that reads a clock, sleeps or starts a timer carries a `# timing:` comment saying
why it does not depend on the machine's speed (a measured rate, a poll, or a bound with a wide margin); this
test fails on any such line without one, so a new speed assumption has to be argued for where it is written.
"""
from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCK = re.compile(r"\btime\.(sleep|time|perf_counter|monotonic|process_time)(_ns)?\(|\bthreading\.Timer\(")


def test_clock_reads_sleeps_and_timers_are_justified():
    unjustified = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CLOCK.search(line) and "# timing:" not in line:
                unjustified.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert not unjustified, "clock reads without a '# timing:' justification:\n" + "\n".join(unjustified)


def test_the_scan_finds_an_unjustified_sleep():
    assert CLOCK.search("    time.sleep(2)")
    assert CLOCK.search("start = time.perf_counter()")
    assert CLOCK.search("t = threading.Timer(1.0, f)")
    assert not CLOCK.search("elapsed = model.history_[0]['seconds']")
