"""FwFMRegressor / FwFMClassifier through the shared training pipeline, fields from every source, model files,
libFFM files and their bad input."""
import os

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm import reference_fwfm as ref
from support import write_libffm


def planted(n=3000, classification=True, seed=0):
    return fastafm.make_planted(n, n_fields=6, cardinality=10, classification=classification, random_state=seed)


def small(cls=fastafm.FwFMClassifier, **kw):
    params = dict(embedding_dim=8, n_epochs=4, random_state=0, n_threads=1)
    params.update(kw)
    return cls(**params)


def test_learns_the_planted_field_pairs():
    X, y, fields = planted()
    model = small(fields=fields, n_epochs=8).fit(X, y)
    R = model.field_weights_
    np.testing.assert_array_equal(R, R.T)
    off = R[~np.eye(6, dtype=bool)]
    assert R[0, 1] > np.median(off) + 0.5 and R[2, 3] > np.median(off) + 0.5
    fm = small(fastafm.FMClassifier, n_epochs=8).fit(X, y)
    assert model.score(X, y) > fm.score(X, y)


def test_starts_as_the_fm_and_predicts_as_the_reference():
    X, y, fields = planted(500, classification=False)
    model = small(fastafm.FwFMRegressor, fields=fields, n_epochs=0).fit(X, y)
    fm = small(fastafm.FMRegressor, n_epochs=0).fit(X, y)
    np.testing.assert_array_equal(model.V_, fm.V_)  # R = 1 draws nothing: the FM's initialisation
    np.testing.assert_allclose(model.predict(X), fm.predict(X), rtol=1e-5, atol=1e-6)
    model = small(fastafm.FwFMRegressor, fields=fields).fit(X, y)
    params = {"w0": model.w0_, "w": model.w_, "V": model.V_, "R": model.field_weights_}
    np.testing.assert_allclose(model.predict(X), ref.forward(params, fields, X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd", "adam"])
def test_bit_identical_for_a_seed_and_thread_count(optimizer):
    X, y, fields = planted(1500)
    a = small(fields=fields, optimizer=optimizer, n_threads=2).fit(X, y)
    b = small(fields=fields, optimizer=optimizer, n_threads=2).fit(X, y)
    for name, arr in a.get_model_params().items():
        np.testing.assert_array_equal(arr, b.get_model_params()[name])
    for slot, arrays in a.optimizer_state().items():  # R has its own optimizer slots (Adam's step: w, w0 only)
        assert ("R" in arrays) == (slot != "step")


def test_fields_from_every_source_agree():
    X, y, fields = planted(800)
    ranges = [(10 * f, 10 * f + 10) for f in range(6)]
    as_dict = {i: int(f) for i, f in enumerate(fields)}
    ids = np.column_stack([X.indices[X.indptr[:-1] + c] for c in range(6)])
    outs = [small(fields=f).fit(X, y).decision_function(X)
            for f in (fields, ranges, as_dict, fastafm.fields_of_ids(ids, 60))]
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_field_encoder_fields():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.choice(list("xyz"), 400), "b": rng.choice(list("pq"), 400),
                       "c": rng.choice(list("uvw"), 400)})
    y = (df["a"] == "x") ^ (df["b"] == "p")
    enc = fastafm.FieldEncoder().fit(df)
    model = small(fields=enc.fields_).fit(enc.transform(df), y)
    assert model.field_weights_.shape == (3, 3)
    np.testing.assert_array_equal(model.fields_, enc.fields_)


def test_model_file_partial_fit_and_clone():
    from sklearn.base import clone

    X, y, fields = planted(1000)
    model = small(fields=fields, optimizer="adam").fit(X, y)
    path = "/tmp/fastafm_test_fwfm.afm"
    model.save(path)
    loaded = fastafm.load(path)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    np.testing.assert_array_equal(loaded.fields_, fields)
    model.partial_fit(X, y)
    loaded.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.field_weights_, model.field_weights_)
    again = clone(model).fit(X, y)
    assert again.field_weights_.shape == (6, 6)


def test_model_file_with_bad_fields_is_refused(tmp_path):
    import zipfile

    X, y, fields = planted(300)
    model = small(fields=fields, n_epochs=1).fit(X, y)
    path = tmp_path / "m.afm"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    del members["fields.npy"]
    broken = tmp_path / "broken.afm"
    with zipfile.ZipFile(broken, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    with pytest.raises(ValueError, match="missing array fields"):
        fastafm.load(broken)


def test_early_stopping_eval_set_and_sample_weights():
    X, y, fields = planted(2000)
    model = small(fields=fields, n_epochs=30, early_stopping=True).fit(X[:1500], y[:1500], eval_set=(X[1500:], y[1500:]))
    assert model.best_epoch_ >= 1 and len(model.history_) <= 30 and "eval_logloss" in model.history_[0]
    ones = small(fields=fields).fit(X, y, sample_weight=np.ones(X.shape[0]))
    plain = small(fields=fields).fit(X, y)
    np.testing.assert_array_equal(ones.field_weights_, plain.field_weights_)
    w = np.where(y > 0, 3.0, 1.0)
    assert not np.array_equal(small(fields=fields).fit(X, y, sample_weight=w).field_weights_, plain.field_weights_)


def test_warm_start_from_an_fm():
    X, y, fields = planted(1000)
    fm = small(fastafm.FMClassifier).fit(X, y)
    model = small(fields=fields, n_epochs=0).fit(X, y, init=fm)
    np.testing.assert_allclose(model.decision_function(X), fm.decision_function(X), rtol=1e-5, atol=1e-5)


def test_bad_fields():
    X, y, fields = planted(200)
    with pytest.raises(ValueError, match="field of each of the 60 features"):
        small(fields=fields[:-1]).fit(X, y)
    bad = fields.copy()
    bad[3] = -1
    with pytest.raises(ValueError, match="feature 3 no field"):
        small(fields=bad).fit(X, y)
    with pytest.raises(ValueError, match="None, an array"):
        small(fields="columns").fit(X, y)
    with pytest.raises(ValueError, match="appears in columns 0 and 1"):
        fastafm.fields_of_ids([[0, 1], [1, 2]])


def test_one_field_when_none():
    X, y, _ = planted(500)
    model = small(n_epochs=2).fit(X, y)
    assert model.field_weights_.shape == (1, 1) and np.all(model.fields_ == 0)


@pytest.mark.parametrize("cls", [fastafm.FwFMClassifier, fastafm.FwFMRegressor])
def test_onnx_graph_equals_decision_function(cls):
    ort = pytest.importorskip("onnxruntime")
    X, y, fields = planted(400, classification=cls is fastafm.FwFMClassifier)
    X = X.tolil()
    X[0, 3], X[1, 7] = 0.5, 2.0  # a row with two non-zeros in field 0, real values
    X = X.tocsr()
    model = small(cls, fields=fields, n_epochs=3).fit(X, y)
    session = ort.InferenceSession(fastafm.onnx.export(model).SerializeToString())
    for rows in (X, X[:1], X[:0]):
        indices, values = fastafm.onnx.to_padded(rows)
        out = session.run(None, {"indices": indices, "values": values})
        raw = model.decision_function if hasattr(model, "decision_function") else model.predict  # y(x)
        want = raw(rows) if rows.shape[0] else np.zeros(0)
        assert np.all(np.abs(out[0] - want) <= 1e-5 * np.maximum(np.abs(want), 0.1))


# ---------------------------------------------------------------------------------------------- libFFM files
def test_load_libffm(tmp_path):
    path = tmp_path / "a.ffm"
    path.write_text("1 0:0:1 1:3:1 2:5:0.5\n0 0:1:1 1:4:1  # two fields\n\n1 2:6:1 0:0:2 0:0:1\n")
    X, y, fields = fastafm.load_libffm(path)
    np.testing.assert_array_equal(y, [1, 0, 1])
    assert X.shape == (3, 7) and X.nnz == 8  # repeated ids kept as separate non-zeros
    np.testing.assert_array_equal(X.indices[X.indptr[2]:], [6, 0, 0])
    np.testing.assert_array_equal(fields, [0, 0, 0, 1, 1, 2, 2])
    X, _, fields = fastafm.load_libffm(path, n_features=10)
    assert X.shape == (3, 10) and fields[9] == 2
    model = small(fields=fields, n_epochs=1).fit(X, y)
    assert model.field_weights_.shape == (3, 3)


@pytest.mark.parametrize("text, n_fields, message", [
    ("1 0:0:1\n0 1:0:1\n", None, r"b.ffm:2: feature 0 is in field 1, but .*b.ffm:1 put it in field 0"),
    ("1 0:0:1\n0 3:1:1\n", 2, r"b.ffm:2: field id 3 is out of range: n_fields is 2"),
    ("1 0:0:1\nx 1:1:1\n", None, r"b.ffm:2: label 'x' is not a number"),
    ("1 0:0\n", None, r"b.ffm:1: token '0:0' is not of the form field:feature:value \(1 ':'\)"),
    ("1 0:-1:1\n", None, r"b.ffm:1: feature id '-1' is negative"),
    ("1 0:1:1\n\n# c\n1 70000:1:1\n", None, r"b.ffm:4: field id '70000' is beyond the limit \(max 65535\)"),
    ("1 0:1:1\n1 0:1:1:2\n", None, r"b.ffm:2: token '0:1:1:2' is not of the form field:feature:value \(3 ':'\)"),
    ("1 0:1:nan\n", None, r"b.ffm:1: value 'nan' of feature 1 is not finite"),
    ("1 0:1:1\n", 0, r"n_fields must be a positive integer or None, got 0"),
])
def test_libffm_bad_input(tmp_path, text, n_fields, message):
    path = tmp_path / "b.ffm"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        fastafm.load_libffm(path, n_fields=n_fields)


# ---------------------------------------------------------------------------------------------- command line
def test_cli_trains_fwfm_from_libffm(tmp_path, capsys):
    from fastafm.cli.commands import main

    X, y, fields = planted(600)
    path = tmp_path / "d.ffm"
    write_libffm(path, X, y, fields)
    model = tmp_path / "m.afm"
    assert main(["train", str(path), "--model-type", "fwfm", "--task", "classification", "--model", str(model),
                 "--epochs", "2", "--threads", "1", "--quiet"]) == 0
    loaded = fastafm.load(model)
    assert type(loaded).__name__ == "FwFMClassifier"
    np.testing.assert_array_equal(loaded.fields_, fields)
    assert main(["eval", "--model", str(model), str(path), "--json"]) == 0
    assert '"auc"' in capsys.readouterr().out
    # --cache converts the libFFM file into a cache that keeps its fields (tests/test_ffm_cache.py)
    assert main(["train", str(path), "--model-type", "fwfm", "--model", str(model), "--cache",
                 str(tmp_path / "c.cache"), "--epochs", "1", "--quiet"]) == 0
    np.testing.assert_array_equal(fastafm.load(model).fields_, fields)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_team_modes_give_bit_identical_models(monkeypatch, n_threads):
    """As tests/test_contention.py for AFM: R's dense gradient is reduced in chunk order like W's."""
    X, y, fields = planted(800, classification=False)
    got = {}
    for mode in ("team", "alternate"):
        monkeypatch.setenv("FASTAFM_TEAM_MODE", mode)
        model = small(fastafm.FwFMRegressor, fields=fields, batch_size=16, dropout=0.2, n_threads=n_threads).fit(X, y)
        got[mode] = model.get_model_params()
    for name, value in got["team"].items():
        np.testing.assert_array_equal(got["alternate"][name], value)


def _feed_fifo(fifo, data: bytes):
    """A thread writing `data` into the FIFO (opening it blocks until the reader opens it too)."""
    import threading

    def write():
        with open(fifo, "wb") as fh:
            fh.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return writer


def test_load_libffm_reads_a_pipe_and_names_rows_there(tmp_path):
    text = b"1 0:0:1 1:3:1\r\n# c\n0 1:4:0.5 0:1:2\n"
    path = tmp_path / "a.ffm"
    path.write_bytes(text)
    want = fastafm.load_libffm(path)
    fifo = tmp_path / "p.ffm"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, text)
    got = fastafm.load_libffm(fifo)
    writer.join()
    assert got[0].shape == want[0].shape and (got[0] != want[0]).nnz == 0
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_array_equal(want[2], [0, 0, 0, 1, 1])  # id 2, never named, takes id 1's field
    writer = _feed_fifo(fifo, b"1 0:0:1\n0 1:0:1\n")  # a pipe is read once: the conflict is named by row
    with pytest.raises(ValueError, match=r"p.ffm:row 2: feature 0 is in field 1, but .*p.ffm:row 1 put it"):
        fastafm.load_libffm(fifo)
    writer.join()


def test_load_libffm_checks_the_memory_of_a_huge_id_first(tmp_path, monkeypatch):
    from fastafm.data import validation

    path = tmp_path / "a.ffm"
    path.write_text("1 0:0:1 3:2147483647:1\n")
    monkeypatch.setattr(validation, "available_memory", lambda: 1 << 30)
    with pytest.raises(MemoryError, match=r"the field array of .*a.ffm \(n_features=2147483648\) needs about 8"):
        fastafm.load_libffm(path)
