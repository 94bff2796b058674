"""Model files: versioned and checksummed; every truncated, corrupted, wrong-version or hand-edited file is a
ValueError naming the file, and loading never unpickles anything."""
from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastafm
from fastafm.models import persistence
from fastafm.models.persistence import ModelFileError


@pytest.fixture(scope="module")
def models():
    X, y, _ = fastafm.make_planted(n_rows=200, n_fields=3, cardinality=4, planted_pairs=((0, 1),), random_state=3)
    reg = fastafm.AFMRegressor(embedding_dim=3, attention_dim=2, n_epochs=2, random_state=1, n_threads=1).fit(X, y)
    clf = fastafm.AFMClassifier(embedding_dim=3, attention_dim=2, n_epochs=1, random_state=1,
                                n_threads=1).fit(X, np.where(y > 0, "yes", "no"))
    return X, y, reg, clf


@pytest.fixture
def saved(tmp_path, models):
    path = tmp_path / "model.afm"
    models[2].save(path)
    return path


def members_of(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def npy(arr, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def meta_of(members) -> dict:
    return json.loads(np.load(io.BytesIO(members["meta.npy"])).tobytes())


def write_zip(path, members, compression=zipfile.ZIP_STORED, resign=True):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    data = persistence.resign(buf.getvalue()) if resign else buf.getvalue()
    if compression != zipfile.ZIP_STORED:  # resign rewrites stored members: recompress afterwards
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=compression) as zf:
            for name, raw in members.items():
                zf.writestr(name, raw)
        data = buf.getvalue()
    path.write_bytes(data)
    return path


def edit(path, members=None, meta=None, resign=True):
    """Rewrite a saved model with some members replaced (None deletes) and/or its metadata changed, then
    (by default) recompute its checksums, as someone editing the file by hand would."""
    m = members_of(path)
    if meta is not None:
        record = meta_of(m)
        meta(record)
        m["meta.npy"] = npy(np.frombuffer(json.dumps(record).encode(), dtype=np.uint8))
    for name, raw in (members or {}).items():
        if raw is None:
            m.pop(name, None)
        else:
            m[name] = raw
    return write_zip(path, m, resign=resign)


def assert_rejected(path, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        fastafm.load(path)
    assert isinstance(info.value, ModelFileError)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------ good files


def test_round_trip_is_exact(tmp_path, models):
    X, _, reg, clf = models
    for model in (reg, clf):
        path = tmp_path / f"{type(model).__name__}.afm"
        model.save(path)
        loaded = fastafm.load(path)
        assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
        a, b = loaded.training_state_, model.training_state_
        for name in persistence.PARAM_NAMES:
            np.testing.assert_array_equal(a.params[name], b.params[name])
            np.testing.assert_array_equal(a.slots["G"][name], b.slots["G"][name])
            assert a.params[name].flags.writeable and a.params[name].dtype == np.float32
        assert loaded.history_ == model.history_ and loaded.n_epochs_done_ == model.n_epochs_done_
        assert a.rng.bit_generator.state == b.rng.bit_generator.state
        np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(fastafm.load(tmp_path / "AFMClassifier.afm").classes_, ["no", "yes"])


def test_file_is_versioned_checksummed_and_plain_npz(saved):
    meta = meta_of(members_of(saved))
    keys = persistence.array_keys(3, "adagrad")  # an adagrad model: parameters and slot G
    assert meta["format"] == "fastafm-model" and meta["version"] == persistence.VERSION == 3
    assert set(meta["sha256"]) == {"meta", *keys}
    with np.load(saved, allow_pickle=False) as npz:  # still an ordinary .npz
        assert set(npz.files) == {"meta", *keys}


def test_saving_is_byte_reproducible(tmp_path, saved, models):
    again = tmp_path / "again.afm"
    models[2].save(again)
    assert again.read_bytes() == saved.read_bytes()
    reloaded = tmp_path / "reloaded.afm"
    fastafm.load(saved).save(reloaded)
    assert reloaded.read_bytes() == saved.read_bytes()


def _v2_arrays(members, optimizer="adagrad") -> dict:
    """The arrays of a version 2 file holding the model of a version 3 file's members: one accumulator per
    parameter (adagrad's slot G, or the dummies of ones that version 2 wrote for SGD models)."""
    arrays = {name[:-4]: np.load(io.BytesIO(raw)) for name, raw in members.items() if name != "meta.npy"}
    out = {key: a for key, a in arrays.items() if key.startswith("param.")}
    for key, a in arrays.items():
        if key.startswith("param."):
            name = key.split(".")[1]
            out[f"accum.{name}"] = arrays[f"slot.G.{name}"] if optimizer == "adagrad" else np.ones_like(a)
    return out


def test_version_1_files_are_still_read(tmp_path, saved, models):
    """fastafm 0.1 wrote np.savez archives without checksums."""
    m = members_of(saved)
    arrays = _v2_arrays(m)
    meta = meta_of(m)
    meta["version"] = 1
    del meta["sha256"], meta["optimizer_slots"]
    path = tmp_path / "v1.afm"
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    np.testing.assert_array_equal(fastafm.load(path).predict(models[0]), models[2].predict(models[0]))


@pytest.mark.parametrize("optimizer", ["adagrad", "sgd"])
def test_version_2_files_load_bit_for_bit(tmp_path, models, optimizer):
    """Version 2 stored one accumulator per parameter (dummies for SGD): they become adagrad's slot G (an SGD
    model has no state), and the model predicts and continues training exactly as the one that was saved."""
    X, y = models[0], models[1]
    model = fastafm.AFMRegressor(embedding_dim=3, attention_dim=2, n_epochs=2, random_state=1, n_threads=1,
                                 optimizer=optimizer, learning_rate=0.1 if optimizer == "adagrad" else 0.005).fit(X, y)
    model.save(tmp_path / "v3.afm")
    m = members_of(tmp_path / "v3.afm")
    meta = meta_of(m)
    meta["version"] = 2
    del meta["optimizer_slots"]
    members = {f"{key}.npy": npy(a) for key, a in _v2_arrays(m, optimizer).items()}
    members["meta.npy"] = npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    path = write_zip(tmp_path / "v2.afm", members)
    loaded = fastafm.load(path)
    assert list(loaded.optimizer_state()) == (["G"] if optimizer == "adagrad" else [])
    for slot, arrays in model.optimizer_state().items():
        for name, a in arrays.items():
            np.testing.assert_array_equal(loaded.optimizer_state()[slot][name], a)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.partial_fit(X, y).predict(X), model.partial_fit(X, y).predict(X))
    loaded.save(tmp_path / "again.afm")  # written as version 3: an SGD model saves no accumulators
    assert not any(k.startswith(("accum.", "slot.")) for k in members_of(tmp_path / "again.afm")) or \
        optimizer == "adagrad"


def test_save_is_atomic(tmp_path, saved, models):
    before = saved.read_bytes()
    model = fastafm.load(saved)
    model.training_state_.history = [{"epoch": object()}]  # not JSON: the save fails half-way
    with pytest.raises(TypeError):
        model.save(saved)
    assert saved.read_bytes() == before  # the old file is intact, and no temporary file is left behind
    assert sorted(os.listdir(tmp_path)) == ["model.afm"]


def test_opening_errors_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        fastafm.load(tmp_path / "missing.afm")
    with pytest.raises(IsADirectoryError):
        fastafm.load(tmp_path)
    with pytest.raises(TypeError, match="path must be"):
        fastafm.load(3)


# ------------------------------------------------------------------------------- truncated, corrupted


@pytest.mark.parametrize("keep", [0, 1, 30, 0.25, 0.5, 0.9, -22, -1])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    n = keep if isinstance(keep, int) and keep >= 0 else (len(data) + keep if isinstance(keep, int)
                                                           else int(len(data) * keep))
    saved.write_bytes(data[:n])
    assert_rejected(saved, "not a")


@pytest.mark.parametrize("member", ["meta.npy", "param.V.npy", "param.w0.npy", "slot.G.W.npy", "param.p.npy"])
def test_flipped_byte_in_each_member(saved, member):
    """A bit flip in an array's data passes the ZIP CRC once recomputed, but not the SHA-256 digest."""
    m = members_of(saved)
    raw = bytearray(m[member])
    raw[-1] ^= 0x10
    m[member] = bytes(raw)
    write_zip(saved, m, resign=False)
    assert_rejected(saved, "SHA-256 checksum|corrupted metadata")


def test_flipped_byte_in_the_raw_file(saved):
    """The same flip without recomputing the ZIP CRC: the archive reader already refuses it."""
    data = bytearray(saved.read_bytes())
    offset = data.index(b"param.V.npy") + 200
    data[offset] ^= 0xFF
    saved.write_bytes(bytes(data))
    assert_rejected(saved, "not a valid fastafm model file|checksum")


@pytest.mark.parametrize("version,fragment", [(0, "version 0 is unknown"), (4, "version 4 was written by a newer"),
                                              ("2", "version '2' is unknown"), (None, "version None"),
                                              (2.0, "version 2.0"), (True, "version True")])
def test_wrong_version(saved, version, fragment):
    def change(meta):
        meta["version"] = version

    edit(saved, meta=change)
    assert_rejected(saved, fragment)


def test_not_a_model_at_all(tmp_path):
    cases = {
        "empty.afm": b"",
        "text.afm": b"1 0:1 2:1\n",
        "other.npz": None,
        "npy.afm": npy(np.zeros(3, np.float32)),
    }
    for name, data in cases.items():
        path = tmp_path / name
        if data is None:
            np.savez(path, x=np.zeros(3))
        else:
            path.write_bytes(data)
        assert_rejected(path, "not a fastafm model file")


# ------------------------------------------------------------------------------ pickles are never loaded


class _Payload:
    """Unpickling this creates the marker file: proof that something was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_estimator_is_not_loaded(tmp_path, models):
    marker = tmp_path / "unpickled"
    path = tmp_path / "pickle.afm"
    path.write_bytes(pickle.dumps([models[2], _Payload(marker)]))
    assert_rejected(path, "looks like a pickle")
    assert not marker.exists()


@pytest.mark.parametrize("member", ["param.V.npy", "meta.npy", "slot.G.b.npy"])
def test_object_array_members_are_not_unpickled(tmp_path, saved, member):
    marker = tmp_path / "unpickled"
    payload = npy(np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    edit(saved, members={member: payload})
    assert_rejected(saved, "dtype object")
    assert not marker.exists()


def test_extra_pickle_member_is_refused_unread(tmp_path, saved):
    marker = tmp_path / "unpickled"
    edit(saved, members={"evil.npy": npy(np.array([_Payload(marker)], dtype=object), allow_pickle=True)})
    assert_rejected(saved, "unexpected members")
    assert not marker.exists()


# ---------------------------------------------------------------------------------- hand-edited files



ARRAY_EDITS = [
    ("V with a row too many", "param.V.npy", lambda a: np.vstack([a, a[:1]]), r"param.V has shape \(13, 3\)"),
    ("V transposed", "param.V.npy", lambda a: np.ascontiguousarray(a.T), r"param.V has shape \(3, 12\)"),
    ("w 2-D", "param.w.npy", lambda a: a[:, None], r"param.w has shape \(12, 1\)"),
    ("W as float64", "param.W.npy", lambda a: a.astype(np.float64), "param.W has dtype float64"),
    ("p big-endian", "param.p.npy", lambda a: a.astype(">f4"), "param.p has dtype >f4"),
    ("b as int", "param.b.npy", lambda a: a.astype(np.int32), "param.b has dtype int32"),
    ("NaN weight", "param.V.npy", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a),
     "param.V contains NaN"),
    ("inf bias", "param.w0.npy", lambda a: a * np.inf, "param.w0 contains NaN or infinity"),
    ("NaN accumulator", "slot.G.h.npy", lambda a: a * np.nan, "slot.G.h contains NaN"),
    ("negative accumulator", "slot.G.V.npy", lambda a: -a, "slot.G.V holds Adagrad accumulators <= 0"),
    ("zero accumulator", "slot.G.p.npy", lambda a: a * 0, "slot.G.p holds Adagrad accumulators <= 0"),
    ("structured dtype", "param.h.npy", lambda a: np.zeros(a.shape, dtype=[("x", "<f4")]), "param.h has dtype"),
    ("Fortran order", "param.V.npy", lambda a: np.asfortranarray(a), "param.V is stored in Fortran order"),
]


@pytest.mark.parametrize("what,member,change,fragment", ARRAY_EDITS, ids=[c[0] for c in ARRAY_EDITS])
def test_edited_arrays(saved, what, member, change, fragment):
    arr = np.load(io.BytesIO(members_of(saved)[member]))
    with np.errstate(invalid="ignore"):
        edit(saved, members={member: npy(change(arr))})
    assert_rejected(saved, fragment)


def test_edited_array_without_new_checksum(saved):
    arr = np.load(io.BytesIO(members_of(saved)["param.V.npy"]))
    edit(saved, members={"param.V.npy": npy(arr * 2)}, resign=False)
    assert_rejected(saved, "param.V fails its SHA-256 checksum")


def test_header_lying_about_the_size(saved):
    raw = members_of(saved)["param.V.npy"]
    edit(saved, members={"param.V.npy": raw[:-8]})  # header says (12, 3) but two floats are missing
    assert_rejected(saved, "param.V holds 136 data bytes, its header says 144")


def _set_meta(key, value):
    def change(meta):
        if value is KeyError:
            del meta[key]
        else:
            meta[key] = value
    return change


def _set_hyper(key, value):
    def change(meta):
        meta["hyperparameters"][key] = value
    return change


META_EDITS = [
    ("unknown class", _set_meta("class", "os.system"), "unknown model class 'os.system'"),
    ("no class", _set_meta("class", KeyError), "unknown model class None"),
    ("other format", _set_meta("format", "something-else"), "not a fastafm model file"),
    ("no hyperparameters", _set_meta("hyperparameters", KeyError), "no hyperparameters record"),
    ("unknown hyperparameter", _set_hyper("exec", "rm -rf /"), r"unknown hyperparameters \['exec'\]"),
    ("negative embedding_dim", _set_hyper("embedding_dim", -1), "invalid hyperparameters.*embedding_dim"),
    ("dropout 2", _set_hyper("dropout", 2.0), "invalid hyperparameters.*dropout"),
    ("string learning_rate", _set_hyper("learning_rate", "fast"), "invalid hyperparameters.*learning_rate"),
    ("random_state a list", _set_hyper("random_state", [1, 2]), "random_state"),
    ("embedding_dim vs V", _set_hyper("embedding_dim", 4), r"param.V has shape \(12, 3\), expected \(12, 4\)"),
    ("n_features_in 0", _set_meta("n_features_in", 0), "n_features_in 0 is not a positive int32"),
    ("n_features_in text", _set_meta("n_features_in", "12"), "n_features_in '12'"),
    ("n_features_in huge", _set_meta("n_features_in", 2**40), "n_features_in 1099511627776"),
    ("n_features_in vs w", _set_meta("n_features_in", 13), r"param.w has shape \(12,\), expected \(13,\)"),
    ("n_epochs_done -1", _set_meta("n_epochs_done", -1), "n_epochs_done -1"),
    ("n_epochs_done 2**63", _set_meta("n_epochs_done", 2**63), "n_epochs_done 9223372036854775808"),
    ("history not a list", _set_meta("history", "many"), "history is not a list"),
    ("dropout_seed negative", _set_meta("dropout_seed", -5), "dropout_seed -5"),
    ("dropout_seed float", _set_meta("dropout_seed", 1.5), "dropout_seed 1.5"),
    ("rng_state garbage", _set_meta("rng_state", {"bit_generator": "MT19937"}), "invalid rng_state"),
    ("rng_state not a record", _set_meta("rng_state", 7), "rng_state is not a record"),
    ("classes on a regressor", _set_meta("classes", [0, 1]), "a regressor has no classes"),
    ("label_range NaN", _set_meta("label_range", [float("nan"), 1.0]), "label_range"),
    ("label_range reversed", _set_meta("label_range", [2.0, 1.0]), "label_range"),
    ("row_nnz negative", _set_meta("row_nnz", -1.0), "row_nnz -1.0"),
    ("row_nnz NaN", _set_meta("row_nnz", float("nan")), "row_nnz nan"),
    ("row_nnz a string", _set_meta("row_nnz", "39"), "row_nnz '39'"),
    ("row_nnz a bool", _set_meta("row_nnz", True), "row_nnz True"),
]


@pytest.mark.parametrize("what,change,fragment", META_EDITS, ids=[c[0] for c in META_EDITS])
def test_edited_metadata(saved, what, change, fragment):
    edit(saved, meta=change)
    assert_rejected(saved, fragment)


@pytest.mark.parametrize("classes", [["a"], ["a", "b", "c"], ["a", "a"], ["a", 1], [None, "a"], [[1], [2]]])
def test_edited_classifier_classes(tmp_path, models, classes):
    path = tmp_path / "clf.afm"
    models[3].save(path)
    edit(path, meta=_set_meta("classes", classes))
    assert_rejected(path, "classes .* are not two distinct labels")


def test_edited_metadata_without_new_checksum(saved):
    edit(saved, meta=_set_hyper("learning_rate", 0.5), resign=False)
    assert_rejected(saved, "metadata fails its SHA-256 checksum")


ARCHIVE_EDITS = [
    ("missing array", {"slot.G.p.npy": None}, "missing array slot.G.p"),
    ("missing metadata", {"meta.npy": None}, "no metadata record"),
    ("metadata not JSON", {"meta.npy": npy(np.frombuffer(b"{not json", dtype=np.uint8))}, "corrupted metadata"),
    ("metadata not UTF-8", {"meta.npy": npy(np.frombuffer(b'{"a": "\xff"}', dtype=np.uint8))},
     "corrupted metadata"),
    ("metadata nested too deep", {"meta.npy": npy(np.frombuffer(b"[" * 100000, dtype=np.uint8))},
     "corrupted metadata"),
    ("metadata a list", {"meta.npy": npy(np.frombuffer(b"[1, 2]", dtype=np.uint8))}, "not a fastafm model file"),
    ("metadata as float", {"meta.npy": npy(np.zeros(3))}, "meta has dtype float64"),
    ("metadata 2-D", {"meta.npy": npy(np.zeros((2, 2), np.uint8))}, "meta has shape"),
    ("not an npy member", {"param.V.npy": b"\x93NUMPY junk"}, "unsupported .npy version"),
    ("npy version 3", {"param.V.npy": b"\x93NUMPY\x03\x00" + b"\x00" * 40}, r"unsupported .npy version \(3, 0\)"),
    ("no npy magic", {"param.V.npy": b"PK\x03\x04" + b"\x00" * 40}, "not a valid fastafm model file"),
    ("huge npy header", {"param.V.npy": b"\x93NUMPY\x01\x00\xff\xff" + b" " * 65535}, "npy header too long"),
    ("huge npy 2.0 header", {"param.V.npy": b"\x93NUMPY\x02\x00\xff\xff\xff\x7f" + b" " * 100}, "npy header too long"),
]


@pytest.mark.parametrize("what,members,fragment", ARCHIVE_EDITS, ids=[c[0] for c in ARCHIVE_EDITS])
def test_edited_archive(saved, what, members, fragment):
    edit(saved, members=members)
    assert_rejected(saved, fragment)


def test_duplicate_member(saved):
    m = members_of(saved)
    buf = io.BytesIO()
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(buf, "w") as zf:
            for name, raw in m.items():
                zf.writestr(name, raw)
            zf.writestr("param.V.npy", m["param.V.npy"])
    saved.write_bytes(buf.getvalue())
    assert_rejected(saved, "duplicate members")


def test_compressed_members_are_refused(saved):
    write_zip(saved, members_of(saved), compression=zipfile.ZIP_DEFLATED)
    assert_rejected(saved, "is compressed")


def test_files_from_before_early_stopping_by_default_load_with_their_behaviour():
    # version1.afm and regressor_v3.afm were written when the estimators had `patience` (None: no early
    # stopping) and no pretraining; they load with the settings that train as they did.
    corpus = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz", "corpus", "model")
    for name in ("version1.afm", "regressor_v3.afm"):
        model = fastafm.load(os.path.join(corpus, name))
        params = model.get_params()
        assert "patience" not in params
        assert params["early_stopping"] is False and params["pretrain"] is None, name
        assert np.isfinite(model.predict(np.eye(model.n_features_in_, dtype=np.float32))).all()


def test_files_from_before_the_non_zeros_rule_keep_the_unscaled_rate(tmp_path):
    """learning_rate="auto" divides by mean non-zeros / 10 above 10 (docs/model.md); a model file without
    "row_nnz" (written before the rule) loads with the table's rate, and its partial_fit continues at it."""
    X, y, _ = fastafm.make_planted(300, n_fields=20, cardinality=5, random_state=0)
    model = fastafm.AFMRegressor(embedding_dim=4, attention_dim=4, n_epochs=1, random_state=0).fit(X, y)
    assert model.learning_rate_ == pytest.approx(0.05)  # 0.1 / (20 / 10)
    path = tmp_path / "m.afm"
    model.save(path)
    edit(path, meta=_set_meta("row_nnz", KeyError))
    old = fastafm.load(path)
    assert old.learning_rate_ == 0.1
    old.partial_fit(X, y)
    assert old.learning_rate_ == 0.1
