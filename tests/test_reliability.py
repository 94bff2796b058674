"""Long, unattended training on messy data: divergence, Ctrl-C, threads, memory, determinism."""
from __future__ import annotations

import os
import signal
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from support import forced_pair_tile, slot_arrays, small_model, raw_output

import fastafm
from fastafm import _core
from fastafm.models import base as estimators
from fastafm.data.validation import check_kernel_memory, check_kernel_memory_sizes


def _under_asan() -> bool:
    """True when AddressSanitizer is loaded (tools/run_sanitizers.sh): its quarantine keeps freed memory resident
    and its operator new aborts instead of throwing std::bad_alloc, so two tests below do not apply."""
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), "__asan_init")
    except OSError:  # pragma: no cover
        return False


UNDER_ASAN = _under_asan()


def planted(n_rows=600, seed=0):
    X, y, _ = fastafm.make_planted(n_rows=n_rows, n_fields=5, cardinality=6, planted_pairs=((0, 1),), random_state=seed)
    return X, y


def small(**kw):
    """Without FM pretraining: these tests are about the engine's epochs (a pretrained fit of n epochs is not
    a fit of n - 1 and one partial_fit, the FM's epochs are bounded by n_epochs too)."""
    return small_model(**{**dict(embedding_dim=4, attention_dim=4, n_epochs=1, pretrain=None), **kw})


def long_rows(n_rows=3000, nnz=60, n_features=500, seed=0):
    """Rows of 60 non-zeros (1770 pairs each): with k = t = 64 an epoch takes several seconds."""
    rng = np.random.default_rng(seed)
    X = sp.csr_matrix((rng.uniform(0.5, 1.0, n_rows * nnz).astype(np.float32),
                       rng.integers(0, n_features, n_rows * nnz).astype(np.int32),
                       np.arange(0, n_rows * nnz + 1, nnz)), shape=(n_rows, n_features))
    return X, rng.normal(size=n_rows)



def long_rows_for(seconds, **fit_params):
    """Long rows whose one-epoch fit with `fit_params` takes about `seconds` on this machine, now: the row count
    comes from a measured rate, so the tests below hold on a slow CPU and a fast one alike."""
    X, y = long_rows(n_rows=300)
    start = time.perf_counter()  # timing: measures this machine's rate, asserts nothing
    fastafm.AFMRegressor(**{**fit_params, "n_epochs": 1}).fit(X, y)
    rate = 300 / max(time.perf_counter() - start, 1e-6)  # timing: as above
    return long_rows(n_rows=int(min(max(rate * seconds, 3000), 2_000_000)))

def assert_consistent(model, X):
    params = model.get_model_params()
    assert all(np.isfinite(a).all() for a in params.values())
    assert all(np.isfinite(a).all() and (a > 0).all() for a in slot_arrays(model).values())
    assert model.n_epochs_done_ == len(model.history_)
    assert np.isfinite(model.predict(X)).all()


def same_params(a, b):
    pa, pb, sa, sb = a.get_model_params(), b.get_model_params(), slot_arrays(a), slot_arrays(b)
    return (all(np.array_equal(pa[k], pb[k]) for k in pa) and sa.keys() == sb.keys()
            and all(np.array_equal(sa[k], sb[k]) for k in sa))


# -------------------------------------------------------------------------------------------- divergence


def test_divergence_names_the_epoch_and_keeps_the_last_finite_model():
    X, y = planted()
    model = small(n_epochs=2).fit(X, y)
    before = {k: v.copy() for k, v in model.get_model_params().items()}
    rate = model.learning_rate
    model.set_params(learning_rate=1e30)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch 3.*end of epoch 2.*smaller learning_rate \(now 1e\+30\)"):
        model.partial_fit(X, y)
    assert model.n_epochs_done_ == 2 and len(model.history_) == 2
    for name, arr in model.get_model_params().items():
        np.testing.assert_array_equal(arr, before[name], err_msg=name)
    assert_consistent(model, X)
    # Rolled back exactly, shuffling stream included: going on with the old rate is the run that never diverged.
    model.set_params(learning_rate=rate).partial_fit(X, y)
    assert same_params(model, small(n_epochs=3).fit(X, y))


def test_divergence_in_the_first_epoch_keeps_the_initial_model():
    X, y = planted()
    model = small(learning_rate=1e30, n_epochs=5)
    with pytest.raises(FloatingPointError, match="diverged in epoch 1"):
        model.fit(X, y)
    assert model.n_epochs_done_ == 0 and model.history_ == []
    assert_consistent(model, X)
    init = small(n_epochs=0).fit(X, y)  # n_epochs=0: the initial parameters of the same seed
    assert same_params(model, init)


@pytest.mark.parametrize("scale", [1e25, 3e38])
def test_huge_feature_values_diverge_cleanly(scale):
    X, y = planted()
    X = X * np.float32(scale)
    with pytest.raises(FloatingPointError, match="scale the feature values down"):
        small(n_epochs=3, optimizer="sgd").fit(X, y)


def test_overflowing_predictions_warn():
    X, y = planted()
    model = small().fit(X, y)
    with pytest.warns(RuntimeWarning, match="600 of 600 outputs are NaN or infinite"):
        out = model.predict(X * np.float32(1e30))
    assert not np.isfinite(out).any()


# --------------------------------------------------------------------------------------------- Ctrl-C


def _interrupt_after(seconds, sent):
    def fire():
        sent.append(time.perf_counter())  # timing: when SIGINT was sent
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(seconds, fire)  # timing: fires inside a long epoch sized by long_rows_for
    timer.daemon = True
    timer.start()
    return timer


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_stops_a_long_epoch_within_a_second():
    settings = dict(embedding_dim=64, attention_dim=64, batch_size=16, n_threads=1, random_state=0,
                    pretrain=None, early_stopping=False)  # AFM epochs only, whatever the row count
    X, y = long_rows_for(8.0, **settings)  # an epoch of ~8 s: SIGINT at 1 s lands inside the first one
    model = fastafm.AFMRegressor(n_epochs=50, **settings)
    init = fastafm.AFMRegressor(n_epochs=0, **settings).fit(X, y)  # the initial parameters of the same seed
    sent = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = _interrupt_after(1.0, sent)
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y)  # 50 epochs of ~8 s each unless interrupted
        caught = time.perf_counter()  # timing: a latency bound of 1 s for a check made every 0.1 s
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent, "the timer never fired"
    assert caught - sent[0] < 1.0, f"KeyboardInterrupt came {caught - sent[0]:.2f} s after SIGINT"
    # The model holds the completed batches of epoch 1: consistent, finite, usable, and it can go on.
    assert model.n_epochs_done_ == 0 and model.history_ == []
    assert not np.array_equal(model.V_, init.V_)
    assert_consistent(model, X[:50])
    model.set_params(n_epochs=1)
    model.partial_fit(X[:64], y[:64])
    assert model.n_epochs_done_ == 1
    assert_consistent(model, X[:50])


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_sigint_stops_a_long_predict_within_a_second():
    settings = dict(embedding_dim=64, attention_dim=64, n_threads=1, random_state=0, pretrain=None, n_epochs=1)
    X, y = long_rows(n_rows=600)
    model = fastafm.AFMRegressor(**settings).fit(X[:100], y[:100])
    from fastafm.data.limits import row_blocks

    start = time.perf_counter()  # timing: measures this machine's predict rate, asserts nothing
    want = model.predict(X)
    rate = 600 / max(time.perf_counter() - start, 1e-6)  # timing: as above
    reps = int(min(max(rate * 8.0 / 600, 20), 20_000))  # a predict of ~8 s: SIGINT at 1 s lands inside it
    big = sp.vstack([X] * reps, format="csr")
    one_block = big[:row_blocks(big.indptr)[0][1]]
    start = time.perf_counter()  # timing: how long one block takes here, asserts nothing
    model.predict(one_block)
    block_seconds = time.perf_counter() - start  # timing: as above
    calls = []
    real_predict = _core.predict

    def counted(*args):
        calls.append(1)
        return real_predict(*args)

    sent = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = _interrupt_after(1.0, sent)
    try:
        estimators._core.predict = counted  # the module attribute the estimators call
        with pytest.raises(KeyboardInterrupt):
            model.predict(big)
        caught = time.perf_counter()  # timing: a latency bound of 1 s for blocks of well under a second
    finally:
        estimators._core.predict = real_predict
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent, "the timer never fired"
    # within a second, or within two blocks' time where a block takes longer (one thread, a sanitizer build)
    bound = max(1.0, 2 * block_seconds)
    assert caught - sent[0] < bound, f"KeyboardInterrupt came {caught - sent[0]:.2f} s after SIGINT"

    assert len(calls) < len(row_blocks(big.indptr))  # stopped between blocks, not after the last
    np.testing.assert_array_equal(model.predict(X), want)  # the model is untouched


# ------------------------------------------------------------------------------------------- threads


def test_concurrent_predict_on_one_model_is_correct():
    X, y = planted(n_rows=2400, seed=1)
    model = small(embedding_dim=8, attention_dim=8, n_threads=2, n_epochs=1).fit(X, y)
    chunks = [X[i:i + 300] for i in range(0, 2400, 300)]
    expected = [model.predict(c) for c in chunks]
    attention = model.attention_weights(chunks[0])[2]
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [(i % 8, pool.submit(model.predict, chunks[i % 8])) for i in range(24)]
        futures += [(-1, pool.submit(lambda: model.attention_weights(chunks[0])[2])) for _ in range(4)]
        for i, fut in futures:
            np.testing.assert_array_equal(fut.result(), attention if i < 0 else expected[i])


def test_two_threads_fitting_one_model_is_refused():
    settings = dict(embedding_dim=64, attention_dim=64, batch_size=16, n_threads=1, random_state=0,
                    pretrain=None, early_stopping=False)  # AFM epochs only, whatever the row count
    X, y = long_rows_for(3.0, **settings)  # the first fit lasts ~3 s, whatever the CPU
    model = fastafm.AFMRegressor(n_epochs=1, **settings)
    errors = []

    def fit():
        try:
            model.fit(X, y)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=fit)
    worker.start()
    deadline = time.monotonic() + 30  # timing: only bounds the wait for the worker thread to start
    while (id(model) not in estimators._FITTING and worker.is_alive()
           and time.monotonic() < deadline):  # timing: the bound above
        time.sleep(0.001)  # timing: a poll, asserts nothing
    assert worker.is_alive(), "the first fit ended before the second could start"
    with pytest.raises(RuntimeError, match="already being fitted in another thread"):
        model.fit(X, y)
    with pytest.raises(RuntimeError, match="already being fitted in another thread"):
        model.partial_fit(X, y)
    worker.join()
    assert not errors
    assert model.n_epochs_done_ == 1  # the first fit finished undisturbed
    model.partial_fit(X[:32], y[:32])  # and the lock is released
    assert model.n_epochs_done_ == 2


def test_different_models_fit_concurrently_and_deterministically():
    X, y = planted(n_rows=2000, seed=2)
    serial = [small(random_state=s, n_epochs=2).fit(X, y) for s in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda s: small(random_state=s, n_epochs=2).fit(X, y), range(4)))
    for a, b in zip(serial, parallel):
        assert same_params(a, b)


# -------------------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.skipif(UNDER_ASAN, reason="ASan's quarantine keeps freed memory resident")
def test_rss_stays_flat_over_200_fit_predict_cycles(tmp_path):
    X, y = planted(n_rows=300, seed=3)
    labels = y > 0

    def cycle(i):
        reg = small(n_epochs=1, random_state=i).fit(X, y)
        reg.predict(X)
        reg.attention_weights(X[:20])
        clf = fastafm.AFMClassifier(embedding_dim=4, attention_dim=4, n_epochs=1, n_threads=1,
                                    random_state=i).fit(X, labels)
        clf.predict_proba(X)
        if i % 20 == 0:
            reg.save(tmp_path / "m.afm")
            fastafm.load(tmp_path / "m.afm").predict(X)

    for i in range(30):  # warm up: allocator pools, lazy imports
        cycle(i)
    start = _rss_bytes()
    for i in range(200):
        cycle(i)
    growth = _rss_bytes() - start
    assert growth < 4 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 200 cycles"


def test_impossible_model_size_is_a_memory_error_fast():
    X = sp.csr_matrix((np.ones(2, np.float32), np.array([0, 1], np.int32), np.array([0, 1, 2])), shape=(2, 2**31 - 1))
    start = time.perf_counter()  # timing: the refusal comes before any allocation; 5 s is ~1000x its cost
    with pytest.raises(MemoryError, match=r"n_features=2147483647, embedding_dim=1048576"):
        fastafm.AFMRegressor(embedding_dim=2**20, n_epochs=1).fit(X, [1.0, 2.0])
    with pytest.raises(MemoryError, match="embedding_dim=2147483647"):
        fastafm.AFMRegressor(embedding_dim=2**31 - 1, n_epochs=1).fit(np.eye(3), [1.0, 2.0, 3.0])
    with pytest.raises(MemoryError, match="attention_dim=1073741824"):
        fastafm.AFMRegressor(embedding_dim=64, attention_dim=2**30, n_epochs=1).fit(np.eye(3), [1.0, 2.0, 3.0])
    assert time.perf_counter() - start < 5  # timing: see `start`


def _one_long_row(n_features=200_000):
    return sp.csr_matrix((np.ones(n_features, np.float32), np.arange(n_features, dtype=np.int32),
                          np.array([0, n_features])), shape=(1, n_features))


@pytest.fixture
def no_pair_limit():
    """The memory checks of rows past the pair limit (tests/test_pair_limit.py), which would refuse them first."""
    fastafm.set_max_pairs_per_row(2**62)
    yield
    fastafm.set_max_pairs_per_row(None)


def test_a_rows_memory_grows_with_its_non_zeros_not_its_pairs(no_pair_limit):
    """A dense row of 200,000 non-zeros has 2e10 feature pairs; they are streamed through pair tiles, so the
    memory check asks for O(nnz k) bytes and passes, while a row whose non-zeros alone cannot be held (2e9 of
    them at k = 64: about 1 TB of per-non-zero buffers) is a MemoryError naming it."""
    X = _one_long_row()
    check_kernel_memory(X, 2, 2, 1, batch_size=128)
    with pytest.raises(MemoryError, match="a row of 2000000000 non-zeros"):
        check_kernel_memory_sizes(2_000_000_000, 1, 2_000_000_000, 64, 64, 1, batch_size=128)
    # Its attention weights themselves are O(pairs): 2e10 of them are refused before any work.
    model = small(embedding_dim=2, attention_dim=2).fit(sp.csr_matrix(X.shape), [1.0])
    with pytest.raises(MemoryError, match="attention weights of 19999900000 feature pairs"):
        model.attention_weights(X)


def test_attention_weights_of_too_many_pairs_is_a_memory_error(no_pair_limit):
    """1,000 rows of 20,000 non-zeros: 2e11 pairs, whose weights alone would take 800 GB."""
    n, m = 1000, 20_000
    X = sp.csr_matrix((np.ones(n * m, np.float32), np.tile(np.arange(m, dtype=np.int32), n),
                       np.arange(0, n * m + 1, m)), shape=(n, m))
    model = small(embedding_dim=2, attention_dim=2).fit(sp.csr_matrix((1, m)), [1.0])
    with pytest.raises(MemoryError, match="attention weights of 199990000000 feature pairs"):
        model.attention_weights(X)


@pytest.mark.skipif(UNDER_ASAN, reason="ASan's operator new reports out-of-memory and aborts, never throws")
def test_the_core_turns_bad_alloc_into_memory_error(monkeypatch, no_pair_limit):
    """Without the Python pre-check (or where it cannot know the free memory), the core's std::bad_alloc
    becomes a MemoryError, raised before any parallel region starts."""
    monkeypatch.setenv("FASTAFM_SKIP_MEMORY_CHECK", "1")
    X = _one_long_row()
    model = small(embedding_dim=2, attention_dim=2).fit(sp.csr_matrix(X.shape), [1.0])
    # Pair tiles of 2^40 pairs (the core's test knob): the row's 2e10 pairs would be one block of 1.3 TB.
    with forced_pair_tile(2**40):
        with pytest.raises(MemoryError):
            model.predict(X)
        with pytest.raises(MemoryError):
            small(embedding_dim=2, attention_dim=2).fit(X, [1.0])


# --------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("n_threads", [1, 2])
def test_same_seed_and_threads_give_bit_identical_models_and_files(tmp_path, n_threads):
    X, y = planted(n_rows=800, seed=4)
    kw = dict(n_threads=n_threads, n_epochs=3, dropout=0.3, random_state=11)
    a, b = small(**kw).fit(X, y), small(**kw).fit(X, y)
    assert same_params(a, b)
    a.save(tmp_path / "a.afm")
    b.save(tmp_path / "b.afm")
    with zipfile.ZipFile(tmp_path / "a.afm") as za, zipfile.ZipFile(tmp_path / "b.afm") as zb:
        for name in za.namelist():  # the metadata differs only by the epochs' timings
            if name != "meta.npy":
                assert za.read(name) == zb.read(name), name
    # Across save/load: continuing a reloaded model is the run that never stopped.
    loaded = fastafm.load(tmp_path / "a.afm")
    assert same_params(loaded, a)
    for model in (a, loaded):
        model.partial_fit(X, y)
    assert same_params(a, loaded)
    assert same_params(a, small(**{**kw, "n_epochs": 4}).fit(X, y))


def test_prediction_does_not_depend_on_the_thread_count():
    X, y = planted(n_rows=1000, seed=5)
    model = small(n_threads=2, n_epochs=1).fit(X, y)
    outputs = []
    for n_threads in (1, 2, 3):
        model.set_params(n_threads=n_threads)
        outputs.append(model.predict(X))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])


def test_a_row_predicts_the_same_alone_and_in_any_batch():
    # The core sizes its chunks and its scratch by the input (one row: one thread, scratch for its own pairs;
    # long rows: chunks of fewer rows), so this checks that a row's output never depends on its neighbours.
    rng = np.random.default_rng(7)
    nnz = rng.integers(0, 40, size=300)
    nnz[:3] = (0, 1, 2)
    X = sp.csr_matrix((rng.uniform(0.5, 1.5, nnz.sum()).astype(np.float32),
                       rng.integers(0, 50, nnz.sum()).astype(np.int32), np.concatenate([[0], np.cumsum(nnz)])),
                      shape=(300, 50))
    model = small(n_threads=2, embedding_dim=16, attention_dim=8, n_epochs=1).fit(X, rng.normal(size=300))
    whole = raw_output(model)(X)
    np.testing.assert_array_equal(np.concatenate([raw_output(model)(X[i:i + 1]) for i in range(300)]), whole)
    np.testing.assert_array_equal(np.concatenate([raw_output(model)(X[i:i + 7]) for i in range(0, 300, 7)]),
                                  whole)
    merged = X[:20].copy()
    merged.sum_duplicates()  # a dense row has one entry per id, in id order: compare with that CSR
    np.testing.assert_array_equal(np.concatenate([raw_output(model)(merged[i:i + 1].toarray()) for i in range(20)]),
                                  raw_output(model)(merged))


def test_core_version_is_exposed():
    assert _core.__version__ == fastafm.__version__
