"""Reproduce the AFM paper's Frappe comparison (Xiao et al., IJCAI 2017, Table 2): FM, then AFM warm-started
from that FM, trained on frappe.validation.libfm with early stopping on a fixed, seeded 10% of it, and
evaluated on frappe.test.libfm (RMSE with predictions clipped to [-1, 1], as the paper's code).

    python bench/reproduce_frappe.py [DATA_DIR] [--seeds 0 1 2] [--threads 1] [--embedding-dim 256]
                                     [--attention-dim 64] [--max-epochs 100] [--out bench/FRAPPE.md]

DATA_DIR defaults to ../shared/data/frappe relative to the repository root (the files are never copied into the
repository: see that directory's README for the licence). Prints a markdown report and writes it to --out, with
the field-pair attention table, and the heatmap as a PNG next to it when fastafm.plot.attention_heatmap exists.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fastafm
from fastafm import metrics

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "frappe"
N_FEATURES = 5382  # ids 0..5381 over the whole data set (validation and test together)
HOLDOUT_SEED = 2017  # the 10% early-stopping holdout is the same for every run and model seed

# Field id ranges from ../shared/data/README.md, inclusive there, half-open here.
FIELDS = [("user", 0, 956), ("item", 957, 5038), ("daytime", 5039, 5045), ("weekday", 5046, 5052),
          ("isweekend", 5053, 5054), ("homework", 5055, 5057), ("cost", 5058, 5059), ("weather", 5060, 5068),
          ("country", 5069, 5148), ("city", 5149, 5381)]
FIELD_NAMES = [name for name, _, _ in FIELDS]
FIELD_RANGES = [(lo, hi + 1) for _, lo, hi in FIELDS]

PAPER = [("LibFM", 0.3385), ("HOFM", 0.3331), ("Wide&Deep", 0.3246), ("DeepCross", 0.3548), ("AFM", 0.3102)]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", nargs="?", default=str(DEFAULT_DATA),
                    help="directory holding frappe.validation.libfm and frappe.test.libfm (default: %(default)s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="model seeds (default: 0 1 2)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenMP threads, 0 = all cores (default: 1; on the shared 2-core development machine two "
                         "threads were slower than one whenever the other core was busy)")
    ap.add_argument("--embedding-dim", type=int, default=256, help="k for FM and AFM (default: 256, the paper's)")
    ap.add_argument("--attention-dim", type=int, default=64, help="t of AFM's attention network (default: 64)")
    ap.add_argument("--max-epochs", type=int, default=150, help="epoch limit of each fit (default: 150)")
    ap.add_argument("--n-iter-no-change", type=int, default=5,
                    help="early stopping: epochs without holdout-RMSE improvement (default: 5)")
    ap.add_argument("--fm-lr", type=float, default=0.05, help="FM learning rate (default: 0.05)")
    ap.add_argument("--fm-dropout", type=float, default=0.5, help="FM dropout on the pair-wise layer (default: 0.5)")
    ap.add_argument("--l2fm-l2", type=float, default=3e-4,
                    help="L2 of the LibFM-like FM baseline (no dropout, as Table 2's LibFM; default: 3e-4)")
    ap.add_argument("--l2fm-lr", type=float, default=0.05, help="learning rate of the LibFM-like FM (default: 0.05)")
    ap.add_argument("--no-l2fm", action="store_true", help="skip the LibFM-like FM baseline")
    ap.add_argument("--afm-lr", type=float, default=0.05, help="AFM learning rate (default: 0.05)")
    ap.add_argument("--afm-dropout", type=float, default=0.5, help="AFM dropout (default: 0.5)")
    ap.add_argument("--attention-l2", type=float, default=2.0, help="AFM's λ on W (default: 2)")
    ap.add_argument("--out", default=str(REPO / "bench" / "FRAPPE.md"),
                    help="markdown report to write (default: bench/FRAPPE.md); '' writes nothing")
    ap.add_argument("--frequency-l2", type=float, default=1.0,
                    help="frequency_l2 of every model (default: 1.0, the estimators'; bench/FRAPPE.md's record of "
                         "2026-12-01 predates it: 0 is what it ran)")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return ap.parse_args(argv)


def load(data_dir: Path):
    X, y = fastafm.load_libfm(data_dir / "frappe.validation.libfm", n_features=N_FEATURES)
    X_test, y_test = fastafm.load_libfm(data_dir / "frappe.test.libfm", n_features=N_FEATURES)
    perm = np.random.default_rng(HOLDOUT_SEED).permutation(X.shape[0])
    n_hold = X.shape[0] // 10
    hold, train = perm[:n_hold], perm[n_hold:]
    return (X[train], y[train]), (X[hold], y[hold]), (X_test, y_test)


def fit_one(model, train, holdout, test, init=None):
    start = time.perf_counter()
    model.fit(*train, eval_set=holdout, init=init)
    seconds = time.perf_counter() - start
    rmse = metrics.rmse(test[1], model.predict(test[0]), clip=(-1.0, 1.0))
    return {"model": model, "rmse": rmse, "seconds": seconds, "best_epoch": model.best_epoch_,
            "epochs_run": len(model.history_), "holdout_rmse": model.best_score_}


def markdown_matrix(matrix, names):
    head = "| | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    rows = []
    for i, name in enumerate(names):
        cells = ["" if j < i or not np.isfinite(matrix[i, j]) else f"{matrix[i, j]:.3f}" for j in range(len(names))]
        rows.append(f"| **{name}** | " + " | ".join(cells) + " |")
    return head + "\n".join(rows)


def save_heatmap(matrix, path: Path):
    """Uses the ecosystem's fastafm.plot.attention_heatmap when it exists; returns the path or a reason."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from fastafm.plot import attention_heatmap
    except (ImportError, AttributeError) as exc:
        return None, f"heatmap not drawn ({type(exc).__name__}: {exc})"
    import matplotlib.pyplot as plt

    result = attention_heatmap(matrix, field_names=FIELD_NAMES, annotate=True)
    fig = getattr(result, "figure", None) or getattr(result, "get_figure", lambda: result)()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path, None


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    data_dir = Path(args.data_dir)
    train, holdout, test = load(data_dir)
    verbose = 0 if args.quiet else 1
    common = dict(embedding_dim=args.embedding_dim, batch_size=128, optimizer="adagrad", n_epochs=args.max_epochs,
                  n_iter_no_change=args.n_iter_no_change, n_threads=args.threads, verbose=verbose,
                  frequency_l2=args.frequency_l2)
    fm_settings = dict(learning_rate=args.fm_lr, dropout=args.fm_dropout)
    l2fm_settings = dict(learning_rate=args.l2fm_lr, dropout=0.0, l2=args.l2fm_l2)
    afm_settings = dict(attention_dim=args.attention_dim, learning_rate=args.afm_lr, dropout=args.afm_dropout,
                        attention_l2=args.attention_l2)
    k = args.embedding_dim
    methods = {  # name -> settings shown in the table
        "FM (L2, no dropout: LibFM-like)": f"k={k}, lr={args.l2fm_lr}, l2={args.l2fm_l2:g}, dropout=0",
        "FM (dropout)": f"k={k}, lr={args.fm_lr}, dropout={args.fm_dropout}",
        "AFM": (f"k={k}, t={args.attention_dim}, lr={args.afm_lr}, dropout={args.afm_dropout}, "
                f"λ={args.attention_l2:g}, warm start from FM (dropout)"),
    }
    if args.no_l2fm:
        del methods["FM (L2, no dropout: LibFM-like)"]
    print(f"Frappe: {train[0].shape[0]} training rows, {holdout[0].shape[0]} holdout rows (seed {HOLDOUT_SEED}), "
          f"{test[0].shape[0]} test rows; seeds {args.seeds}; {fastafm._core.resolve_threads(args.threads)} "
          f"threads, ISA {fastafm._core.active_isa()}", flush=True)
    runs = {name: [] for name in methods}  # name -> one result per seed

    def report_fit(name, seed, res):
        print(f"{name}, seed {seed}: best epoch {res['best_epoch']} of {res['epochs_run']}, "
              f"test RMSE {res['rmse']:.4f}, {res['seconds']:.0f} s", flush=True)

    for seed in args.seeds:
        if "FM (L2, no dropout: LibFM-like)" in methods:
            print(f"\n== seed {seed}: FM with L2, no dropout (LibFM-like)", flush=True)
            res = fit_one(fastafm.FMRegressor(random_state=seed, **common, **l2fm_settings), train, holdout, test)
            runs["FM (L2, no dropout: LibFM-like)"].append(res)
            report_fit("FM (L2)", seed, res)
        print(f"\n== seed {seed}: FM with dropout", flush=True)
        fm = fit_one(fastafm.FMRegressor(random_state=seed, **common, **fm_settings), train, holdout, test)
        runs["FM (dropout)"].append(fm)
        report_fit("FM (dropout)", seed, fm)
        print(f"\n== seed {seed}: AFM warm-started from that FM", flush=True)
        afm = fit_one(fastafm.AFMRegressor(random_state=seed, **common, **afm_settings), train, holdout, test,
                      init=fm["model"])
        runs["AFM"].append(afm)
        report_fit("AFM", seed, afm)

    # ------------------------------------------------------------------ report
    lines = ["| method | settings | seed | best epoch (run) | test RMSE | seconds |", "|---|---|---:|---:|---:|---:|"]
    for i, seed in enumerate(args.seeds):
        for name, desc in methods.items():
            r = runs[name][i]
            lines.append(f"| {name} | {desc} | {seed} | {r['best_epoch']} ({r['epochs_run']}) | {r['rmse']:.4f} | "
                         f"{r['seconds']:.0f} |")
    table = "\n".join(lines)
    rmse = {name: np.array([r["rmse"] for r in rs]) for name, rs in runs.items()}

    def spread(a):
        sd = a.std(ddof=1) if a.size > 1 else 0.0
        return f"{a.mean():.4f} ± {sd:.4f} (min {a.min():.4f}, max {a.max():.4f})"

    summary_lines = ["| method | test RMSE, mean ± sd over seeds | AFM's gain over it (per seed) |", "|---|---|---|"]
    for name in methods:
        if name == "AFM":
            summary_lines.append(f"| AFM | {spread(rmse[name])} | |")
            continue
        gains = 100.0 * (1.0 - rmse["AFM"] / rmse[name])
        mean_gain = 100.0 * (1.0 - rmse["AFM"].mean() / rmse[name].mean())
        summary_lines.append(f"| {name} | {spread(rmse[name])} | {mean_gain:.1f}% "
                             f"({', '.join(f'{g:.1f}%' for g in gains)}) |")
    summary = "\n".join(summary_lines)
    verdicts = []
    for name in methods:
        if name != "AFM":
            gain = 100 * (1 - rmse["AFM"].mean() / rmse[name].mean())
            verdicts.append(f"{gain:.1f}% over {name}: {'met' if gain >= 8.0 else 'not met'}")
    target = ("Target of issue 4, AFM's mean test RMSE at least 8% below FM's (the paper: 8.4% over LibFM): "
              + "; ".join(verdicts) + ". What was tuned, and why the gain is smaller here, is in docs/accuracy.md.")
    paper = "\n".join(["| method (paper, Table 2, full training split) | test RMSE |", "|---|---:|"]
                      + [f"| {name} | {value:.4f} |" for name, value in PAPER]
                      + [f"| AFM's gain over LibFM | {100 * (1 - 0.3102 / 0.3385):.1f}% |"])

    afm_model = runs["AFM"][0]["model"]
    matrix = fastafm.field_pair_attention(afm_model, test[0], FIELD_RANGES)
    top = fastafm.interpret.top_field_pairs(matrix, n=8)
    top_lines = "\n".join(f"{i + 1}. {FIELD_NAMES[a]} × {FIELD_NAMES[b]}: {w:.4f}" for i, (a, b, w) in enumerate(top))
    total = time.perf_counter() - t_start

    out_path = Path(args.out) if args.out else None
    heat_note = ""
    if out_path is not None:
        png, why = save_heatmap(matrix, out_path.with_name(out_path.stem + "_attention.png"))
        heat_note = f"![field-pair attention]({png.name})" if png else why
    command = "python bench/reproduce_frappe.py " + " ".join(sys.argv[1:] if argv is None else argv)
    measured = time.strftime("%Y-%m-%d", time.gmtime())
    report = f"""# Frappe: FM vs AFM (reproducing Xiao et al., IJCAI 2017, Table 2)

> **Dated record.** Measured {measured} with fastafm {fastafm.__version__} by the command below; no test
> regenerates this file (it needs the Frappe data and about an hour). Rerun the command to refresh it.

Command: `{command.strip()}`

Data: trained on `frappe.validation.libfm` ({train[0].shape[0]:,} rows after holding out a fixed 10%,
{holdout[0].shape[0]:,} rows, seed {HOLDOUT_SEED}, for early stopping on RMSE), tested on `frappe.test.libfm`
({test[0].shape[0]:,} rows). RMSE with predictions clipped to [-1, 1] as the paper's code. The paper trained on the
full training split (about 202k rows), which is not available here, so absolute RMSEs are higher; the comparable
figure is AFM's relative gain over FM on the same data.

Common settings: Adagrad, batch 128, loss summed over the batch (as the authors' code), early stopping with
n_iter_no_change {args.n_iter_no_change} (at most {args.max_epochs} epochs) restoring the best holdout epoch; {
fastafm._core.resolve_threads(args.threads)} thread(s), ISA {fastafm._core.active_isa()}, {platform.machine()},
{os.cpu_count()} CPUs. Seconds are the wall time of each fit (holdout evaluation included).

## Results

{table}

{summary}

{target}

## The paper's figures

{paper}

## Field-pair attention (AFM, seed {args.seeds[0]}, mean a_ij over the test rows)

{markdown_matrix(matrix, FIELD_NAMES)}

Largest:

{top_lines}

{heat_note}

Total run time: {total:.0f} s ({total / 60:.1f} min).
"""
    print("\n" + report)
    if out_path is not None:
        out_path.write_text(report, encoding="utf-8")
        print(f"wrote {out_path}")
    print(f"total time {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
