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
import platform
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy_runs import CONFIGS, OUT  # noqa: E402

REPORT = HERE / "ACCURACY.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=str(OUT))
    ap.add_argument("--out", default=str(REPORT))
    ap.add_argument("--base-rates", default=str(Path(OUT).with_name("base_rates.json")),
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
    for name in runs:
        lines += table(name, runs[name], base.get(name))
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
