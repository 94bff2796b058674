"""ONNX export (fastafm.onnx): onnxruntime on the exported graph against decision_function / predict_proba.

onnx and onnxruntime are in the test extra, so nothing here skips. Scores are compared by the relative error
|onnx - decision_function| / max(|decision_function|, 0.1): relative for |score| >= 0.1, and for scores near 0
(where a float32 sum of terms of size ~1 that cancel has an absolute error of a few ulps of 1, i.e. ~1e-7, and
no relative accuracy) an absolute 1e-6. Both sides are float32 computations in different summation orders.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import onnx as fonnx

from support import random_csr, raw_output

RTOL = 1e-5
FLOOR = 0.1
N_FEATURES = 8 * 12  # make_planted(n_fields=8, cardinality=12)

# name -> (estimator class, extra parameters, classification?)
KINDS = {
    "afm_regressor": (fastafm.AFMRegressor, {"attention_dim": 12}, False),
    "afm_classifier": (fastafm.AFMClassifier, {"attention_dim": 12}, True),
    "fm_regressor": (fastafm.FMRegressor, {}, False),
    "fm_classifier": (fastafm.FMClassifier, {}, True),
    "afm_uniform": (fastafm.AFMRegressor, {"attention": False}, False),
    "afm_uniform_classifier": (fastafm.AFMClassifier, {"attention": False}, True),
}


def planted(classification: bool, n_rows: int, seed: int):
    X, y, _ = fastafm.make_planted(n_rows, n_fields=8, cardinality=12, planted_pairs=((0, 1), (2, 3), (4, 5)),
                                   classification=classification, random_state=seed)
    return X, y


@pytest.fixture(scope="module", params=sorted(KINDS))
def fitted(request):
    """(kind, fitted model, onnxruntime session of its export); init_std 0.3 so the attention is far from
    uniform and the pair term is not negligible after a short fit."""
    cls, extra, classification = KINDS[request.param]
    X, y = planted(classification, 3000, seed=0)
    model = cls(embedding_dim=16, n_epochs=4, init_std=0.3, random_state=0, n_threads=1, **extra).fit(X, y)
    return request.param, model, session(fonnx.export(model))


def session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def run(sess, X, m=None):
    indices, values = fonnx.to_padded(X, m=m)
    return sess.run(None, {"indices": indices, "values": values})


def max_rel_error(got, want, floor=FLOOR) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), floor)))


def check_scores(model, sess, X, m=None):
    outputs = run(sess, X, m)
    assert outputs[0].shape == (X.shape[0],) and outputs[0].dtype == np.float32
    assert np.all(np.isfinite(outputs[0]))
    err = max_rel_error(outputs[0], raw_output(model)(X))
    assert err <= RTOL, f"max relative error {err:.3g}"
    if isinstance(model, (fastafm.AFMClassifier, fastafm.FMClassifier)):
        assert len(outputs) == 2
        err = max_rel_error(outputs[1], model.predict_proba(X)[:, 1], floor=1e-30)
        assert err <= RTOL, f"probability: max relative error {err:.3g}"
    else:
        assert len(outputs) == 1
    return outputs


# ---------------------------------------------------------------------------------------------- agreement
def test_variable_length_random_rows(fitted, rng):
    _, model, sess = fitted
    # 0, 1 and 2 non-zeros, then longer rows; repeated ids, values of both signs.
    row_nnz = [0, 1, 2, 3, 0, 2, 1, 5, 8, 13, 21] + list(rng.integers(0, 16, size=60))
    X = random_csr(rng, row_nnz, N_FEATURES, repeat_ids=True)
    assert any(len(set(X.indices[X.indptr[r]:X.indptr[r + 1]])) < row_nnz[r] for r in range(len(row_nnz)))
    natural = check_scores(model, sess, X)
    longer = check_scores(model, sess, X, m=max(row_nnz) + 9)  # the same rows padded to a longer m
    # atol: a score is a float32 sum of terms of order 1 that may cancel to ~1e-3; one rounding of them is
    # ~1e-7 (a padding that leaked into the softmax or the sums would be off by far more).
    np.testing.assert_allclose(longer[0], natural[0], rtol=1e-6, atol=1e-6)
    for r in (0, 1, 2, 8):  # each row alone in a batch of its own length gives the same score
        alone = run(sess, X[r])
        np.testing.assert_allclose(alone[0], natural[0][r:r + 1], rtol=1e-6, atol=1e-6)


def test_planted_rows(fitted):
    kind, model, sess = fitted
    X, _ = planted(KINDS[kind][2], 2000, seed=1)
    check_scores(model, sess, X)


def test_explicit_zeros_are_non_zeros_as_in_predict(fitted):
    _, model, sess = fitted
    X = sp.csr_matrix((np.array([1.0, 0.0, 0.5, 0.0, -1.0, 2.0], np.float32), np.array([3, 7, 3, 40, 41, 2]),
                       np.array([0, 3, 4, 6])), shape=(3, N_FEATURES))
    assert X.nnz == 6
    check_scores(model, sess, X)


def test_rows_without_pairs_have_an_exactly_zero_pair_term(fitted):
    _, model, sess = fitted
    # Row 0 is empty, rows 1-2 hold one non-zero: the score is w0 + w[i] x exactly (float32), not NaN, also
    # padded to m = 6 next to a long row (whose pairs do not leak into them).
    X = sp.csr_matrix((np.array([1.5, -0.75, 1, 1, 1, 1, 1, 1], np.float32), np.array([5, 17, 0, 1, 2, 3, 4, 5]),
                       np.array([0, 0, 1, 2, 8])), shape=(4, N_FEATURES))
    w0, w = np.float32(model.w0_), model.w_.astype(np.float32)
    want = np.array([w0, w0 + w[5] * np.float32(1.5), w0 + w[17] * np.float32(-0.75)], np.float32)
    for m in (None, 6):
        score = run(sess, X, m)[0]
        np.testing.assert_array_equal(score[:3], want)
    for rows in (X[:1], X[1:2]):  # a batch of width m = 0 or 1 has no pairs at all
        np.testing.assert_array_equal(run(sess, rows)[0], want[[rows.nnz]])


def test_padding_values_are_ignored():
    """A padding slot's value (even NaN) never reaches the score."""
    model = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=1, random_state=0, n_threads=1)
    model.fit(*planted(False, 500, seed=0))
    sess = session(fonnx.export(model))
    X = planted(False, 20, seed=3)[0]
    indices, values = fonnx.to_padded(X, m=11)
    clean = sess.run(None, {"indices": indices, "values": values})[0]
    values[:, 8:] = np.nan
    np.testing.assert_array_equal(sess.run(None, {"indices": indices, "values": values})[0], clean)


def test_padding_may_sit_anywhere_in_a_row():
    """-1 marks padding in any slot, not only at the end (the slot order of the real non-zeros is kept)."""
    model = fastafm.AFMClassifier(embedding_dim=8, attention_dim=8, n_epochs=1, random_state=0, n_threads=1)
    model.fit(*planted(True, 500, seed=0))
    sess = session(fonnx.export(model))
    X = planted(True, 30, seed=4)[0]
    indices, values = fonnx.to_padded(X)
    gappy_i = np.full((30, 12), -1, np.int64)
    gappy_v = np.zeros((30, 12), np.float32)
    slots = np.array([0, 2, 3, 5, 7, 8, 10, 11])
    gappy_i[:, slots], gappy_v[:, slots] = indices, values
    got = sess.run(None, {"indices": gappy_i, "values": gappy_v})[0]
    assert max_rel_error(got, raw_output(model)(X)) <= RTOL


@pytest.mark.parametrize("kind", ["afm_regressor", "afm_classifier"])
@pytest.mark.parametrize("block_bytes", [1, 50_000, 2**40])
def test_rows_in_blocks_give_the_scores_of_one_block(kind, block_bytes, rng):
    """AFM graphs score the rows in blocks (a Scan; the last block padded with padding rows): one row per block
    (block_bytes=1), blocks of a few rows with a padded last one, and all rows in one block agree."""
    cls, extra, classification = KINDS[kind]
    X, y = planted(classification, 600, seed=0)
    model = cls(embedding_dim=16, n_epochs=1, init_std=0.3, random_state=0, n_threads=1, **extra).fit(X, y)
    rows = random_csr(rng, [0, 1, 2] + list(rng.integers(0, 12, size=40)), N_FEATURES)
    # 50,000 bytes: 12,500 floats, with m = 11 (55 pairs of 3k + 2t = 72 floats): 3 rows per block, 15 blocks.
    assert fonnx.to_padded(rows)[0].shape[1] == 11
    got = run(session(fonnx.export(model, block_bytes=block_bytes)), rows)
    want = run(session(fonnx.export(model, block_bytes=2**40)), rows)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
    assert max_rel_error(got[0], raw_output(model)(rows)) <= RTOL


def test_a_batch_of_no_rows_gives_no_scores(fitted):
    _, model, sess = fitted
    outputs = sess.run(None, {"indices": np.zeros((0, 5), np.int64), "values": np.zeros((0, 5), np.float32)})
    assert [o.shape for o in outputs] == [(0,)] * len(outputs)


@pytest.mark.parametrize("block_bytes", [0, -5, 1.5, True, "4MiB"])
def test_bad_block_bytes(block_bytes):
    model = fastafm.FMRegressor(embedding_dim=4, n_epochs=1, random_state=0, n_threads=1)
    model.fit(*planted(False, 100, seed=0))
    with pytest.raises(ValueError, match="block_bytes must be a positive integer"):
        fonnx.export(model, block_bytes=block_bytes)


def test_memory_does_not_grow_with_the_row_count():
    """Rows of 39 non-zeros (741 pairs): 3,000 of them would need 4 * 3000 * 741 * (3k + 2t) = 711 MB of pair
    tensors at k = t = 16 in one piece; in blocks the peak RSS grows by far less than that over 30 rows."""
    code = (
        "import resource, numpy as np, onnxruntime as ort, fastafm, fastafm.onnx as fo\n"
        "X, y, _ = fastafm.make_planted(300, n_fields=39, cardinality=5, random_state=0)\n"
        "model = fastafm.AFMRegressor(embedding_dim=16, attention_dim=16, n_epochs=1, random_state=0,\n"
        "                             n_threads=1).fit(X, y)\n"
        "opts = ort.SessionOptions(); opts.intra_op_num_threads = 1\n"
        "sess = ort.InferenceSession(fo.export(model).SerializeToString(), opts, providers=['CPUExecutionProvider'])\n"
        "rows = fastafm.make_planted(3000, n_fields=39, cardinality=5, random_state=1)[0]\n"
        "def peak(n):\n"
        "    i, v = fo.to_padded(rows[:n])\n"
        "    sess.run(None, {'indices': i, 'values': v})\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "small = peak(30)\n"
        "print(peak(3000) - small)\n"
    )
    growth = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                 .stdout.split()[-1])
    assert growth < 100 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MiB"


def test_large_embedding_and_attention_dims(rng):
    """k = t = 64 (the serving benchmark's size), Frappe-like rows of 10 non-zeros."""
    X, y, _ = fastafm.make_planted(2000, n_fields=10, cardinality=10, random_state=2)
    model = fastafm.AFMRegressor(embedding_dim=64, attention_dim=64, n_epochs=2, init_std=0.1, random_state=0,
                                 n_threads=1).fit(X, y)
    check_scores(model, session(fonnx.export(model)), X[:1000])


def test_a_loaded_model_exports_the_same_graph(tmp_path):
    model = fastafm.FMClassifier(embedding_dim=8, n_epochs=1, random_state=0, n_threads=1)
    model.fit(*planted(True, 500, seed=0))
    model.save(tmp_path / "m.afm")
    loaded = fastafm.load(tmp_path / "m.afm")
    X = planted(True, 50, seed=5)[0]
    np.testing.assert_array_equal(run(session(fonnx.export(loaded)), X)[1], run(session(fonnx.export(model)), X)[1])


def test_parameters_below_1e_30_are_exported_as_zero(fitted):
    """onnxruntime computes without flush-to-zero (the core with it): W entries that attention_l2 decayed to
    1e-38..1e-30 would make denormal products in the attention GEMM, several times slower, so they are 0."""
    kind, model, _ = fitted
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in fonnx.export(model).graph.initializer}

    def flushed(a):
        return np.where(np.abs(a) < fonnx.FLUSH_BELOW, np.float32(0), a)

    np.testing.assert_array_equal(inits["V"], flushed(model.V_))
    np.testing.assert_array_equal(inits["w"], flushed(model.w_))
    if "W_t" in inits:
        np.testing.assert_array_equal(inits["W_t"], flushed(model.W_).T)
    if kind == "afm_regressor":  # the case is real: this short fit has such entries
        assert np.count_nonzero((model.W_ != 0) & (np.abs(model.W_) < fonnx.FLUSH_BELOW)) > 0


# ---------------------------------------------------------------------------------------------- feature ids
@pytest.mark.parametrize("bad_id", [N_FEATURES, N_FEATURES + 1000, -2, -N_FEATURES])
def test_ids_outside_the_model_are_an_error_as_in_predict(fitted, bad_id):
    _, model, sess = fitted
    X = planted(False, 4, seed=6)[0]
    wide = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(4, N_FEATURES + 2000))
    with pytest.raises(ValueError, match="features, but .* is expecting"):
        model.predict(wide)
    indices, values = fonnx.to_padded(X)
    indices[2, 3] = bad_id
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match="out of data bounds"):
        sess.run(None, {"indices": indices, "values": values})


# ---------------------------------------------------------------------------------------------- the file
def test_graph_interface_opset_and_file(tmp_path):
    model = fastafm.AFMClassifier(embedding_dim=8, attention_dim=4, n_epochs=1, random_state=0, n_threads=1)
    X, y = planted(True, 500, seed=0)
    model.fit(X, np.where(y > 0, "click", "none"))
    proto = fonnx.export(model, tmp_path / "m.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", fonnx.OPSET)] and fonnx.OPSET == 17
    assert proto.ir_version == fonnx.IR_VERSION == 8

    def interface(values_info):
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]) for v in values_info]

    assert interface(proto.graph.input) == [("indices", onnx.TensorProto.INT64, ["n", "m"]),
                                            ("values", onnx.TensorProto.FLOAT, ["n", "m"])]
    assert interface(proto.graph.output) == [("score", onnx.TensorProto.FLOAT, ["n"]),
                                             ("probability", onnx.TensorProto.FLOAT, ["n"])]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props == {"fastafm_estimator": "AFMClassifier", "n_features": str(N_FEATURES), "embedding_dim": "8",
                     "attention": "true", "padding_index": "-1", "classes": "['click', 'none']",
                     "negative_sampling_rate": "1.0"}
    loaded = onnx.load(str(tmp_path / "m.onnx"))
    assert loaded.SerializeToString() == proto.SerializeToString()
    got = session(loaded).run(None, dict(zip(("indices", "values"), fonnx.to_padded(X[:100]))))
    assert max_rel_error(got[0], raw_output(model)(X[:100])) <= RTOL
    regressor = fastafm.FMRegressor(embedding_dim=4, n_epochs=1, random_state=0, n_threads=1)
    regressor.fit(*planted(False, 200, seed=0))
    assert [o.name for o in fonnx.export(regressor).graph.output] == ["score"]


def test_onnx_is_an_optional_extra_in_the_package_metadata():
    from importlib import metadata

    requires = metadata.requires("fastafm") or []
    assert not any(r.startswith(("onnx", "onnxruntime")) for r in requires if "extra ==" not in r)
    for extra in ("onnx", "test"):
        names = [r.split(";")[0].strip() for r in requires if f'extra == "{extra}"' in r]
        assert "onnx>=1.14" in names and "onnxruntime>=1.16" in names, (extra, names)


# ---------------------------------------------------------------------------------------------- bad input
def test_unfitted_model_is_a_clear_error():
    from sklearn.exceptions import NotFittedError

    for cls in (fastafm.AFMRegressor, fastafm.FMClassifier):
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
            fonnx.export(cls())


@pytest.mark.parametrize("thing", [None, "model.afm", {"w0": 0.0}, object()])
def test_objects_that_are_not_fastafm_models_are_a_type_error(thing):
    with pytest.raises(TypeError, match="takes a fitted fastafm AFMRegressor, AFMClassifier, FMRegressor, "
                                        "FMClassifier, FwFMRegressor or FwFMClassifier, got"):
        fonnx.export(thing)


def test_scikit_learn_models_are_a_type_error():
    from sklearn.linear_model import LinearRegression

    with pytest.raises(TypeError, match="got LinearRegression"):
        fonnx.export(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]))


# ---------------------------------------------------------------------------------------------- to_padded
def test_to_padded_keeps_storage_order_repeats_and_explicit_zeros():
    X = sp.csr_matrix((np.array([2.0, 0.0, 2.0, -1.0], np.float32), np.array([4, 1, 4, 0]), np.array([0, 3, 3, 4])),
                      shape=(3, 6))
    indices, values = fonnx.to_padded(X)
    np.testing.assert_array_equal(indices, [[4, 1, 4], [-1, -1, -1], [0, -1, -1]])
    np.testing.assert_array_equal(values, [[2.0, 0.0, 2.0], [0, 0, 0], [-1.0, 0, 0]])
    assert indices.dtype == np.int64 and values.dtype == np.float32
    wide_i, wide_v = fonnx.to_padded(X, m=5, n_features=6)
    np.testing.assert_array_equal(wide_i[:, :3], indices)
    assert np.all(wide_i[:, 3:] == -1) and np.all(wide_v[:, 3:] == 0)


def test_to_padded_of_dense_rows_skips_zeros_as_predict_does():
    dense = np.array([[0.0, 1.5, 0.0, -2.0], [0.0, 0.0, 0.0, 0.0]])
    indices, values = fonnx.to_padded(dense)
    np.testing.assert_array_equal(indices, [[1, 3], [-1, -1]])
    np.testing.assert_array_equal(values, [[1.5, -2.0], [0.0, 0.0]])


@pytest.mark.parametrize("args, message", [
    ((np.ones(3),), "X must be 2-D"),
    ((np.array([[1.0, np.nan]]),), "NaN or infinity"),
    ((np.array([[1.0, 1e39]]),), "NaN or infinity"),
    ((np.ones((2, 3)), 2), re.escape("m must be an integer >= the longest row's 3 non-zeros, got 2")),
    ((np.ones((2, 3)), 3.0), "m must be an integer"),
    ((np.ones((2, 3)), None, 4), "X has 3 features, but the model is expecting 4 features as input"),
])
def test_to_padded_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        fonnx.to_padded(*args)


# ---------------------------------------------------------------------------------------------- serving doc
def test_the_serving_snippet_runs_with_onnxruntime_and_numpy_only(tmp_path):
    """docs/serving.md's snippet, run in an interpreter where fastafm cannot be imported."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text()
    snippet = re.search(r"<!-- serving snippet -->\n```python\n(.*?)```", doc, re.S)
    assert snippet, "docs/serving.md lost its marked serving snippet"
    model = fastafm.AFMClassifier(embedding_dim=8, attention_dim=8, n_epochs=1, random_state=0, n_threads=1)
    X, y = planted(True, 500, seed=0)
    model.fit(X, y)
    fonnx.export(model, tmp_path / "model.onnx")
    code = "import sys\nsys.modules['fastafm'] = None\n" + snippet.group(1) + (
        "\nimport json\nprint(json.dumps([score.tolist(), probability.tolist()]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.strip().split("\n")[-1]
    score, probability = (np.array(v) for v in json.loads(out))
    rows = sp.csr_matrix((np.array([1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0], np.float32),
                          np.array([0, 13, 30, 7, 50, 61, 95]), np.array([0, 3, 4, 7])), shape=(3, N_FEATURES))
    assert max_rel_error(score, raw_output(model)(rows)) <= RTOL
    assert max_rel_error(probability, model.predict_proba(rows)[:, 1], floor=1e-30) <= RTOL
