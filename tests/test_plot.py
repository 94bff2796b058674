"""fastafm.plot: every figure is rendered to PNG (Agg backend) and checked to be a real, non-trivial image."""
from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

import fastafm
from fastafm import plot
from fastafm.interpret import field_pair_attention

matplotlib = pytest.importorskip("matplotlib")  # in the test extra, so this never skips in CI
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def check_png(path, min_width=300, min_height=200):
    """A PNG of at least the given size whose pixels are not all one colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= min_width and height >= min_height, (width, height)
    assert len(data) > 10_000, len(data)
    pixels = plt.imread(str(path))
    assert pixels.reshape(-1, pixels.shape[-1]).std(axis=0).max() > 0.05  # something was drawn
    return width, height


@pytest.fixture(scope="module")
def fitted():
    X, y, fields = fastafm.make_planted(n_rows=2000, n_fields=5, cardinality=6, planted_pairs=((0, 1), (2, 3)),
                                       random_state=0)
    model = fastafm.AFMRegressor(embedding_dim=8, attention_dim=8, n_epochs=4, n_threads=1, random_state=0)
    model.fit(X[:1600], y[:1600], eval_set=(X[1600:], y[1600:]))
    return model, X[1600:], fields


def test_history_plot(fitted, tmp_path):
    model, _, _ = fitted
    ax = plot.history(model)
    assert ax.get_xlabel() == "epoch" and "training loss" in ax.get_ylabel()
    assert ax.metrics_axis.get_ylabel() == "eval RMSE, eval MAE"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["training loss", "eval RMSE", "eval MAE"]
    assert np.allclose(ax.get_lines()[0].get_ydata(), [r["train_loss"] for r in model.history_])
    assert np.allclose(ax.metrics_axis.get_lines()[0].get_ydata(), [r["eval_rmse"] for r in model.history_])
    path = tmp_path / "history.png"
    ax.figure.savefig(path, dpi=100)
    check_png(path)


def test_history_of_a_classifier_without_eval_set_on_given_axes(tmp_path):
    X, y, _ = fastafm.make_planted(n_rows=500, n_fields=4, cardinality=5, classification=True, random_state=1)
    model = fastafm.AFMClassifier(embedding_dim=4, attention_dim=4, n_epochs=3, n_threads=1, random_state=0)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = plot.history(model.fit(X, y), ax=axes[1], title="classifier")
    assert ax is axes[1] and ax.metrics_axis is None and ax.get_title() == "classifier"
    path = tmp_path / "history_clf.png"
    fig.savefig(path, dpi=80)
    check_png(path)
    with_eval = plot.history([{"epoch": 1, "train_loss": 0.6, "eval_logloss": 0.5, "eval_auc": 0.7},
                              {"epoch": 2, "train_loss": 0.5, "eval_logloss": 0.45, "eval_auc": 0.8}])
    assert with_eval.metrics_axis.get_ylabel() == "eval log loss, eval AUC"


def test_attention_heatmap_with_names_and_blank_nan_cells(fitted, tmp_path):
    model, X_test, fields = fitted
    matrix = field_pair_attention(model, X_test, fields)
    assert np.isnan(np.diag(matrix)).all()  # one-hot fields never pair with themselves
    names = ["user", "item", "hour", "weekday", "city"]
    ax = plot.attention_heatmap(matrix, field_names=names)
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 20 and f"{matrix[0, 1]:.3f}" in texts  # 25 cells less the 5 blank diagonal ones
    image = ax.get_images()[0]
    assert image.get_array().mask.diagonal().all()
    assert ax.colorbar.ax.get_ylabel() == "mean attention"
    path = tmp_path / "attention.png"
    ax.figure.savefig(path, dpi=100)
    check_png(path)


def test_attention_heatmap_without_annotations_or_names(tmp_path):
    matrix = np.full((3, 3), np.nan)
    matrix[0, 1] = matrix[1, 0] = 0.7
    matrix[1, 2] = matrix[2, 1] = 0.3
    ax = plot.attention_heatmap(matrix, annotate=False)
    assert len(ax.texts) == 0 and [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    path = tmp_path / "attention_small.png"
    ax.figure.savefig(path, dpi=100)
    check_png(path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="square"):
        plot.attention_heatmap(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 names"):
        plot.attention_heatmap(np.zeros((3, 3)), field_names=["a", "b"])
    with pytest.raises(ValueError, match="no training history"):
        plot.history([])
    with pytest.raises(TypeError, match="fitted fastafm model"):
        plot.history(object())


def test_clear_error_without_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import matplotlib.pyplot` raise ImportError
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plot.attention_heatmap(np.zeros((2, 2)))


def test_waterfall_and_calibration(tmp_path):
    X, y, _, _ = fastafm.make_clicks(3000, random_state=0)
    model = fastafm.AFMClassifier(embedding_dim=8, attention_dim=8, n_epochs=2, random_state=0).fit(X, y)
    e = model.explain(X[:5], feature_names=[f"f{i}" for i in range(X.shape[1])])
    ax = plot.waterfall(e, 2, max_features=4)
    assert len(ax.get_yticklabels()) == 5 and "other features" in ax.get_yticklabels()[0].get_text()
    ax.figure.savefig(tmp_path / "w.png")
    check_png(tmp_path / "w.png")
    ax = plot.calibration(y, model.predict_proba(X)[:, 1], label="AFM")
    plot.calibration(y, np.full(y.shape[0], y.mean()), ax=ax, label="base rate")
    ax.figure.savefig(tmp_path / "c.png")
    check_png(tmp_path / "c.png")
    assert "ECE" in ax.get_legend().get_texts()[1].get_text()
