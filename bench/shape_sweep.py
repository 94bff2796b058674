"""Speed at every shape (issue 13): training and prediction rows/s, GFLOP/s and % of the FMA peak measured in
the same run, for k = t in {8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 100, 128, 256} and (k, t) = (16, 64),
(64, 16), on Frappe-shaped (10 one-hot fields, 45 pairs) and Criteo-shaped (39 fields, 741 pairs) synthetic
rows, with every instruction set this CPU has; PyTorch's AFM (bench/torch_afm.py) at k = t in {10, 16, 24,
40, 64} on the Frappe-shaped rows; fastafm's FwFM and FM against modern-fm's at k in --fm-ks (issue 25); and a
contention case: 1 and 2 threads while a busy-loop process of this script's own keeps one core busy (it is
ended by the script, by its pid).

Timing: each measurement is one epoch of a fresh _core.Trainer (or one _core.predict call) on a fresh copy of
one initial model, sized to take about --seconds; rounds are interleaved (every shape and ISA once per round) so
that load from other jobs hits all of them alike; the best round is reported and the spread (worst / best).

    python bench/shape_sweep.py                         # full sweep, 2 threads, prints the tables
    python bench/shape_sweep.py --write                 # ... and writes bench/RESULTS.md's section + PNG
    python bench/shape_sweep.py --quick                 # a few shapes, one round (a smoke run)
    python bench/shape_sweep.py --ks 10,16 --shapes criteo --isas avx512,avx2 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import data as bench_data  # noqa: E402
import flops  # noqa: E402
import fma_peak  # noqa: E402
import harness  # noqa: E402

KS = [8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 100, 128, 256]
EXTRA = [(16, 64), (64, 16)]
TORCH_KS = [10, 16, 24, 40, 64]
#: fma_peak's name for the peak of each kernel ISA (the baseline build is SSE2: no FMA instructions).
PEAK_ISA = {"avx512": "avx512", "avx2": "avx2fma", "baseline": "sse"}
#: Criteo-shaped ids are hashed into this many features (the full 1e6 only makes model set-up slower).
CRITEO_FEATURES = 100_000
SECTION = "## Shape sweep (issue 13)"


#: Pairs a row of each shape (10 and 39 one-hot fields): the automatic dispatch chooses by it (pairs-major).
PAIRS = {"frappe": 45, "criteo": 741}


def automatic_isas(args) -> dict:
    """(shape, k, t) -> the set the automatic dispatch trains such rows with (_core.kernel_isa), read before
    the sweep forces any set."""
    from fastafm import _core

    ks = [int(x) for x in args.ks.split(",")] if args.ks else KS
    return {(name, k, t): _core.kernel_isa(k, t, PAIRS[name])
            for name in args.shapes.split(",") for k, t in shapes_of(ks, extra=not args.ks)}


def shapes_of(ks, extra=True):
    out = [(k, k) for k in ks]
    return out + [s for s in EXTRA if s not in out] if extra else out


class Case:
    """One row shape's data (built once, at the largest row count needed) and per-(k, t) models."""

    def __init__(self, name: str, max_rows: int):
        self.name = name
        if name == "criteo":
            self.ds = bench_data.criteo_like(max_rows, n_features=CRITEO_FEATURES, seed=0)
        else:
            self.ds = bench_data.make(name, max_rows, seed=0)
        from fastafm.data.validation import csr_arrays

        self.arrays = csr_arrays(self.ds.X)
        self.y = np.ascontiguousarray(self.ds.y, dtype=np.float32)
        self.nnz = np.diff(self.arrays[0])
        self.models = {}

    def model(self, k, t):
        if (k, t) not in self.models:
            # harness.init_model's distributions (docs/model.md), V drawn in float32 (much faster for 1e5 rows).
            params, accum = harness.init_model(1, k, t, seed=0)
            nf = self.ds.X.shape[1]
            rng = np.random.default_rng(0)
            params["V"] = rng.standard_normal((nf, k), dtype=np.float32) * np.float32(0.01)
            params["w"] = np.zeros(nf, np.float32)
            accum["V"] = np.full((nf, k), accum["W"].flat[0], np.float32)
            accum["w"] = np.full(nf, accum["W"].flat[0], np.float32)
            self.models[(k, t)] = params, accum
        params, accum = self.models[(k, t)]
        return {n: v.copy() for n, v in params.items()}, {n: v.copy() for n, v in accum.items()}

    def rows_for(self, k, t, seconds, gflops_guess):
        per_row = float(np.mean(flops.row_flops_train(self.nnz[:2000], k, t)))
        rows = int(seconds * gflops_guess * 1e9 / per_row)
        return int(min(max(rows, 512), self.ds.X.shape[0]))


#: --cpu-time: time the calling thread's CPU time instead of wall time (1 thread only: the team's one thread is
#: the caller), so that other jobs on the machine change the figures much less.
CLOCK = time.perf_counter


def time_train(case: Case, k, t, rows, threads, batch) -> float:
    from fastafm import _core

    params, accum = case.model(k, t)
    cfg = harness.train_config(k, batch, threads)
    order = harness.epoch_order(rows)
    start = CLOCK()
    _core.Trainer(params, {"G": accum}, cfg).train_epoch(*case.arrays, case.y, order, cfg.seed, cfg.epoch)  # slot G
    return CLOCK() - start


def time_predict(case: Case, k, t, rows, threads) -> float:
    from fastafm import _core

    params, _ = case.model(k, t)
    n = min(rows * 3, case.ds.X.shape[0])  # prediction is ~3x cheaper per row than training
    indptr = case.arrays[0][: n + 1]
    nz = int(indptr[-1])
    start = CLOCK()
    _core.predict(params, indptr, case.arrays[1][:nz], case.arrays[2][:nz], True, threads)
    return CLOCK() - start, len(indptr) - 1


def epoch_flops(case: Case, k, t, rows, batch) -> float:
    order = harness.epoch_order(rows)
    touched = flops.touched_per_batch(case.arrays[0], case.arrays[1], order, batch)
    return flops.epoch_flops_train(case.nnz[order], k, t, batch, touched=touched)


def sweep(args, peak) -> list[dict]:
    from fastafm import _core

    isas = [i for i in (args.isas.split(",") if args.isas else _core.supported_isas()) if i in _core.supported_isas()]
    ks = [int(x) for x in args.ks.split(",")] if args.ks else KS
    shapes = shapes_of(ks, extra=not args.ks)
    cases = {name: Case(name, args.max_rows[name]) for name in args.shapes.split(",")}
    plan = []
    for name, case in cases.items():
        for k, t in shapes:
            rows = case.rows_for(k, t, args.seconds, 60.0 * args.threads)
            plan.append((name, k, t, rows, epoch_flops(case, k, t, rows, args.batch)))
    results = {}
    for rnd in range(args.rounds):
        for name, k, t, rows, fl in plan:
            case = cases[name]
            for isa in isas:
                _core.select_isa(isa)
                tr = time_train(case, k, t, rows, args.threads, args.batch)
                pr, prow = time_predict(case, k, t, rows, args.threads)
                r = results.setdefault((name, k, t, isa), {"train": [], "predict": [], "rows": rows, "flops": fl,
                                                            "predict_rows": prow})
                r["train"].append(tr)
                r["predict"].append(pr)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    _core.select_isa(_core.supported_isas()[0])
    out = []
    for (name, k, t, isa), r in results.items():
        best, worst = min(r["train"]), max(r["train"])
        pbest = min(r["predict"])
        pflops = flops.epoch_flops_predict(cases[name].nnz[: r["predict_rows"]], k, t)
        gf = r["flops"] / best / 1e9
        pgf = pflops / pbest / 1e9
        pk = peak[isa]
        out.append(dict(shape=name, k=k, t=t, isa=isa, rows=r["rows"], train_rows_s=r["rows"] / best,
                        train_gflops=gf, train_pct=100 * gf / pk, train_spread=best / worst,
                        predict_rows_s=r["predict_rows"] / pbest, predict_gflops=pgf, predict_pct=100 * pgf / pk,
                        peak=pk))
    return out


def torch_rows(args) -> dict:
    """{k: (PyTorch rows/s, fastafm rows/s)} on the Frappe-shaped rows, same threads, interleaved rounds."""
    try:
        import torch_afm
    except ImportError as e:  # torch not installed
        print(f"PyTorch baseline skipped: {e}", file=sys.stderr)
        return {}
    case = Case("frappe", args.torch_rows)
    out = {}
    for k in TORCH_KS:
        tt, ft = [], []
        for _ in range(max(1, args.rounds - 1)):
            tt.append(torch_afm.train_epoch_seconds(case.ds, k, k, args.batch, args.threads))
            ft.append(time_train(case, k, k, args.torch_rows, args.threads, args.batch))
        out[k] = (args.torch_rows / min(tt), args.torch_rows / min(ft))
    return out


def fm_peers(args) -> dict:
    """{(shape, k): {fit name: [rows/s per round]}}: fastafm's FwFM and FM against modern-fm's on one-hot rows
    of each shape (bench/fwfm_speed.py's fits: same rows, epochs and threads, the libraries interleaved)."""
    import fwfm_speed

    try:
        import modern_fm  # noqa: F401
        names = tuple(fwfm_speed.FITS)
    except ImportError:
        print("modern-fm is not installed (pip install modern-fm): fastafm's FwFM and FM only", file=sys.stderr)
        names = ("fastafm FwFM", "fastafm FM")
    rows = {"frappe": 10_000 if args.quick else 100_000, "criteo": 3_000 if args.quick else 20_000}
    out = {}
    for shape in args.shapes.split(","):
        for k in (int(x) for x in args.fm_ks.split(",")):
            out[(shape, k)] = fwfm_speed.compare(shape, k, rows[shape], 1 if args.quick else 2, args.threads,
                                                 args.rounds, names)
    return out


def fm_peers_markdown(res: dict, args) -> list[str]:
    names = list(next(iter(res.values())))
    out = ["", f"### FwFM, FM and modern-fm ({args.threads} threads; bench/fwfm_speed.py's fits, median of "
           f"{args.rounds} interleaved rounds)", "",
           "Fit rows/s (rows x epochs / fit seconds, setup included): fastafm's FwFMClassifier and FMClassifier "
           "(batch 128, Adagrad, no dropout, no early stopping) and modern-fm's (batch 1, its only mode) on the "
           "same one-hot rows, each field's ids in its own range.", "",
           "| rows | k | " + " | ".join(names) + " | FwFM ratio | FM ratio |",
           "|---|---:|" + "---:|" * (len(names) + 2)]
    for (shape, k), rates in res.items():
        med = {n: statistics.median(v) for n, v in rates.items()}
        ratio = [f"{med['fastafm ' + m] / med['modern-fm ' + m]:.2f}x" if f"modern-fm {m}" in med else "-"
                 for m in ("FwFM", "FM")]
        out.append(f"| {shape} | {k} | " + " | ".join(f"{med[n]:,.0f}" for n in names) + " | "
                   + " | ".join(ratio) + " |")
    return out


def busy_loop() -> subprocess.Popen:
    """A process of our own spinning on CPU 0 (ended by contention())."""
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def contention(args) -> dict:
    """Training rows/s at 1 and 2 threads, Frappe-shaped k = t = 64, idle and with one core busy."""
    case = Case("frappe", 20_000)
    rows = case.rows_for(64, 64, args.seconds, 60.0)
    out = {}
    for label in ("idle", "one core busy"):
        proc = busy_loop() if label != "idle" else None
        try:
            time.sleep(0.3 if proc else 0.0)
            times = {1: [], 2: []}
            for _ in range(args.rounds):
                for n in (1, 2):
                    times[n].append(time_train(case, 64, 64, rows, n, args.batch))
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        out[label] = {n: (rows / min(v), min(v) / max(v)) for n, v in times.items()}
    return out


def peaks(threads: int) -> tuple[dict, dict]:
    res = fma_peak.measure(threads=[threads])
    return {isa: fma_peak.peak_gflops(res, threads, PEAK_ISA[isa])[0] for isa in PEAK_ISA
            if PEAK_ISA[isa] in res["gflops"]}, res


def cpu_model() -> str:
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        return m.group(1).strip() if m else "unknown CPU"
    except OSError:
        return "unknown CPU"


def next16(k: int) -> int:
    return (k // 16 + 1) * 16 if k % 16 else k


def targets(rows: list[dict], chosen: dict) -> list[str]:
    """The issue's targets, each with the figure reached, on the set the automatic dispatch chooses per shape
    (`chosen`: automatic_isas)."""
    lines = []
    by = {(r["shape"], r["k"], r["t"], r["isa"]): r for r in rows}
    auto = {key: by[key + (isa,)] for key, isa in chosen.items() if key + (isa,) in by}
    for shape in sorted({r["shape"] for r in rows}):
        worst = None
        for (s, k, t), r in auto.items():
            if s != shape or k != t or k % 16 == 0:
                continue
            up = auto.get((shape, next16(k), next16(k)))
            if up:
                ratio = r["train_rows_s"] / up["train_rows_s"]
                if worst is None or ratio < worst[0]:
                    worst = (ratio, r["k"], up["k"])
        if worst:
            lines.append(f"- {shape}: rows/s at k = t vs the next multiple of 16, worst {worst[0]:.2f}x "
                         f"(k = {worst[1]} vs {worst[2]}); target >= 0.95x: {'met' if worst[0] >= 0.95 else 'NOT met'}")
    # Criteo: issue 25's targets (issue 13 had 45% and 30%); Frappe: issue 13's.
    for shape, k, goal in (("criteo", 16, 60), ("criteo", 10, 40), ("frappe", 256, 80), ("frappe", 64, 60)):
        r = auto.get((shape, k, k))
        if r:
            lines.append(f"- {shape} k = t = {k}: {r['train_pct']:.0f}% of peak on {r['isa']} (target >= {goal}%): "
                         f"{'met' if r['train_pct'] >= goal else 'NOT met'}")
    slower = []
    isas = sorted({r["isa"] for r in rows})
    for (shape, k, t), r in auto.items():
        for other in isas:
            o = by.get((shape, k, t, other))
            if other != r["isa"] and o and o["train_rows_s"] > r["train_rows_s"] * 1.05:
                slower.append(f"{shape} k={k} t={t}: {other} {o['train_rows_s'] / r['train_rows_s']:.2f}x "
                              f"the chosen {r['isa']}")
    lines.append("- the automatically chosen ISA never slower than another (>5%): "
                 + ("met" if not slower else "NOT met at " + "; ".join(slower)))
    return lines


def markdown(rows, torch_res, cont, peak, chosen, args, load_note, fm_res=None) -> str:
    out = [SECTION, "",
           f"CPU: {cpu_model()} ({fma_peak.n_cores()} cores), {args.threads} threads, batch {args.batch}. "
           f"FMA peak measured in this run ({args.threads} threads): "
           + ", ".join(f"{isa} {pk:.0f} GFLOP/s" for isa, pk in peak.items()) + ". "
           "% of peak is of the line's own ISA; (auto): the set the automatic dispatch trains those rows with "
           "(kernel_isa(k, t, pairs)), which the targets judge. "
           + ("Times are the calling thread's CPU time (time.thread_time). " if CLOCK is not time.perf_counter else "")
           + "Best of "
           f"{args.rounds} interleaved rounds; spread = best / worst epoch time. {load_note}", "",
           f"Command: `python bench/shape_sweep.py{' ' + ' '.join(args.argv) if args.argv else ''}`", "",
           "![shape sweep](shape_sweep.png)", "",
           "### Targets", ""] + targets(rows, chosen)
    if cont:
        out += ["", "### Contention (Frappe-shaped k = t = 64; busy loop pinned to CPU 0)", "",
                "| | 1 thread rows/s | 2 threads rows/s | 2 / 1 |", "|---|---:|---:|---:|"]
        for label, v in cont.items():
            out.append(f"| {label} | {v[1][0]:,.0f} | {v[2][0]:,.0f} | {v[2][0] / v[1][0]:.2f} |")
    if torch_res:
        out += ["", f"### PyTorch AFM (bench/torch_afm.py, {args.torch_rows} Frappe-shaped rows, {args.threads} threads)",
                "", "| k = t | torch rows/s | fastafm rows/s | fastafm / torch |", "|---:|---:|---:|---:|"]
        for k, (tr, fr) in torch_res.items():
            out.append(f"| {k} | {tr:,.0f} | {fr:,.0f} | {fr / tr:.1f}x |")
    if fm_res:
        out += fm_peers_markdown(fm_res, args)
    out += ["", "### All shapes", "",
            "| rows | k | t | ISA | train rows/s | GFLOP/s | % peak | spread | predict rows/s | GFLOP/s | % peak |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["shape"], r["k"] != r["t"], r["k"], r["t"], r["isa"])):
        isa = r["isa"] + (" (auto)" if chosen.get((r["shape"], r["k"], r["t"])) == r["isa"] else "")
        out.append(f"| {r['shape']} | {r['k']} | {r['t']} | {isa} | {r['train_rows_s']:,.0f} | "
                   f"{r['train_gflops']:.1f} | {r['train_pct']:.0f} | {r['train_spread']:.2f} | "
                   f"{r['predict_rows_s']:,.0f} | {r['predict_gflops']:.1f} | {r['predict_pct']:.0f} |")
    return "\n".join(out) + "\n"


def plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = sorted({r["shape"] for r in rows})
    fig, axes = plt.subplots(2, len(shapes), figsize=(6 * len(shapes), 8), squeeze=False)
    for col, shape in enumerate(shapes):
        for isa in sorted({r["isa"] for r in rows}):
            pts = sorted((r["k"], r["train_rows_s"], r["train_pct"]) for r in rows
                         if r["shape"] == shape and r["isa"] == isa and r["k"] == r["t"])
            if not pts:
                continue
            ks, rs, pct = zip(*pts)
            axes[0][col].plot(ks, rs, marker="o", label=isa)
            axes[1][col].plot(ks, pct, marker="o", label=isa)
        axes[0][col].set_title(f"{shape}-shaped rows: training")
        axes[0][col].set_ylabel("rows/s")
        axes[0][col].set_yscale("log")
        axes[1][col].set_ylabel("% of the ISA's FMA peak")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("k = t")
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_results(text: str, path: Path) -> None:
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        nxt = rest.find("\n## ")
        old = head + (rest[nxt + 1:] if nxt >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + text)


def load_note() -> str:
    """Other jobs on the machine while the sweep ran (the 1-minute load average against the cores)."""
    try:
        load = float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return ""
    return (f"Load average {load:.1f} on {os.cpu_count()} CPUs at the end: "
            + ("other jobs were running, figures are noisy." if load > 0.5 * (os.cpu_count() or 1) + 0.5
               else "the machine was mostly idle."))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="frappe,criteo")
    ap.add_argument("--ks", default=None, help="k = t values (default: the issue's sweep plus (16,64), (64,16))")
    ap.add_argument("--isas", default=None, help="default: every ISA this CPU has")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=0.25, help="target seconds per measurement")
    ap.add_argument("--torch-rows", type=int, default=20_000)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-contention", action="store_true")
    ap.add_argument("--fm-ks", default="16,64", help="k of the FwFM / FM / modern-fm table (default 16,64)")
    ap.add_argument("--no-fm-peers", action="store_true", help="skip the FwFM / FM / modern-fm table")
    ap.add_argument("--quick", action="store_true", help="k in {10, 16, 64}, one round, short measurements")
    ap.add_argument("--write", action="store_true", help="write the section and PNG into bench/RESULTS.md")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cpu-time", action="store_true",
                    help="with --threads 1: CPU time of the calling thread (steadier on a shared machine); "
                         "writes its own RESULTS.md section")
    args = ap.parse_args(argv)
    global CLOCK, SECTION
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time needs --threads 1")
        CLOCK = time.thread_time
        SECTION = "## Shape sweep, 1 thread, CPU time (issue 13)"
        args.no_contention = True
    args.argv = argv
    if args.quick:
        args.ks = args.ks or "10,16,64"
        args.rounds, args.seconds, args.torch_rows = 1, 0.05, 2_000
    args.max_rows = {"frappe": 200_000 if not args.quick else 40_000, "criteo": 20_000 if not args.quick else 2_000}
    chosen = automatic_isas(args)
    peak, _ = peaks(args.threads)
    rows = sweep(args, peak)
    torch_res = {} if args.no_torch else torch_rows(args)
    cont = {} if args.no_contention else contention(args)
    fm_res = {} if args.no_fm_peers else fm_peers(args)
    text = markdown(rows, torch_res, cont, peak, chosen, args, load_note(), fm_res)
    print(text)
    if args.json:
        fm_json = {f"{shape} k={k}": rates for (shape, k), rates in fm_res.items()}
        Path(args.json).write_text(json.dumps(dict(rows=rows, torch=torch_res, contention=cont, peak=peak,
                                                   fm_peers=fm_json), indent=1))
    if args.write:
        png = "shape_sweep_cpu.png" if args.cpu_time else "shape_sweep.png"
        text = text.replace("(shape_sweep.png)", f"({png})")
        plot(rows, HERE / png)
        write_results(text, HERE / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
