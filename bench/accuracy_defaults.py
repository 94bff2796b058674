"""bench/ACCURACY.md from the recorded accuracy runs (bench/accuracy_runs.py): one table per tuning set.

    python bench/accuracy_runs.py --frappe ../shared/data/frappe --ml100k DIR --config ...   # measure
    python bench/accuracy_defaults.py                                                          # write the report

For every set: each configuration's test metric (AUC and log loss, or RMSE; the mean over the seeds run, with
the spread when there are several), best epoch, epochs run and seconds; the base-rate log loss of classification
sets; the best fastafm configuration and the best PyTorch one; and the verdicts of issue 12's targets.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy_runs import CONFIGS, OUT  # noqa: E402
from fma_peak import cpu_model  # noqa: E402

REPORT = HERE / "ACCURACY.md"
RUNS = HERE / "results" / "accuracy" / "runs.jsonl"  # the recorded runs this report is written from


def load(path: Path) -> dict:
    """set -> config -> list of results (one per seed)."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[r["set"]][r["config"]].append(r)
    return out


def summary(results: list, key: str):
    vals = np.array([r[key] for r in results], dtype=float)
    return vals.mean(), (vals.max() - vals.min()) / 2 if len(vals) > 1 else 0.0


def fmt(results: list, key: str) -> str:
    mean, half = summary(results, key)
    return f"{mean:.4f}" + (f" ± {half:.4f}" if len(results) > 1 else "")


def primary(results: list) -> float:
    """The loss the defaults are judged by: log loss, or RMSE (lower is better)."""
    key = "logloss" if "logloss" in results[0] else "rmse"
    return summary(results, key)[0]


def table(name: str, configs: dict, base_rate: float | None) -> list:
    lines = [f"### {name}", ""]
    clf = "logloss" in next(iter(configs.values()))[0]
    head = "| configuration | AUC | log loss |" if clf else "| configuration | RMSE |"
    lines += [head + " best epoch | epochs run | seconds | seeds |",
              "|---|" + ("---:|---:|" if clf else "---:|") + "---:|---:|---:|---:|"]
    for cfg in sorted(configs, key=lambda c: primary(configs[c])):
        res = configs[cfg]
        metrics = f"{fmt(res, 'auc')} | {fmt(res, 'logloss')}" if clf else fmt(res, "rmse")
        lines.append(f"| `{cfg}` | {metrics} | {summary(res, 'best_epoch')[0]:.1f} | "
                     f"{summary(res, 'epochs_run')[0]:.1f} | {summary(res, 'seconds')[0]:.1f} | {len(res)} |")
    if base_rate is not None:
        lines.append(f"\nBase-rate log loss (predicting the training click rate): {base_rate:.4f}.")
    return lines + [""]


def verdicts(name: str, configs: dict, base_rate: float | None) -> list:
    """Issue 12's targets for one set, from the mean over seeds of each configuration."""
    if "afm-defaults" not in configs:
        return ["No run of the current defaults (`afm-defaults`) on this set yet.", ""]
    clf = "logloss" in configs["afm-defaults"][0]
    key = "logloss" if clf else "rmse"
    mean = {c: summary(r, key)[0] for c, r in configs.items()}
    auc = {c: summary(r, "auc")[0] for c, r in configs.items()} if clf else {}
    d = mean["afm-defaults"]
    lines = []

    def say(ok: bool, text: str):
        lines.append(f"* {'met' if ok else '**not met**'}: {text}")

    if clf and base_rate is not None:
        say(d < base_rate, f"log loss {d:.4f} below the base rate {base_rate:.4f}")
    torch = [c for c in configs if c.startswith("torch-")]
    if torch:
        best = min(torch, key=mean.get)
        if clf:
            say(d <= mean[best] and auc["afm-defaults"] >= auc[best],
                f"at least as good as the best PyTorch AFM (`{best}`): AUC {auc['afm-defaults']:.4f} vs "
                f"{auc[best]:.4f}, log loss {d:.4f} vs {mean[best]:.4f}")
        else:
            say(d <= mean[best], f"RMSE {d:.4f} vs the best PyTorch AFM (`{best}`) {mean[best]:.4f}")
    if "fm-defaults" in configs:
        f = mean["fm-defaults"]
        if clf:
            say(d <= f and auc["afm-defaults"] >= auc["fm-defaults"],
                f"AFM >= FM: AUC {auc['afm-defaults']:.4f} vs {auc['fm-defaults']:.4f}, log loss {d:.4f} vs {f:.4f}")
        else:
            gain = (f - d) / f
            if name == "frappe-reg":  # the paper's comparison: issue 12 asks for 8%
                say(gain >= 0.08, f"AFM RMSE {d:.4f} at least 8% below FM's {f:.4f}: {gain:.1%}")
            else:
                say(d <= f, f"AFM RMSE {d:.4f} vs FM {f:.4f} ({gain:.1%} lower)")
    afm = [c for c in configs if c.startswith("afm-")]
    best = min(afm, key=mean.get)
    say(d <= 1.02 * mean[best], f"loss within 2% of the best AFM setting found (`{best}`, {mean[best]:.4f})")
    if clf:
        best_auc = max(afm, key=auc.get)
        say(auc["afm-defaults"] >= auc[best_auc] - 0.005,
            f"AUC within 0.005 of the best AFM setting found (`{best_auc}`, {auc[best_auc]:.4f})")
    return lines + [""]


OPTIMIZER_CONFIGS = {"afm": ("afm-defaults", "afm-sgd-defaults", "afm-adam-defaults"),
                     "fm": ("fm-defaults", "fm-sgd-defaults", "fm-adam-defaults")}


def optimizer_table(runs: dict) -> list:
    """Each optimizer at its default learning rate (adagrad is the default optimizer): the test loss per set."""
    lines = ["## Optimizers at their default learning rates", "",
             "`learning_rate=\"auto\"` (fastafm.models.hyperparams.AUTO_LEARNING_RATES); the mean over the seeds run "
             "(their number in brackets); log loss for classification, RMSE for regression, lower is better.", "",
             "| set | model | adagrad | sgd | adam |", "|---|---|---:|---:|---:|"]
    for name, configs in runs.items():
        for family, names in OPTIMIZER_CONFIGS.items():
            if not any(c in configs for c in names[1:]):
                continue
            cells = [f"{primary(configs[c]):.4f} ({len(configs[c])})" if c in configs else "" for c in names]
            lines.append(f"| {name} | {family.upper()} | " + " | ".join(cells) + " |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=str(RUNS))
    ap.add_argument("--out", default=str(REPORT))
    ap.add_argument("--base-rates", default=str(RUNS.with_name("base_rates.json")),
                    help="JSON {set: base-rate log loss}, written by accuracy_runs.py")
    args = ap.parse_args(argv)
    runs = load(Path(args.runs))
    base = json.loads(Path(args.base_rates).read_text()) if Path(args.base_rates).exists() else {}
    lines = ["# Accuracy of the defaults on the tuning data (issue 12)", "",
             f"Written by `python bench/accuracy_defaults.py` from `{Path(args.runs).name}`; CPU: {cpu_model()}.",
             "Configurations (fastafm: `afm`/`fm` estimator keyword arguments besides random_state and "
             "n_threads; `torch`: bench/torch_afm_fit.py):", ""]
    seen = {}
    for configs in runs.values():
        for name, res in configs.items():
            seen.setdefault(name, (res[0].get("family", CONFIGS.get(name, ("?",))[0]),
                                   res[0].get("params", CONFIGS.get(name, (None, {}))[1])))
    for name, (family, params) in seen.items():
        lines.append(f"* `{name}`: {family} {json.dumps(params) if params else '(defaults)'}")
    lines.append("")
    lines += optimizer_table(runs)
    for name in runs:
        lines += table(name, runs[name], base.get(name))
        lines += verdicts(name, runs[name], base.get(name))
    from fwfm_accuracy import section  # issue 22's FwFM section, from its own recorded runs

    lines += [""] + section()
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
