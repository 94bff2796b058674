"""The fuzz harnesses (fuzz/) over their seed corpus and a few hundred seeded random mutations of it, without
atheris: a fast regression test of the parser and of fastafm.load in every run of the suite. The long fuzz runs
themselves are documented in docs/reliability.md (tools/fuzz.sh)."""
from __future__ import annotations

import os
import random
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FUZZ = os.path.join(ROOT, "fuzz")
sys.path.insert(0, FUZZ)

import fuzz_libfm  # noqa: E402
import fuzz_libffm  # noqa: E402
import fuzz_rawlog  # noqa: E402
import fuzz_kernels  # noqa: E402
import fuzz_load  # noqa: E402


def corpus(kind):
    folder = os.path.join(FUZZ, "corpus", kind)
    return sorted(os.path.join(folder, name) for name in os.listdir(folder))


def read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("path", corpus("libfm"), ids=os.path.basename)
def test_parser_harness_on_seed(path):
    with open(path, "rb") as fh:
        fuzz_libfm.test_one_input(fh.read())


@pytest.mark.parametrize("path", corpus("libffm"), ids=os.path.basename)
def test_libffm_harness_on_seed(path):
    fuzz_libffm.test_one_input(read(path))


@pytest.mark.parametrize("path", corpus("rawlog"), ids=os.path.basename)
def test_rawlog_harness_on_seed(path):
    fuzz_rawlog.test_one_input(read(path))


def test_rawlog_harness_on_mutations():
    rnd = random.Random(8)
    seeds = [read(p) for p in corpus("rawlog")]
    for _ in range(150):
        seed = rnd.choice(seeds)
        flags = bytes([rnd.randrange(64)])  # any schema, with the seed's text mutated
        fuzz_rawlog.test_one_input(flags + _mutate_text(seed[1:], rnd))


@pytest.mark.parametrize("path", corpus("model"), ids=os.path.basename)
def test_load_harness_on_seed(path):
    with open(path, "rb") as fh:
        fuzz_load.test_one_input(fh.read())


def _mutate_text(data: bytes, rnd: random.Random) -> bytes:
    tokens = [b" ", b"\t", b"\n", b"\r\n", b"\r", b":", b"#", b"\0", b"-", b"+", b".", b"e", b"E", b"nan", b"inf",
              b"0", b"9", b"2147483648", b"1e39", b"1e-50", b"qid:", b"\xef\xbb\xbf", b"\xff", b"0" * 30]
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 5)):
        pos = rnd.randrange(len(buf) + 1)
        roll = rnd.random()
        if roll < 0.5:
            buf[pos:pos] = rnd.choice(tokens)
        elif roll < 0.8:
            del buf[pos:pos + rnd.randint(1, 4)]
        elif buf:
            buf[min(pos, len(buf) - 1)] = rnd.randrange(256)
    return bytes(buf)


def test_parser_harness_on_mutations():
    rnd = random.Random(5)
    seeds = [read(p) for p in corpus("libfm")]
    for _ in range(1500):
        fuzz_libfm.test_one_input(_mutate_text(rnd.choice(seeds), rnd))


def test_libffm_harness_on_mutations():
    rnd = random.Random(6)
    seeds = [read(p) for p in corpus("libffm")]
    for _ in range(600):
        fuzz_libffm.test_one_input(_mutate_text(rnd.choice(seeds), rnd))


def test_load_harness_on_mutations():
    seeds = [read(p) for p in corpus("model")]
    for seed in range(150):
        data = fuzz_load.custom_mutator(seeds[seed % len(seeds)], 16384, seed)
        fuzz_load.test_one_input(data)


@pytest.mark.parametrize("path", corpus("kernels"), ids=os.path.basename)
def test_kernel_harness_on_seed(path):
    fuzz_kernels.test_one_input(read(path))


def test_kernel_harness_on_mutations():
    rnd = random.Random(7)
    seeds = [read(p) for p in corpus("kernels")]
    for _ in range(60):
        buf = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 6)):
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
        fuzz_kernels.test_one_input(bytes(buf))
