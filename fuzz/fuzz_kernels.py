"""Differential fuzzer of the block kernels, the streamed long-row path (tiles and their tails) included.

Each input decodes to an instruction set, k, t, a pair tile (the core's test knob `_testing.set_pair_tile`, which
makes rows of a few pairs long; 0: the defaults), rows of 0 to 29 non-zeros with repeated ids and values of
both signs, a loss, dropout and a model seed. The core's predictions, attention weights and batch gradients
must equal the float64 reference (`fastafm.reference`) within float32 tolerance, every weight row must sum to 1,
and nothing may crash, hang or trip a sanitizer. The decoding needs no atheris, so tests/test_fuzz_corpus.py
replays the seed corpus and mutations of it in every test run.

Run (see docs/reliability.md):
    python fuzz/fuzz_kernels.py -max_total_time=600 -timeout=10 -max_len=512 /tmp/corpus-kernels fuzz/corpus/kernels
"""
from __future__ import annotations

import sys

import numpy as np
import scipy.sparse as sp

atheris = None  # imported by main(): tests/test_fuzz_corpus.py runs the harness without it

from fastafm import _core, reference  # noqa: E402

N_FEATURES = 12


class Bytes:
    """Reads small integers from the input, cycling over it once it is used up (libFuzzer shrinks inputs whose
    Python coverage is the same: a few bytes still make long rows of varied ids and values)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos % len(self.data)] + self.pos // max(len(self.data), 1) if self.data else 0
        self.pos += 1
        return b % 256


def decode(data: bytes):
    r = Bytes(data)
    isas = _core.supported_isas()
    isa = isas[r.byte() % len(isas)]
    k, t = 1 + r.byte() % 40, 1 + r.byte() % 24
    tile = r.byte() % 41
    flags = r.byte()
    n_rows = 1 + r.byte() % 6
    nnz = [r.byte() % 30 for _ in range(n_rows)]
    ids = [r.byte() % N_FEATURES for _ in range(sum(nnz))]
    values = [((r.byte() % 31) - 15) / 10.0 for _ in range(sum(nnz))]  # -1.5..1.5 in steps of 0.1, 0 included
    seed = r.byte() * 256 + r.byte()
    X = sp.csr_matrix((np.array(values, np.float32), np.array(ids, np.int32),
                       np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)), shape=(n_rows, N_FEATURES))
    return isa, k, t, tile, flags, X, seed


def _close(got, want, what, scale=None, rtol=2e-3):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want))) if scale is None and want.size else (scale or 0.0), 1e-3)
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    if not err <= rtol * scale:
        raise AssertionError(f"{what}: max error {err:.3g} vs scale {scale:.3g}")


def test_one_input(data: bytes) -> None:
    isa, k, t, tile, flags, X, seed = decode(data)
    rng = np.random.default_rng(seed)
    params = reference.init_params(N_FEATURES, k, t, init_std=0.5 / np.sqrt(np.sqrt(k)), rng=rng)
    params.W = params.W / np.sqrt(max(k / 16, 1.0))
    params.w = rng.normal(0, 0.3, N_FEATURES)
    params.w0 = float(rng.normal())
    params.p = rng.normal(1.0, 0.5, k)
    for name in ("w", "V", "W", "b", "h", "p"):  # float32-exact, as the core sees them
        setattr(params, name, getattr(params, name).astype(np.float32).astype(np.float64))
    params.w0 = float(np.float32(params.w0))
    core = {n: np.ascontiguousarray(np.atleast_1d(getattr(params, n)), np.float32) for n in reference.PARAM_NAMES}
    attention = not flags & 1
    loss = "logistic" if flags & 2 else "squared"
    rho = 0.4 if flags & 4 else 0.0
    y = rng.normal(size=X.shape[0]) if loss == "squared" else rng.choice([-1.0, 1.0], size=X.shape[0])
    rows = np.arange(X.shape[0], dtype=np.int64)
    cfg = _core.TrainConfig()
    cfg.loss, cfg.attention, cfg.dropout, cfg.seed, cfg.epoch = getattr(_core.Loss, loss), attention, rho, seed, 1
    cfg.attention_l2, cfg.l2, cfg.n_threads = 0.3, 0.1, 1 + (flags >> 3) % 2
    mask = _core._testing.dropout_mask(seed, 1, rows, k, rho).astype(np.float64) if rho else None
    arrays = (X.indptr.astype(np.int64), X.indices, X.data)
    counts = np.diff(X.indptr) * (np.diff(X.indptr) - 1) // 2
    pair_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    before_isa = _core.active_isa()
    before_tile = _core._testing.set_pair_tile(tile)
    try:
        _core.select_isa(isa)
        got_y = _core.predict(core, *arrays, attention, cfg.n_threads)
        got_a = _core.pair_attention(core, *arrays, pair_indptr, attention, cfg.n_threads)
        got = _core._testing.batch_gradients(core, *arrays, y.astype(np.float32), rows, cfg, use_dropout=rho > 0)
    finally:
        _core._testing.set_pair_tile(before_tile)
        _core.select_isa(before_isa)

    _close(got_y, reference.forward(params, X, attention=attention), "y")
    if attention:
        _, _, want_a = reference.pair_attention(params, X)
        _close(got_a, want_a, "attention weights")
    for r in np.flatnonzero(counts):
        total = float(got_a[pair_indptr[r]:pair_indptr[r + 1]].sum(dtype=np.float64))
        if attention and abs(total - 1.0) > 1e-4:
            raise AssertionError(f"row {r}: attention weights sum to {total}")
    want_obj, want = reference.gradients(params, X, y, loss=loss, attention=attention, attention_l2=0.3, l2=0.1,
                                         dropout_mask=mask)
    _close(got["objective"], want_obj, "objective", rtol=1e-4)
    dense = max(float(np.max(np.abs(getattr(want, n)))) for n in ("W", "b", "h", "p"))
    for name in ("W", "b", "h", "p"):
        _close(got[name], getattr(want, name), name, scale=dense)
    _close(got["V"], want.V[got["touched"]], "V")
    _close(got["w"], want.w[got["touched"]], "w")


def main(argv) -> None:
    global atheris
    try:
        import atheris
    except ImportError:
        raise SystemExit("atheris is not installed: pip install atheris") from None
    from fuzz_load import instrument_modules  # the same Python coverage (the core itself is not instrumented)

    instrument_modules("fastafm")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
