"""Out-of-core training (issue 7): throughput from a cache vs in memory, and one epoch under a memory cap.

    python bench/out_of_core.py DATA.libfm                    # a libFM file (converted to a cache first)
    python bench/out_of_core.py --synthetic-rows 18000000     # Frappe-shaped rows, generated piece by piece

(a) Throughput: the first --throughput-rows rows, AFMRegressor (k = t = --k, batch --batch, --threads) fitted
    in memory and from a cache of the same rows (read once beforehand, so it is in the page cache), rounds
    interleaved; the median epoch seconds of each and their ratio (target: cache within 20%, ratio <= 1.2).
(b) Memory cap: the whole data set as a cache; one epoch of training from it in a child process run under
    `prlimit --as=CAP` (virtual address space: the container's memory cgroup is not ours to change). The cap
    is --cap-mib; the baseline VmPeak of a child that imports fastafm and trains a tiny model is measured
    first and printed, since the cap must leave room for it. The child first tries to load the whole cache
    (read_rows(0, n_rows)) and must get a MemoryError, which shows that the cap binds; then it trains and
    reports its peak RSS (getrusage ru_maxrss, VmHWM) against model + optimizer state + block buffer.

--json FILE writes every figure. The cache files go to --workdir (default: a temporary folder under /tmp,
removed at the end unless --keep).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

MiB = 1 << 20


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return -1


def _model(args, n_epochs):
    import fastafm

    return fastafm.AFMRegressor(embedding_dim=args.k, attention_dim=args.k, batch_size=args.batch,
                                n_epochs=n_epochs, n_threads=args.threads, random_state=0, dropout=0.5)


def synthetic_pieces(n_rows: int, piece: int = 1_000_000):
    import data as bench_data

    for i, start in enumerate(range(0, n_rows, piece)):
        ds = bench_data.frappe_like(min(piece, n_rows - start), seed=i)
        yield ds.X, ds.y


def throughput(args, source_cache, workdir: Path) -> dict:
    import fastafm

    n = min(args.throughput_rows, source_cache.n_rows)
    X, y = source_cache.read_rows(0, n)
    cache = fastafm.convert((X, y), workdir / "throughput.cache", block_bytes=int(args.block_mb * MiB))
    Path(cache.path).read_bytes()  # into the page cache
    mem_s, disk_s, mem_cpu, disk_cpu = [], [], [], []
    for _ in range(args.rounds):
        # CPU seconds of the process too: on a shared machine a niced run is starved now and then, which
        # wall-clock epochs show as outliers but CPU time does not.
        cpu = time.process_time()
        m = _model(args, args.epochs).fit(X, y)
        mem_cpu.append((time.process_time() - cpu) / args.epochs)
        mem_s += [r["seconds"] for r in m.history_]
        cpu = time.process_time()
        d = _model(args, args.epochs).fit(cache)
        disk_cpu.append((time.process_time() - cpu) / args.epochs)
        disk_s += [r["seconds"] for r in d.history_]
    out = {"rows": n, "blocks": -(-n // cache.block_rows), "block_rows": cache.block_rows,
           "in_memory_epoch_s": statistics.median(mem_s), "cache_epoch_s": statistics.median(disk_s),
           "in_memory_all_s": mem_s, "cache_all_s": disk_s, "in_memory_cpu_s": mem_cpu, "cache_cpu_s": disk_cpu,
           "cpu_ratio": statistics.median(disk_cpu) / statistics.median(mem_cpu)}
    out["ratio"] = out["cache_epoch_s"] / out["in_memory_epoch_s"]
    print(f"(a) throughput, {n} rows in {out['blocks']} blocks of {cache.block_rows}: in memory "
          f"{out['in_memory_epoch_s']:.2f} s/epoch ({n / out['in_memory_epoch_s']:,.0f} rows/s), cache "
          f"{out['cache_epoch_s']:.2f} s/epoch ({n / out['cache_epoch_s']:,.0f} rows/s): ratio {out['ratio']:.3f} "
          f"(target <= 1.2); CPU seconds per epoch {statistics.median(mem_cpu):.2f} vs "
          f"{statistics.median(disk_cpu):.2f}: ratio {out['cpu_ratio']:.3f}", flush=True)
    return out


def child(args) -> None:
    """Runs under the cap: a MemoryError for the whole data set, then one streamed epoch; JSON on stdout."""
    import fastafm
    from fastafm.training import cache_rows as _streaming

    result: dict = {"baseline_rss": _status("VmRSS"), "baseline_vm": _status("VmSize")}
    if args.child == "baseline":
        X, y, _ = fastafm.make_planted(n_rows=2000, random_state=0)
        _model(args, 1).fit(X, y)
        result["vm_peak"] = _status("VmPeak")
        print(json.dumps(result))
        return
    cache = fastafm.CacheFile(args.child, block_bytes=int(args.block_mb * MiB))
    try:
        cache.read_rows(0, cache.n_rows)
        result["whole_load"] = "succeeded"
    except MemoryError as exc:
        result["whole_load"] = f"MemoryError: {exc}"
    result["rss_after_load_attempt"] = _status("VmRSS")
    model = _model(args, 0).fit(cache)  # initialise only (n_epochs=0)
    rows = _streaming.CacheRows([cache], lambda labels: labels)
    params = sum(a.nbytes for a in model.get_model_params().values())
    result.update(rows=cache.n_rows, nnz=cache.nnz, block_rows=cache.block_rows, buffer_bytes=rows.buffer_bytes,
                  params_bytes=params, model_state_bytes=4 * params, rss_before_epoch=_status("VmRSS"))
    start = time.perf_counter()
    model.partial_fit(cache)
    result.update(epoch_s=time.perf_counter() - start, train_loss=model.history_[-1]["train_loss"],
                  ru_maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, vm_hwm=_status("VmHWM"),
                  vm_peak=_status("VmPeak"))
    print(json.dumps(result))


def run_child(args, what: str, cap: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--k", str(args.k), "--batch", str(args.batch),
           "--threads", str(args.threads), "--block-mb", str(args.block_mb)]
    if cap is not None:
        cmd = ["prlimit", f"--as={cap}", "--"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def capped(args, cache) -> dict:
    cap = int(args.cap_mib * MiB)
    base = run_child(args, "baseline", None)
    size = os.path.getsize(cache.path)
    print(f"(b) cap: prlimit --as={cap} ({args.cap_mib:.0f} MiB); baseline child VmPeak {base['vm_peak'] / MiB:.0f} "
          f"MiB; cache {size / MiB:.0f} MiB = {size / cap:.2f}x the cap", flush=True)
    res = run_child(args, cache.path, cap)
    res.update(cap_bytes=cap, cache_bytes=size, cache_over_cap=size / cap, baseline_vm_peak=base["vm_peak"])
    bound = res["model_state_bytes"] + res["buffer_bytes"]
    growth = res["ru_maxrss"] - res["baseline_rss"]
    res.update(bound_bytes=bound, rss_growth=growth)
    print(f"    whole-cache load under the cap: {res['whole_load'][:60]}", flush=True)
    print(f"    one epoch of {res['rows']:,} rows in {res['epoch_s']:.1f} s ({res['rows'] / res['epoch_s']:,.0f} rows/s), "
          f"train_loss {res['train_loss']:.4f}", flush=True)
    # VmHWM is the peak of the child's own image; ru_maxrss survives execve, so it may show the forked
    # parent's resident set (this script's, which generated the data) instead.
    growth = res["vm_hwm"] - res["baseline_rss"]
    res["rss_growth"] = growth
    print(f"    peak RSS {res['vm_hwm'] / MiB:.0f} MiB (VmHWM; VmPeak {res['vm_peak'] / MiB:.0f} MiB; ru_maxrss "
          f"{res['ru_maxrss'] / MiB:.0f} MiB, inherited across exec from the parent) = interpreter baseline "
          f"{res['baseline_rss'] / MiB:.0f} MiB + growth {growth / MiB:.0f} MiB; model + optimizer state + snapshot {res['model_state_bytes'] / MiB:.1f} MiB, "
          f"block buffer {res['buffer_bytes'] / MiB:.1f} MiB ({res['block_rows']:,} rows)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", help="a libFM/libSVM file")
    ap.add_argument("--synthetic-rows", type=int, help="generate this many Frappe-shaped rows instead")
    ap.add_argument("--throughput-rows", type=int, default=1_000_000)
    ap.add_argument("--cap-mib", type=float, default=512.0)
    ap.add_argument("--k", type=int, default=16, help="embedding_dim = attention_dim (default 16)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per throughput fit (default 2)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved throughput rounds (default 2)")
    ap.add_argument("--block-mb", type=float, default=32.0, help="block size of the streamed caches, MiB")
    ap.add_argument("--workdir", help="folder for the caches (default: a new one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the caches")
    ap.add_argument("--skip-cap", action="store_true", help="throughput only")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if (args.data is None) == (args.synthetic_rows is None):
        ap.error("give DATA or --synthetic-rows N")
    import fastafm

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fastafm-ooc-", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        source = args.data if args.data else synthetic_pieces(args.synthetic_rows)
        cache = fastafm.convert(source, workdir / "data.cache", block_bytes=int(args.block_mb * MiB))
        print(f"cache {cache.path}: {cache.n_rows:,} rows, {cache.nnz:,} non-zeros, "
              f"{os.path.getsize(cache.path) / MiB:.0f} MiB, written in {time.perf_counter() - start:.1f} s "
              f"(peak RSS of this process so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)",
              flush=True)
        results = {"command": " ".join(sys.argv), "k": args.k, "batch": args.batch, "threads": args.threads,
                   "throughput": throughput(args, cache, workdir)}
        if not args.skip_cap:
            results["cap"] = capped(args, cache)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
