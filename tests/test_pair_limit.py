"""Work without bound (issue 26): AFM's attention is O(pairs) per row, m(m-1)/2 for m non-zeros, so one libFM line
of 300,000 repeated ids (4.5e10 pairs) kept `fastafm predict` busy for minutes. Rows over max_pairs_per_row are
refused by every entry point with one line naming the row and the limit (fastafm.data.limits).

The class is tested through every entry point with a small limit (cheap rows), and the reported cases with the
default limit in a child process whose timeout only guards against the hang coming back."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import fastafm
from fastafm.cli import main
from fastafm.data import limits

TINY = dict(embedding_dim=2, attention_dim=2, n_epochs=1, n_threads=1, random_state=0)
LIMIT = 45  # 10 non-zeros are 45 pairs: allowed; 11 are 55: refused
CHILD_TIMEOUT = 120  # a hang guard only: the refused cases take well under a second anywhere


def rows(lengths, n_features=20, seed=0):
    """CSR rows of the given numbers of non-zeros (ids may repeat: repeated ids are separate non-zeros)."""
    rng = np.random.default_rng(seed)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = rng.integers(0, n_features, indptr[-1])
    return sp.csr_matrix((np.ones(indptr[-1], np.float32), indices, indptr), shape=(len(lengths), n_features))


@pytest.fixture
def small_limit():
    limits.set_max_pairs_per_row(LIMIT)
    yield LIMIT
    limits.set_max_pairs_per_row(None)


@pytest.fixture(scope="module")
def fitted():
    X = rows([3] * 60)
    y = np.arange(60, dtype=float) % 2
    return (X, y, fastafm.AFMRegressor(**TINY, pretrain=None).fit(X, y),
            fastafm.AFMClassifier(**TINY, pretrain=None).fit(X, y))


def _message(name, row, m):
    return (rf"{name} row {row} has {m} non-zeros, {m * (m - 1) // 2} feature pairs, more than "
            rf"max_pairs_per_row={LIMIT}")


def test_every_entry_point_refuses_a_row_over_the_limit_naming_it(fitted, small_limit, tmp_path):
    X, y, reg, clf = fitted
    bad = rows([2, 10, 11, 3, 12])  # row 2 is the first over the limit (row 1's 45 pairs are allowed)
    y_bad = np.array([0.0, 1.0, 0.0, 1.0, 0.0])
    cache = fastafm.convert((bad, y_bad), tmp_path / "bad.cache")
    calls = {
        "predict": lambda: reg.predict(bad), "decision_function": lambda: clf.decision_function(bad),
        "predict_proba": lambda: clf.predict_proba(bad), "attention_weights": lambda: reg.attention_weights(bad),
        "pair_attention": lambda: clf.pair_attention(bad), "score": lambda: reg.score(bad, y_bad),
        "partial_fit": lambda: reg.partial_fit(bad, y_bad),
        "fit": lambda: fastafm.AFMRegressor(**TINY).fit(bad, y_bad),
        "fit classifier": lambda: fastafm.AFMClassifier(**TINY).fit(bad, y_bad),
        "eval_set": lambda: fastafm.AFMRegressor(**TINY).fit(X, y, eval_set=(bad, y_bad)),
    }
    for what, call in calls.items():
        name = "eval_set X" if what == "eval_set" else "X"
        with pytest.raises(fastafm.RowTooLongError, match=_message(name, 2, 11) + r" \(and 1 more row\(s\) over it\)") as info:
            call()
        assert isinstance(info.value, ValueError) and "\n" not in str(info.value), what
    cache_calls = {"fit": lambda: fastafm.AFMRegressor(**TINY).fit(cache),
                   "eval_set": lambda: fastafm.AFMRegressor(**TINY).fit(X, y, eval_set=(cache, None)),
                   "partial_fit": lambda: fastafm.AFMRegressor(**TINY).partial_fit(cache)}
    for what, call in cache_calls.items():
        with pytest.raises(fastafm.RowTooLongError, match=f"{cache.path}: its longest row has 12 non-zeros, 66"):
            call()


def test_fm_and_uniform_pooling_are_not_limited(small_limit):
    """Their pair term is O(non-zeros · k): no limit applies."""
    long = rows([30, 2, 40])
    y = np.array([1.0, 2.0, 3.0])
    for model in (fastafm.FMRegressor(**{k: v for k, v in TINY.items() if k != "attention_dim"}),
                  fastafm.AFMRegressor(**TINY, attention=False, pretrain=None)):
        assert np.isfinite(model.fit(long, y).predict(long)).all()


def test_a_refused_fit_leaves_the_fitted_model_as_it_was(fitted, small_limit):
    """Refused before anything is trained (also before the FM of pretrain="fm")."""
    X, y, reg, _ = fitted
    before = reg.predict(X)
    with pytest.raises(fastafm.RowTooLongError):
        reg.fit(rows([50]), [1.0])
    np.testing.assert_array_equal(reg.predict(X), before)


def test_the_limit_is_set_by_the_function_the_environment_and_validated(monkeypatch):
    assert limits.max_pairs_per_row() == limits.DEFAULT_MAX_PAIRS_PER_ROW == 2**25
    monkeypatch.setenv(limits.ENV, "1000")
    assert fastafm.max_pairs_per_row() == 1000
    fastafm.set_max_pairs_per_row(7)
    try:
        assert fastafm.max_pairs_per_row() == 7
    finally:
        fastafm.set_max_pairs_per_row(None)
    assert fastafm.max_pairs_per_row() == 1000
    for bad in (0, -1, 2.5, "x", True, "1e3"):
        with pytest.raises(ValueError, match="max_pairs_per_row must be an integer >= 1"):
            fastafm.set_max_pairs_per_row(bad)
    monkeypatch.setenv(limits.ENV, "lots")
    with pytest.raises(ValueError, match=f"{limits.ENV} must be an integer >= 1, got 'lots'"):
        fastafm.max_pairs_per_row()


def _libfm(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_the_cli_refuses_a_row_over_the_limit_in_one_line(tmp_path, capsys):
    train = _libfm(tmp_path / "train.libfm", [f"{i % 3} {i % 7}:1 {7 + i % 5}:1" for i in range(200)])
    bad = _libfm(tmp_path / "bad.libfm", ["1 0:1 1:1", "0 " + " ".join(f"{i}:1" for i in range(12))])
    model = str(tmp_path / "m.afm")
    small = ["--epochs", "1", "--embedding-dim", "2", "--attention-dim", "2", "--threads", "1", "--quiet"]
    assert main(["train", train, "--model", model, *small]) == 0
    capsys.readouterr()
    for argv, path, name in ((["predict", "--model", model, bad], bad, "X"),
                             (["eval", "--model", model, bad], bad, "X"),
                             (["train", bad, "--model", str(tmp_path / "n.afm"), *small], bad, "X"),
                             (["train", train, "--valid", bad, "--model", str(tmp_path / "v.afm"), *small], bad,
                              "eval_set X")):
        code = main([*argv, "--max-pairs-per-row", str(LIMIT)])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 3 and len(lines) == 1, err
        assert lines[0].startswith(f"fastafm: error: {path}: {name} row 1 has 12 non-zeros, 66 feature pairs, "
                                   f"more than max_pairs_per_row={LIMIT}"), err
    assert limits.max_pairs_per_row() == limits.DEFAULT_MAX_PAIRS_PER_ROW  # the flag lasts one command
    assert main(["predict", "--model", model, bad, "--max-pairs-per-row", "66", "--quiet"]) == 0


@pytest.mark.parametrize("line", ["1 " + "5:1 " * 300_000, "1 " + " ".join(f"{i}:1" for i in range(100_000))],
                         ids=["300k-repeated-ids", "100k-distinct-ids"])
def test_the_reported_rows_are_refused_at_once_by_the_default_limit(tmp_path, line):
    """The cases of the issue (4.5e10 and 5e9 pairs: minutes of work) through `fastafm predict` and the Python
    API, in a child with a hang guard; each ends with one line naming the row and the default limit."""
    train = _libfm(tmp_path / "train.libfm", [f"{i % 3} {i % 7}:1 {7 + i % 5}:1" for i in range(100)])
    data = _libfm(tmp_path / "long.libfm", ["0 1:1", line])
    model = str(tmp_path / "m.afm")
    assert main(["train", train, "--model", model, "--epochs", "1", "--embedding-dim", "2", "--attention-dim", "2",
                 "--threads", "1", "--quiet", "--n-features", "100000"]) == 0
    env = {k: v for k, v in os.environ.items() if k != limits.ENV}
    cli = subprocess.run([sys.executable, "-m", "fastafm", "predict", "--model", model, data], capture_output=True,
                         text=True, timeout=CHILD_TIMEOUT, env=env)
    assert cli.returncode == 3 and len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert f"{data}: X row 1 has" in cli.stderr and f"max_pairs_per_row={2**25}" in cli.stderr
    api = subprocess.run([sys.executable, "-c", "import sys, fastafm\nX, _ = fastafm.load_libfm(sys.argv[2], "
                          "n_features=100000)\ntry:\n    fastafm.load(sys.argv[1]).predict(X)\nexcept "
                          "fastafm.RowTooLongError as exc:\n    print(exc)\n", model, data],
                         capture_output=True, text=True, timeout=CHILD_TIMEOUT, env=env)
    assert api.returncode == 0 and api.stdout.startswith("X row 1 has"), api.stderr


# ----------------------------------------------------------------------------- predict in bounded blocks
@pytest.mark.parametrize("budget", [1, 7, 50, 10**9])
def test_row_blocks_cover_the_rows_in_order_within_the_budget(budget):
    from fastafm.data.limits import row_blocks

    rng = np.random.default_rng(budget)
    m = rng.integers(0, 12, size=40)
    indptr = np.concatenate([[0], np.cumsum(m)])
    blocks = row_blocks(indptr, budget)
    assert blocks[0][0] == 0 and blocks[-1][1] == 40
    assert all(a < b for a, b in blocks) and all(b == c for (_, b), (c, _) in zip(blocks, blocks[1:]))
    work = m * (m - 1) // 2 + m + 1
    for a, b in blocks:
        assert b - a == 1 or work[a:b].sum() <= budget
        if b < 40:
            assert work[a:b + 1].sum() > budget  # no block stops early
    assert row_blocks(np.zeros(1, np.int64), budget) == [(0, 0)]


def test_predict_in_blocks_equals_predict_in_one_call(monkeypatch):
    from fastafm.data import limits

    rng = np.random.default_rng(3)
    m = rng.integers(0, 30, size=300)
    X = sp.csr_matrix((rng.normal(size=m.sum()).astype(np.float32), rng.integers(0, 50, size=m.sum()),
                       np.concatenate([[0], np.cumsum(m)])), shape=(300, 50))
    y = rng.normal(size=300)
    for model in (fastafm.AFMRegressor(embedding_dim=8, attention_dim=4, n_epochs=2, random_state=0),
                  fastafm.FwFMClassifier(embedding_dim=8, n_epochs=2, random_state=0, fields=np.arange(50) % 5)):
        model.fit(X, y > 0 if hasattr(model, "predict_proba") else y)
        whole = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
        monkeypatch.setattr(limits, "PREDICT_BLOCK_WORK", 500)
        assert len(limits.row_blocks(np.concatenate([[0], np.cumsum(m)]))) > 10
        blocked = model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)
        monkeypatch.undo()
        np.testing.assert_array_equal(blocked, whole)  # rows are independent: bit for bit
