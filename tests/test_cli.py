"""The command line: train / predict / eval on libFM files, --help, and the exit codes scripts rely on."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastafm
from fastafm import metrics
from fastafm.cli import build_parser, main

SMALL = ["--epochs", "3", "--embedding-dim", "8", "--attention-dim", "8", "--threads", "1"]


def write_libfm(path, X, y):
    with open(path, "w") as fh:
        for r in range(X.shape[0]):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            feats = " ".join(f"{i}:{v:g}" for i, v in zip(X.indices[lo:hi], X.data[lo:hi]))
            fh.write(f"{y[r]:g} {feats}\n")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Regression and classification (-1/1 labels) train/valid files of planted data."""
    d = tmp_path_factory.mktemp("cli")
    files = {}
    for task, classification in (("reg", False), ("clf", True)):
        X, y, _ = fastafm.make_planted(n_rows=1500, n_fields=6, cardinality=8, planted_pairs=((0, 1), (2, 3)),
                                       classification=classification, random_state=0)
        if classification:
            y = np.where(y > 0, 1, -1)
        files[task] = (write_libfm(d / f"{task}.train", X[:1200], y[:1200]),
                       write_libfm(d / f"{task}.valid", X[1200:], y[1200:]))
    return files


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastafm: error: ") and "Traceback" not in err, err
    return lines[0]


def test_train_predict_eval_regression(data, tmp_path, capsys):
    train, valid = data["reg"]
    model_path = str(tmp_path / "m.afm")
    code, out, err = run(capsys, "train", train, "--valid", valid, "--model", model_path, *SMALL,
                         "--dropout", "0.1", "--learning-rate", "0.04", "--batch-size", "64", "--seed", "7",
                         "--early-stopping", "off", "--pretrain", "none")
    assert code == 0, err
    assert out.count("eval_rmse=") == 3 and f"model written to {model_path}" in out  # verbose by default
    model = fastafm.load(model_path)
    assert isinstance(model, fastafm.AFMRegressor)
    params = model.get_params()
    assert (params["embedding_dim"], params["dropout"], params["learning_rate"], params["batch_size"],
            params["n_epochs"], params["random_state"]) == (8, 0.1, 0.04, 64, 3, 7)
    X_val, y_val = fastafm.load_libfm(valid, n_features=model.n_features_in_)

    out_path = tmp_path / "pred.txt"
    code, out, err = run(capsys, "predict", "--model", model_path, valid, "--out", str(out_path))
    assert code == 0 and out == "" and "300 predictions written" in err
    pred = np.loadtxt(out_path)
    assert pred.shape == (300,) and np.allclose(pred, model.predict(X_val), rtol=1e-6, atol=1e-7)
    code, out, err = run(capsys, "predict", "--model", model_path, valid, "--quiet")
    assert code == 0 and err == "" and np.allclose(np.array(out.split(), float), pred)

    code, out, _ = run(capsys, "eval", "--model", model_path, valid)
    assert code == 0
    got = dict(line.split(": ") for line in out.strip().splitlines())
    assert set(got) == {"rows", "rmse", "mae"} and got["rows"] == "300"
    assert float(got["rmse"]) == pytest.approx(model.history_[-1]["eval_rmse"], abs=1e-6)
    assert float(got["mae"]) == pytest.approx(metrics.mae(y_val, pred), abs=1e-6)


def test_train_predict_eval_classification(data, tmp_path, capsys):
    train, valid = data["clf"]
    model_path = str(tmp_path / "c.afm")
    code, out, err = run(capsys, "train", train, "--valid", valid, "--model", model_path, "--task",
                         "classification", "--quiet", *SMALL)
    assert code == 0 and out == "", err
    model = fastafm.load(model_path)
    assert isinstance(model, fastafm.AFMClassifier) and model.classes_.tolist() == [-1, 1]
    code, out, _ = run(capsys, "predict", "--model", model_path, valid)
    proba = np.array(out.split(), float)
    X_val, y_val = fastafm.load_libfm(valid, n_features=model.n_features_in_)
    assert np.allclose(proba, model.predict_proba(X_val)[:, 1], rtol=1e-6) and np.all((proba > 0) & (proba < 1))
    code, out, _ = run(capsys, "eval", "--model", model_path, valid, "--json")
    result = json.loads(out)
    assert code == 0 and set(result) == {"rows", "logloss", "auc", "accuracy", "ne"}
    assert result["auc"] == pytest.approx(model.history_[-1]["eval_auc"], abs=1e-6)
    assert result["accuracy"] == pytest.approx(np.mean(model.predict(X_val) == y_val))


def test_same_seed_same_model(data, tmp_path, capsys):
    train, valid = data["reg"]
    preds = []
    for name in ("a", "b"):
        assert main(["train", train, "--model", str(tmp_path / name), "--quiet", *SMALL]) == 0
        assert main(["predict", "--model", str(tmp_path / name), valid, "--out", str(tmp_path / f"{name}.txt"),
                     "--quiet"]) == 0
        preds.append((tmp_path / f"{name}.txt").read_text())
    assert preds[0] == preds[1]


def test_valid_file_with_larger_ids_widens_the_model(data, tmp_path, capsys):
    train, _ = data["reg"]
    valid = tmp_path / "wide.valid"
    valid.write_text("0.5 0:1 60:1\n-0.5 3:1 9:1\n")
    code, _, err = run(capsys, "train", train, "--valid", str(valid), "--model", str(tmp_path / "m"), *SMALL)
    assert code == 0, err
    assert fastafm.load(str(tmp_path / "m")).n_features_in_ == 61
    code, _, err = run(capsys, "train", train, "--model", str(tmp_path / "n"), "--n-features", "100", "--quiet",
                       *SMALL)
    assert code == 0 and fastafm.load(str(tmp_path / "n")).n_features_in_ == 100


def test_help_documents_every_option_and_the_exit_codes(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "exit codes:" in out
    for command in ("train", "predict", "eval", "demo"):
        assert command in out
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for command, sub in subparsers.items():
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "exit codes:" in out
        for action in sub._actions:
            assert action.help, f"{command} {action.option_strings or action.dest} has no help"
            for option in action.option_strings:
                assert option in out


@pytest.mark.parametrize("argv, message", [
    (["nonsense"], "invalid choice"),
    (["train", "x.libfm"], "--model"),
    (["train", "x.libfm", "--model", "m", "--dropout", "1.5"], "--dropout: must be in [0.0, 1.0)"),
    (["train", "x.libfm", "--model", "m", "--epochs", "two"], "invalid integer"),
    (["train", "x.libfm", "--model", "m", "--task", "ranking"], "invalid choice"),
    (["train", "x.libfm", "--model", "m", "--learning-rate", "0"], "--learning-rate"),
    (["predict", "x.libfm"], "--model"),
    (["eval", "--model", "m"], "DATA"),
])
def test_usage_errors_exit_2(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_bad_data_exits_3(data, tmp_path, capsys):
    train, valid = data["reg"]
    model_path = str(tmp_path / "m.afm")
    assert main(["train", train, "--model", model_path, "--quiet", *SMALL]) == 0

    malformed = tmp_path / "bad.libfm"
    malformed.write_text("1 3:1\n1 4:x\n")
    wide = tmp_path / "wide.libfm"
    wide.write_text("1 3:1 500:1\n")
    empty = tmp_path / "empty.libfm"
    empty.write_text("# nothing\n")
    cases = [
        (["train", str(tmp_path / "missing.libfm"), "--model", model_path], "No such file"),
        (["train", str(malformed), "--model", model_path], f"{malformed}:2:"),
        (["train", str(empty), "--model", model_path], "no rows"),
        (["train", train, "--model", model_path, "--task", "classification"], "exactly two labels"),
        (["predict", "--model", model_path, str(malformed)], f"{malformed}:2:"),
        (["predict", "--model", model_path, str(wide)], "--n-features"),
        (["predict", "--model", model_path, valid, "--out", str(tmp_path / "no" / "p.txt")], "no such directory"),
        (["eval", "--model", model_path, str(tmp_path)], "cannot read data file"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, *(["--quiet"] if argv[0] != "eval" else []))
        assert code == 3, (argv, err)
        assert message in one_error_line(err), (argv, err)
    # a classifier evaluated on labels it was not trained on
    clf_train, _ = data["clf"]
    assert main(["train", clf_train, "--model", str(tmp_path / "c"), "--task", "classification", "--quiet",
                 *SMALL]) == 0
    code, _, err = run(capsys, "eval", "--model", str(tmp_path / "c"), valid)
    assert code == 3 and "not among the model's labels -1, 1" in one_error_line(err)


def test_model_file_problems_exit_4(data, tmp_path, capsys):
    train, valid = data["reg"]
    junk = tmp_path / "junk.afm"
    junk.write_bytes(b"not a model")
    npz = tmp_path / "other.npz"
    np.savez(npz, a=np.zeros(3))
    cases = [
        (["predict", "--model", str(tmp_path / "none.afm"), valid], "no such file"),
        (["eval", "--model", str(junk), valid], "not a fastafm model"),
        (["eval", "--model", str(npz), valid], "not a fastafm model"),
        (["train", train, "--model", str(tmp_path / "no" / "m.afm"), *SMALL], "no such directory"),
        (["train", train, "--model", str(tmp_path), *SMALL], "is a directory"),
    ]
    for argv, message in cases:
        code, out, err = run(capsys, *argv)
        assert code == 4, (argv, err)
        assert message in one_error_line(err), (argv, err)
        assert "epoch" not in out  # model paths are checked before any training


def test_diverging_training_exits_1(data, tmp_path, capsys):
    train, _ = data["reg"]
    code, _, err = run(capsys, "train", train, "--model", str(tmp_path / "m"), "--learning-rate", "1e30",
                       "--epochs", "1", "--quiet")
    assert code == 1 and "diverged" in one_error_line(err)
    assert not (tmp_path / "m").exists()


def console_script():
    exe = Path(sys.executable).parent / ("fastafm.exe" if os.name == "nt" else "fastafm")
    return str(exe) if exe.exists() else shutil.which("fastafm")


def test_console_script_exit_codes(data, tmp_path):
    script = console_script()
    assert script, "the fastafm console script is not installed"
    train, valid = data["reg"]
    model_path = str(tmp_path / "m.afm")
    proc = subprocess.run([script, "train", train, "--model", model_path, *SMALL], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "epoch   3" in proc.stdout and os.path.getsize(model_path) > 0
    cases = (([], 2), (["eval", "--model", model_path, str(tmp_path / "x")], 3), (["eval", "--model", train, valid], 4))
    procs = [subprocess.Popen([script, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, _ in cases]  # started together: each spends its time importing
    for (argv, code), proc in zip(cases, procs):
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == code, (argv, stderr)
        assert "Traceback" not in stderr and "fastafm" in stderr


def test_optimizer_adam_and_learning_rate_auto(data, tmp_path, capsys):
    """`--optimizer adam` trains lazy Adam; `--learning-rate auto` (also the default) is the optimizer's own
    value; anything else that is not a positive number is a usage error."""
    from fastafm.models.hyperparams import AUTO_LEARNING_RATES

    train, valid = data["clf"]
    path = str(tmp_path / "adam.afm")
    code, out, err = run(capsys, "train", train, "--valid", valid, "--model", path, *SMALL, "--optimizer", "adam",
                         "--learning-rate", "auto")
    assert code == 0, err
    model = fastafm.load(path)
    assert model.optimizer == "adam" and model.learning_rate == "auto"
    assert model.learning_rate_ == AUTO_LEARNING_RATES["afm"]["adam"]
    assert sorted(model.optimizer_state()) == ["m", "step", "v"]
    code, out, err = run(capsys, "train", train, "--model", path, "--learning-rate", "fast")
    assert code == 2 and "argument --learning-rate: invalid number: 'fast'" in err


def test_every_none_the_help_offers_parses(data, tmp_path, capsys):
    """A flag whose help offers "none" takes it (`--early-stopping-metric none` used to exit 2), and trains."""
    from fastafm.models.hyperparams import TABLE

    offering = [hp for hp in TABLE if hp.cli and "none" in (hp.cli_help or hp.help)]
    assert any(hp.name == "early_stopping_metric" for hp in offering)
    for hp in offering:
        args = build_parser().parse_args(["train", "x.libfm", "--model", "m", hp.cli, "none"])
        assert getattr(args, hp.name) is None, hp.name
    train, _ = data["reg"]
    code, _, err = run(capsys, "train", train, "--model", str(tmp_path / "m"), "--quiet", *SMALL,
                       "--early-stopping-metric", "none", "--early-stopping", "on")
    assert code == 0, err
    assert fastafm.load(str(tmp_path / "m")).early_stopping_metric is None


def test_precision_bf16_trains_or_says_which_cpu_feature_is_missing(data, tmp_path, capsys, monkeypatch):
    """`--precision bf16` trains the bf16 mode where the CPU has AVX512_BF16 (the model file keeps it); where it
    lacks it (the feature query mocked) it is a usage error before any data is read, one line naming the
    feature; other values are usage errors too."""
    from fastafm import _core

    train, _ = data["reg"]
    if _core.bf16_supported():
        path = str(tmp_path / "bf16.afm")
        code, _, err = run(capsys, "train", train, "--model", path, "--quiet", *SMALL, "--precision", "bf16")
        assert code == 0, err
        assert fastafm.load(path).precision == "bf16"
    monkeypatch.setattr(_core, "bf16_supported", lambda: False)
    code, _, err = run(capsys, "train", train, "--model", str(tmp_path / "no.afm"), "--quiet", *SMALL,
                       "--precision", "bf16")
    assert code == 2 and "AVX512_BF16" in one_error_line(err)
    code, _, err = run(capsys, "train", train, "--model", str(tmp_path / "x.afm"), "--precision", "fp16")
    assert code == 2 and "--precision" in err
