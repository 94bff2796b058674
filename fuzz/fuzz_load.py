"""Fuzzer of `fastafm.load` (model files).

Each input is written to a file on tmpfs and loaded. The run fails (atheris reports a crash and saves the
input) when load raises anything but ValueError (ModelFileError), crashes, hangs or trips a sanitizer, or when
it accepts a file whose model is not usable: every parameter finite, every optimizer slot (Adagrad's sums) > 0, shapes matching
n_features_in_/embedding_dim/attention_dim, and predict, save and load again working.

A model file is a ZIP of .npy members whose data is covered by CRC-32 and SHA-256 digests, so plain byte
mutations mostly end at the first check. A custom mutator therefore also works structure-aware: it unpacks the
archive, mutates one member (bytes, or a JSON value of the metadata), repacks it with valid CRCs and, most of
the time, valid SHA-256 digests (persistence.resign), so that the deeper checks are fuzzed too.

Run (see docs/reliability.md):
    python fuzz/fuzz_load.py -max_total_time=600 -timeout=10 -max_len=16384 /tmp/corpus-model fuzz/corpus/model
"""
from __future__ import annotations

import io
import json
import os
import random
import sys
import tempfile
import zipfile

import numpy as np
import scipy.sparse as sp

atheris = None  # imported by main(): tests/test_fuzz_corpus.py runs the harness without it

import fastafm  # noqa: E402
from fastafm.models import persistence  # noqa: E402
from fastafm.training.optim import OPTIMIZERS  # noqa: E402


def instrument_modules(prefix: str) -> None:
    """atheris coverage for the Python functions (and methods) of the loaded modules `prefix` and `prefix.*`.
    (Done after import, in main only: the editable install loads fastafm through a custom loader that atheris'
    import hook cannot follow, and the corpus replay test must run uninstrumented.)"""
    import types

    import atheris

    for module in [m for name, m in list(sys.modules.items()) if name == prefix or name.startswith(prefix + ".")]:
        for obj in list(vars(module).values()):
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if isinstance(obj, types.FunctionType):
                atheris.instrument_func(getattr(obj, "__wrapped__", obj))
            elif isinstance(obj, type):
                for attr in vars(obj).values():
                    func = getattr(attr, "fget", attr)
                    func = getattr(func, "__wrapped__", func)
                    if isinstance(func, types.FunctionType):
                        atheris.instrument_func(func)


SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _path() -> str:
    return os.path.join(SCRATCH_DIR, f"fastafm-fuzz-{os.getpid()}.afm")


def test_one_input(data: bytes) -> None:
    path = _path()
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        try:
            model = fastafm.load(path)
        except persistence.ModelFileError as exc:
            assert str(exc).startswith(path + ": "), str(exc)
            return
        except MemoryError:
            return  # an honest refusal of a model too large for this machine
        _check_usable(model, path)
    finally:
        if os.path.exists(path):
            os.unlink(path)


def _check_usable(model, path) -> None:
    state = model.training_state_
    positive = OPTIMIZERS[state.optimizer].positive
    for name, shape in state.spec.shapes().items():
        for store in (state.params, *state.slots.values()):
            if name not in store:  # a slot that covers only some parameters (adam's step counts)
                continue
            arr = store[name]
            assert arr.shape == shape and arr.dtype == np.float32 and arr.flags.writeable and arr.flags.c_contiguous
            assert np.isfinite(arr).all()
        assert all((state.slots[slot][name] > 0).all() for slot in positive)
    model.n_threads = 1  # a file may ask for many threads; one is enough here
    n = state.spec.n_features
    X = sp.random(4, n, density=min(1.0, 3.0 / n), format="csr", dtype=np.float32, random_state=0)
    assert model.predict(X).shape == (4,)
    y = model.classes_[[0, 1, 0, 1]] if hasattr(model, "classes_") else np.zeros(4)
    try:
        model.partial_fit(X, y)  # training can continue from any accepted file
    except FloatingPointError:
        pass  # e.g. a huge learning_rate in the file: refused cleanly, model rolled back
    model.save(path)
    again = fastafm.load(path)
    for name in state.spec.shapes():
        np.testing.assert_array_equal(again.training_state_.params[name], model.training_state_.params[name])


# ------------------------------------------------------------------------------------------ mutator

_JSON_VALUES = [None, True, False, 0, 1, -1, 2, 3, 2**31 - 1, 2**31, 2**63, -(2**63), 2**64, 10**400, 0.5, -0.0,
                1e308, float("nan"), float("inf"), "", "x", "AFMClassifier", "AFMRegressor", "fastafm-model",
                [], [1, 2], [0, 1], ["a", "b"], {}, {"a": 1}]


def _mutate_json(value, rnd: random.Random):
    """One random edit somewhere inside a JSON value."""
    if isinstance(value, dict) and value and rnd.random() < 0.8:
        key = rnd.choice(sorted(value))
        roll = rnd.random()
        if roll < 0.1:
            del value[key]
        elif roll < 0.15:
            value[key + "_"] = rnd.choice(_JSON_VALUES)
        else:
            value[key] = _mutate_json(value[key], rnd)
        return value
    if isinstance(value, list) and value and rnd.random() < 0.8:
        i = rnd.randrange(len(value))
        if rnd.random() < 0.1:
            del value[i]
        else:
            value[i] = _mutate_json(value[i], rnd)
        return value
    if isinstance(value, int) and not isinstance(value, bool) and rnd.random() < 0.5:
        return value + rnd.choice([-1, 1, -value - 1, value])
    return rnd.choice(_JSON_VALUES)


def _byte_mutate(data: bytes, max_size: int, rnd: random.Random) -> bytes:
    """A plain random byte mutation (flip, insert, erase, truncate, duplicate), used when atheris is absent."""
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        roll = rnd.random()
        pos = rnd.randrange(len(buf) + 1)
        if roll < 0.4 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rnd.randrange(8)
        elif roll < 0.6:
            buf[pos:pos] = bytes([rnd.randrange(256)]) * rnd.randint(1, 8)
        elif roll < 0.8:
            del buf[pos:pos + rnd.randint(1, 16)]
        elif roll < 0.9:
            del buf[pos:]
        else:
            buf[pos:pos] = buf[max(0, pos - 32):pos]
    return bytes(buf[:max_size])


_FUZZING = False  # atheris.Mutate only works inside atheris.Fuzz()


def _mutate_bytes(data: bytes, max_size: int, rnd: random.Random) -> bytes:
    if _FUZZING:
        return atheris.Mutate(data, max_size)
    return _byte_mutate(data, max_size, rnd)


def _members(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _pack(members) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, raw in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), raw)
    return out.getvalue()


def _npy_payload(raw: bytes):
    with io.BytesIO(raw) as fh:
        persistence._npy_header(fh, np.lib.format.read_magic(fh))
        return raw[: fh.tell()], raw[fh.tell():]


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    try:
        members = _members(data)
    except Exception:
        return _mutate_bytes(data, max_size, rnd)
    if not members or rnd.random() < 0.1:
        return _mutate_bytes(data, max_size, rnd)  # byte-level: truncation, CRC and header damage
    name = rnd.choice(sorted(members))
    raw = members[name]
    roll = rnd.random()
    try:
        if name == "meta.npy" and roll < 0.6:
            header, body = _npy_payload(raw)
            meta = _mutate_json(json.loads(body), rnd)
            text = json.dumps(meta).encode()
            members[name] = _npy(np.frombuffer(text, dtype=np.uint8))
        elif roll < 0.75:
            header, body = _npy_payload(raw)  # mutate the array data only, keep the header
            members[name] = header + _mutate_bytes(body, len(body) + 16, rnd)
        elif roll < 0.85:
            header, body = _npy_payload(raw)  # mutate the header only
            members[name] = _mutate_bytes(header, len(header) + 16, rnd) + body
        elif roll < 0.9:
            del members[name]
        else:
            members[name] = _mutate_bytes(raw, len(raw) + 64, rnd)
    except Exception:
        members[name] = _mutate_bytes(raw, len(raw) + 64, rnd)
    out = _pack(members)
    if rnd.random() < 0.8:
        out = persistence.resign(out)
    return out if len(out) <= max_size else _mutate_bytes(data, max_size, rnd)


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def main(argv) -> None:
    global atheris, _FUZZING
    try:
        import atheris
    except ImportError:
        raise SystemExit("atheris is not installed: pip install atheris") from None
    _FUZZING = True
    instrument_modules("fastafm")
    from process_exit import skip_exit_destructors  # model files with a raw-log encoding read through pyarrow

    skip_exit_destructors()
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
