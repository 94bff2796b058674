"""Fuzzer of the C++ libFM/libSVM parser (`_core.parse_libfm_file`), differential against fuzz/libfm_reference.py.

For each input the bytes are written to a file on tmpfs (/dev/shm; the core reads files, and no buffer entry
point is exposed) and parsed by the core. The run fails (atheris reports a crash and saves the input) when:
  * the core raises anything but ValueError, or crashes, hangs (-timeout) or trips a sanitizer;
  * its error message is not "{path}:{line}: {what}" in ASCII, or the line is not the reference's;
  * it accepts what the reference rejects or vice versa, or its arrays differ from the reference's in one bit;
  * its arrays are not a well-formed CSR (indptr from 0, non-decreasing, ending at nnz; ids in [0, max id]).

Run (see docs/reliability.md):
    python fuzz/fuzz_libfm.py -dict=fuzz/libfm.dict -max_total_time=600 -timeout=10 -max_len=4096 \
        /tmp/corpus-libfm fuzz/corpus/libfm
Without atheris, `test_one_input` is what tests/test_fuzz_corpus.py replays over the seed corpus.
"""
from __future__ import annotations

import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

atheris = None  # imported by main(): tests/test_fuzz_corpus.py runs the harness without it

import libfm_reference as reference  # noqa: E402

from fastafm import _core  # noqa: E402  (not instrumented: compiled code)

SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _path() -> str:
    import tempfile

    return os.path.join(SCRATCH_DIR or tempfile.gettempdir(), f"fastafm-fuzz-{os.getpid()}.libfm")


def test_one_input(data: bytes) -> None:
    path = _path()
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        _check(data, path)
    finally:
        os.unlink(path)


def _check(data: bytes, path: str, fmt: str = "libfm") -> None:
    """The core's reading of `path` (holding `data`) against the reference's, in format `fmt` (also libFFM:
    fuzz_libffm.py); returns the core's arrays, or None when both reject the file."""
    try:
        want = reference.parse(data, ffm=fmt == "libffm")
    except reference.ReferenceError_ as exc:
        want = exc
    try:
        got = _core.parse_libfm_file(path, format=fmt)
    except ValueError as exc:
        message = str(exc)
        m = re.match(re.escape(path) + r":([0-9]+): (.+)\Z", message, re.DOTALL)
        assert m is not None, f"error message without file:line: {message!r}"
        m.group(2).encode("ascii")  # odd bytes are shown escaped
        assert "\n" not in m.group(2), message
        reference.coverage_hint(m.group(2))
        assert isinstance(want, Exception), f"the core rejects what the reference reads: {message!r}"
        assert int(m.group(1)) == want.line, f"the core rejects line {m.group(1)}, the reference line {want.line}"
        return None
    assert not isinstance(want, Exception), f"the core reads what the reference rejects ({want})"
    indptr, indices, values, labels, max_id = got[:5]
    assert indptr.dtype == np.int64 and indices.dtype == np.int32
    assert values.dtype == np.float32 and labels.dtype == np.float32
    assert indptr.shape == (labels.shape[0] + 1,) and indptr[0] == 0 and indptr[-1] == indices.shape[0]
    assert np.all(np.diff(indptr) >= 0) and values.shape == indices.shape
    assert max_id == (int(indices.max()) if indices.size else -1) and (indices.size == 0 or indices.min() >= 0)
    assert np.isfinite(values).all() and np.isfinite(labels).all()
    w_indptr, w_indices, w_values, w_labels, w_max = want[:5]
    np.testing.assert_array_equal(indptr, w_indptr)
    np.testing.assert_array_equal(indices, w_indices)
    np.testing.assert_array_equal(values.view(np.uint32), w_values.view(np.uint32))  # bit-exact, -0.0 included
    np.testing.assert_array_equal(labels.view(np.uint32), w_labels.view(np.uint32))
    assert max_id == w_max
    if fmt == "libffm":
        fields, max_field = got[5:]
        assert fields.dtype == np.int32 and fields.shape == indices.shape and max_field == want[6]
        np.testing.assert_array_equal(fields, want[5])
    return got


def main(argv) -> None:
    global atheris
    try:
        import atheris
    except ImportError:
        raise SystemExit("atheris is not installed: pip install atheris") from None
    from fuzz_load import instrument_modules

    instrument_modules("libfm_reference")  # in main only: the corpus replay test runs uninstrumented
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
