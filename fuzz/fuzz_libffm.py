"""Fuzzer of libFFM reading: the core parser's libFFM mode (`_core.parse_libfm_file(path, format="libffm")`),
differential against fuzz/libfm_reference.py as fuzz_libfm.py does for libFM, then `fastafm.load_libffm` on the
same file. The run fails (atheris saves the input) when the parser and the reference disagree (see
fuzz_libfm.py), or when load_libffm raises anything but a ValueError "{path}:{line or row N}: {what}", or
returns fields that do not match the file (each named feature in its one field, every field id in range).

Run (see docs/reliability.md):
    python fuzz/fuzz_libffm.py -dict=fuzz/libffm.dict -max_total_time=600 -timeout=10 -max_len=4096 \\
        /tmp/corpus-libffm fuzz/corpus/libffm
Without atheris, `test_one_input` is what tests/test_fuzz_corpus.py replays over the seed corpus.
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fuzz_libfm  # noqa: E402

import fastafm  # noqa: E402

# load_libffm returns a field for every id up to the largest: a file naming id 2^31 - 1 asks for 8 GiB (its
# memory check is tested in tests/test_fwfm.py), so the harness loads files with smaller ids only.
MAX_LOADED_ID = 1 << 24


def test_one_input(data: bytes) -> None:
    path = fuzz_libfm._path() + ".ffm"
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        parsed = fuzz_libfm._check(data, path, "libffm")
        if parsed is None or parsed[4] < MAX_LOADED_ID:
            _check_load(path, parsed)
    finally:
        os.unlink(path)


def _check_load(path: str, parsed) -> None:
    try:
        X, y, fields = fastafm.load_libffm(path)
    except ValueError as exc:
        message = str(exc)
        assert re.match(re.escape(path) + r":([0-9]+|row [0-9]+): .+\Z", message, re.DOTALL), message
        if parsed is not None:  # the parser read it: only a feature in two fields may be refused then
            assert "a feature belongs to one field" in message, message
        return
    assert parsed is not None, "load_libffm reads what the parser rejects"
    nz_fields = parsed[5]
    assert fields.dtype == np.int32 and fields.shape == (X.shape[1],)
    np.testing.assert_array_equal(fields[X.indices], nz_fields)  # every named feature in its one field
    assert X.shape[0] == y.shape[0] and (fields.size == 0 or 0 <= fields.min() <= fields.max() <= 65535)


def main(argv) -> None:
    try:
        import atheris
    except ImportError:
        raise SystemExit("atheris is not installed: pip install atheris") from None
    fuzz_libfm.atheris = atheris
    from fuzz_load import instrument_modules

    instrument_modules("libfm_reference")
    instrument_modules("fastafm.data.libffm")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
