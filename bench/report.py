"""Markdown report of a pytest-benchmark JSON written by the fastafm suite (`--benchmark-json out.json`).

    python bench/report.py out.json                    # machine header, results table, issue-3 targets
    python bench/report.py out.json --stat median      # rates from the median round instead of the best
    python bench/report.py out.json --scaling scaling.json --memory mem.json -o bench/RESULTS.md

Columns: group, case (shape), implementation, rows/s (elements/s for Adagrad), GFLOP/s by bench/flops.py,
% of the measured FMA peak for the threads used, and ratios: to the reference of the same shape (the NumPy
float64 reference, NumPy Adagrad or sklearn's parser; for `predict` the attention_forward reference and for
`epoch` the attention_backward reference, i.e. forward + backward without the update) and to PyTorch's epoch
of the same shape.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GROUP_ORDER = ["pairwise", "attention_forward", "attention_backward", "adagrad", "epoch", "torch", "predict",
               "libfm"]
IMPL_ORDER = ["fastafm", "reference", "numpy", "sklearn", "torch"]
BASELINE_IMPLS = ("reference", "numpy", "sklearn")
#: Where a group without its own baseline finds one of equal work per row.
BASELINE_GROUP = {"predict": "attention_forward", "epoch": "attention_backward"}

#: Issue 3's targets: (label, group, shape, metric, threshold).
TARGETS = [
    ("training k=t=256, batch 128: >= 70% of peak", "epoch", "frappe k=256 t=256 b=128", "pct_peak", 70.0),
    ("training k=t=64, batch 256: >= 55% of peak", "epoch", "frappe k=64 t=64 b=256", "pct_peak", 55.0),
    ("prediction k=t=256: >= 70% of peak", "predict", "frappe k=256 t=256", "pct_peak", 70.0),
    ("Criteo-shaped k=t=16 training (report)", "epoch", "criteo k=16 t=16 b=256", "pct_peak", None),
    ("vs PyTorch k=t=64 (batch 256): >= 4x", "epoch", "frappe k=64 t=64 b=256", "vs_torch", 4.0),
    ("vs PyTorch k=t=256 (batch 128): >= 2x", "epoch", "frappe k=256 t=256 b=128", "vs_torch", 2.0),
]


def _rows(doc: dict, stat: str) -> list:
    rows = []
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info", {})
        seconds = (b.get("stats") or {}).get(stat)
        if not seconds or "items" not in info:
            continue
        r = {
            "group": b.get("group") or "",
            "name": b.get("name"),
            "impl": info.get("impl", "?"),
            "shape": info.get("shape", b.get("param") or b.get("name")),
            "unit": info.get("unit", "rows"),
            "threads": info.get("threads"),
            "seconds": seconds,
            "per_s": info["items"] / seconds,
            "gflops": info["flops"] / seconds / 1e9 if "flops" in info else None,
            "gbps": info["bytes"] / seconds / 1e9 if "bytes" in info else None,
            "peak": info.get("peak_gflops"),
            "peak_isa": info.get("peak_isa"),
            "rounds": (b.get("stats") or {}).get("rounds"),
        }
        r["pct_peak"] = 100.0 * r["gflops"] / r["peak"] if r["gflops"] and r["peak"] else None
        rows.append(r)
    # Ratios.
    by_key = {}
    for r in rows:
        by_key.setdefault((r["group"], r["shape"]), []).append(r)
    for r in rows:
        r["vs_ref"] = r["vs_torch"] = None
        if r["impl"] in BASELINE_IMPLS or r["impl"] == "torch":
            continue
        # Same group and shape first; then the group of equal per-row work, where the reference's rows/s do
        # not depend on the batch size (it runs row by row), so "frappe k=64 t=64 b=128" may use b=256's.
        candidates = [b for b in by_key.get((r["group"], r["shape"]), []) if b["impl"] in BASELINE_IMPLS]
        fallback = BASELINE_GROUP.get(r["group"])
        if not candidates and fallback:
            stem = _without_batch(r["shape"])
            candidates = [b for (g, shape), bs in by_key.items() if g == fallback and _without_batch(shape) == stem
                          for b in bs if b["impl"] in BASELINE_IMPLS]
        if candidates:
            r["vs_ref"] = r["per_s"] / candidates[0]["per_s"]
            r["ref_impl"] = candidates[0]["impl"]
        torch_rows = by_key.get(("torch", r["shape"]), []) if r["group"] == "epoch" else []
        if torch_rows:
            r["vs_torch"] = r["per_s"] / torch_rows[0]["per_s"]

    def order(r):
        g = GROUP_ORDER.index(r["group"]) if r["group"] in GROUP_ORDER else len(GROUP_ORDER)
        i = IMPL_ORDER.index(r["impl"]) if r["impl"] in IMPL_ORDER else len(IMPL_ORDER)
        return g, r["group"], r["shape"], i

    return sorted(rows, key=order)


def _without_batch(shape: str) -> str:
    return " ".join(p for p in str(shape).split() if not p.startswith("b="))


def _fmt(x, spec, suffix=""):
    return "" if x is None else format(x, spec) + suffix


def _rate(r) -> str:
    unit = {"rows": "rows/s", "elements": "elem/s"}.get(r["unit"], r["unit"] + "/s")
    v = r["per_s"]
    text = f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v:,.0f} "
    return text + unit


def table(rows: list) -> str:
    out = ["| group | case | impl | thr | rows/s | GFLOP/s | % of peak | vs reference | vs PyTorch |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        extra = ""
        if r["gbps"] is not None:  # bandwidth where it is the point: Adagrad (GB/s) and parsing (MB/s)
            extra = f" ({1000 * r['gbps']:.0f} MB/s)" if r["group"] == "libfm" else f" ({r['gbps']:.1f} GB/s)"
        out.append(
            f"| {r['group']} | {r['shape']} | {r['impl']} | {_fmt(r['threads'], 'd')} | {_rate(r)}{extra} | "
            f"{_fmt(r['gflops'], '.2f')} | {_fmt(r['pct_peak'], '.1f', '%')} | {_fmt(r['vs_ref'], '.1f', 'x')} | "
            f"{_fmt(r['vs_torch'], '.2f', 'x')} |")
    return "\n".join(out)


def targets(rows: list) -> str:
    out = ["| target | figure | status |", "|---|---:|---|"]
    index = {(r["group"], r["shape"], r["impl"]): r for r in rows}
    for label, group, shape, metric, threshold in TARGETS:
        r = index.get((group, shape, "fastafm"))
        value = r.get(metric) if r else None
        if value is None:
            out.append(f"| {label} | not measured | |")
            continue
        figure = f"{value:.1f}%" if metric == "pct_peak" else f"{value:.2f}x"
        if metric == "pct_peak":
            figure += f" ({r['gflops']:.1f} of {r['peak']:.1f} GFLOP/s, {_rate(r)})"
        status = "" if threshold is None else ("met" if value >= threshold else "missed")
        out.append(f"| {label} | {figure} | {status} |")
    lib = [r for r in rows if r["group"] == "libfm" and r["impl"] == "fastafm"]
    if lib and lib[0]["vs_ref"] is not None:
        v = lib[0]["vs_ref"]
        out.append(f"| libfm parsing vs sklearn: >= 3x | {v:.2f}x | {'met' if v >= 3 else 'missed'} |")
    else:
        out.append("| libfm parsing vs sklearn: >= 3x | not measured | |")
    return "\n".join(out)


def header(doc: dict, stat: str) -> str:
    mi = doc.get("machine_info", {})
    fa = mi.get("fastafm", {})
    cpu = fa.get("cpu", {})
    lines = [f"- date: {doc.get('datetime', '?')}; rates from the `{stat}` round"]
    if fa.get("command"):
        lines.append(f"- command: `{fa['command']}`")
    lines.append(f"- CPU: {cpu.get('model_name', mi.get('cpu', {}).get('brand_raw', '?'))}, {cpu.get('cores')} cores"
                 f" available; flags {' '.join(cpu.get('flags', []))}")
    peak = fa.get("fma_peak")
    if peak:
        best = peak.get("best", {})
        parts = [f"{t} thr {v['gflops']:.1f} GFLOP/s ({v['isa']})" for t, v in sorted(best.items(),
                                                                                     key=lambda x: int(x[0]))]
        lines.append("- measured FMA peak (best ISA): " + "; ".join(parts))
        fpc = peak.get("flops_per_cycle", {})
        for isa, per in peak.get("gflops", {}).items():
            lines.append(f"  - {isa}: " + ", ".join(
                f"{t} thr {g:.1f}" + (f" ({fpc[isa][t]:.1f} FLOP/cycle/thread)" if t in fpc.get(isa, {}) else "")
                for t, g in sorted(per.items(), key=lambda x: int(x[0]))))
        clocks = peak.get("clock_ghz", {})
        if clocks:
            lines.append("  - measured clock: " + ", ".join(f"{t} thr {g:.2f} GHz" for t, g in
                                                            sorted(clocks.items(), key=lambda x: int(x[0]))))
    build = fa.get("build", {})
    if build:
        lines.append("- core build: " + ", ".join(f"{k}={v}" for k, v in build.items() if k != "cmake_cache"))
    lines.append(f"- fastafm {fa.get('fastafm')}, OpenMP {fa.get('openmp')}, SIMD path "
                 f"{fa.get('core_isa') or 'not reported'}, threads {fa.get('bench_threads')}; "
                 f"numpy {fa.get('numpy')}, torch {fa.get('torch')}")
    return "\n".join(lines)


def flop_model() -> str:
    """The FLOP model (bench/flops.py) per row for the benchmark shapes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import flops

    out = ["Per pair (P = m(m-1)/2 pairs for m non-zeros): training 6tk + 14k + 9t + 7 FLOPs, prediction "
           "2tk + 4k + 4t + 5 (bench/flops.py; the GEMM part is 6tk and 2tk).", "",
           "| data | m | P | k = t | training MFLOP/row | of which GEMM | prediction MFLOP/row |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, m, ks in (("frappe", 10, (16, 64, 256)), ("criteo", 39, (16,))):
        for k in ks:
            s = flops.summary([m] * 1000, k, k, 128)
            out.append(f"| {name} | {m} | {flops.pairs(m)} | {k} | {s['train_flops_per_row'] / 1e6:.3f} | "
                       f"{100 * s['gemm_share_train']:.1f}% | {s['predict_flops_per_row'] / 1e6:.3f} |")
    return "\n".join(out)


def scaling_section(sc: dict) -> str:
    """Table of bench/thread_scaling.py's JSON and the 2-thread target."""
    st = sc.get("settings", {})
    out = [f"`{sc.get('command', 'bench/thread_scaling.py')}`: {st.get('data')} rows={st.get('rows')} "
           f"k={st.get('k')} t={st.get('t')} batch={st.get('batch')}", "",
           "| threads | s/epoch | rows/s | speedup vs 1 | efficiency | GFLOP/s | % of peak |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sc.get("results", []):
        eff = 100 * r["efficiency"] if "efficiency" in r else None
        out.append(f"| {r['threads']} | {r['best_s']:.3f} | {r['rows_per_s']:,.0f} | "
                   f"{_fmt(r.get('speedup'), '.2f', 'x')} | {_fmt(eff, '.0f', '%')} | "
                   f"{r['gflops']:.2f} | {_fmt(r.get('pct_peak'), '.1f', '%')} |")
    two = [r for r in sc.get("results", []) if r["threads"] == 2 and "speedup" in r]
    if two:
        v = two[0]["speedup"]
        out += ["", f"Target 2 threads >= 1.8x one thread: {v:.2f}x, {'met' if v >= 1.8 else 'missed'}."]
    return "\n".join(out)


def memory_section(mem: dict) -> str:
    """Summary of bench/memory.py's JSON."""
    st, exp = mem.get("settings", {}), mem.get("expected", {})

    def mb(x):
        return "n/a" if x is None else f"{x / 1e6:,.1f} MB"

    out = [f"`{mem.get('command', 'bench/memory.py')}`: {st.get('data')} rows={st.get('rows')} k={st.get('k')} "
           f"t={st.get('t')} batch={st.get('batch')} threads={st.get('threads')}", "",
           f"data {mb(exp.get('data'))} + parameters {mb(exp.get('params'))} + Adagrad state "
           f"{mb(exp.get('adagrad_state'))} = {mb(mem.get('held_bytes'))}; expected work memory "
           f"{mb(exp.get('work_expected'))}; batch x P x k would be {mb(exp.get('forbidden_batch_PxK'))}", "",
           "| phase | RSS before | peak | growth | peak - (RSS after imports + held) |", "|---|---:|---:|---:|---:|"]
    for key, label in (("core_epoch", "_core.Trainer epoch"), ("epoch", "partial_fit (1 epoch)"),
                       ("fit", "fit (init + 1 epoch)")):
        ph = mem.get(key)
        if ph:
            out.append(f"| {label} | {mb(ph.get('rss_before'))} | {mb(ph.get('peak'))} | {mb(ph.get('growth'))} | "
                       f"{mb(ph.get('over_held')) if 'over_held' in ph else ''} |")
    return "\n".join(out)


def render(doc: dict, stat: str = "min", with_model: bool = True, scaling: dict | None = None,
           memory: dict | None = None) -> str:
    rows = _rows(doc, stat)
    parts = ["## Machine and run", header(doc, stat), "", "## Results", table(rows), "",
             "## Issue 3 targets", targets(rows)]
    if scaling:
        parts += ["", "## Thread scaling", scaling_section(scaling)]
    if memory:
        parts += ["", "## Memory", memory_section(memory)]
    if with_model:
        parts += ["", "## FLOP model", flop_model()]
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Markdown report of a fastafm pytest-benchmark JSON")
    ap.add_argument("json", help="file written by --benchmark-json")
    ap.add_argument("--stat", default="min", choices=["min", "median", "mean", "max"],
                    help="round statistic the rates come from (default min, the best round)")
    ap.add_argument("-o", "--output", help="write the markdown here as well")
    ap.add_argument("--no-model", action="store_true", help="leave out the FLOP model section")
    ap.add_argument("--scaling", help="JSON of bench/thread_scaling.py --json, added as a section")
    ap.add_argument("--memory", help="JSON of bench/memory.py --json, added as a section")
    args = ap.parse_args(argv)
    doc = json.loads(Path(args.json).read_text())
    extra = {name: json.loads(Path(p).read_text()) if p else None
             for name, p in (("scaling", args.scaling), ("memory", args.memory))}
    text = render(doc, args.stat, with_model=not args.no_model, **extra)
    print(text, end="")
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
