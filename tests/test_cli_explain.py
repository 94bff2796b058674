"""The command line of issue 24: `fastafm explain` (JSON lines that sum to the score), training on rate
files (--loss logistic with a weights file of impressions) and --negative-sampling-rate."""
from __future__ import annotations

import json

import numpy as np
import pytest

import fastafm
from fastafm.cli import main

SMALL = ["--epochs", "3", "--embedding-dim", "8", "--threads", "1", "--quiet"]


def _write(path, X, y):
    with open(path, "w") as fh:
        for r in range(X.shape[0]):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            fh.write(f"{y[r]:.9g} " + " ".join(f"{i}:{v:g}" for i, v in zip(X.indices[lo:hi], X.data[lo:hi])) + "\n")
    return str(path)


def test_explain_writes_rows_that_sum_to_the_score(tmp_path, capsys):
    X, y, _, _ = fastafm.make_clicks(800, random_state=0)
    train = _write(tmp_path / "t.libfm", X, y)
    model_path = str(tmp_path / "m.afm")
    assert main(["train", train, "--model", model_path, "--task", "classification", "--attention-dim", "8",
                 "--negative-sampling-rate", "0.5", *SMALL]) == 0
    model = fastafm.load(model_path)
    assert model.negative_sampling_rate == 0.5
    capsys.readouterr()
    assert main(["explain", "--model", model_path, train, "--top", "0"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 800
    Xl, _ = fastafm.load_libfm(train, n_features=model.n_features_in_)
    df = model.decision_function(Xl)
    for r in (0, 1, 799):
        row = lines[r]
        assert row["score"] == pytest.approx(df[r], rel=1e-5, abs=1e-6)
        assert row["base_value"] + sum(f[2] for f in row["features"]) == pytest.approx(df[r], rel=1e-5, abs=1e-6)
        assert len(row["pairs"]) == 15  # 6 fields
    assert main(["explain", "--model", model_path, train, "--top", "2", "--out", str(tmp_path / "e.jsonl")]) == 0
    first = json.loads((tmp_path / "e.jsonl").read_text().splitlines()[0])
    assert len(first["features"]) == 2 and len(first["pairs"]) == 2


def test_train_on_rate_rows_with_impression_weights(tmp_path, capsys):
    X, y, _, _ = fastafm.make_clicks(3000, n_fields=4, cardinality=3, base_logit=-1.0, random_state=0)
    keys, inv = np.unique(X.toarray(), axis=0, return_inverse=True)
    inv = inv.ravel()
    n = np.bincount(inv)
    import scipy.sparse as sp

    train = _write(tmp_path / "rates.libfm", sp.csr_matrix(keys), np.bincount(inv, weights=y) / n)
    (tmp_path / "w.txt").write_text("".join(f"{v}\n" for v in n))
    model_path = str(tmp_path / "r.fm")
    assert main(["train", train, "--weights", str(tmp_path / "w.txt"), "--model", model_path, "--model-type", "fm",
                 "--loss", "logistic", "--early-stopping-metric", "ne", *SMALL]) == 0
    model = fastafm.load(model_path)
    assert isinstance(model, fastafm.FMRegressor) and model.loss == "logistic"
    capsys.readouterr()
    assert main(["eval", "--model", model_path, train, "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"rows", "logloss", "ne"}
    assert main(["train", train, "--model", model_path, "--loss", "logistic", "--task", "classification",
                 *SMALL]) != 0
