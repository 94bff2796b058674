"""Measure this CPU's float32 FMA peak per vector ISA and thread count (the yardstick of the benchmarks).

Compiles ``fma_peak.cpp`` with ``g++ -O2 -fopenmp`` (no ``-march``: every kernel carries its own target
attribute and runs only where ``__builtin_cpu_supports`` allows) into a temporary directory, runs it, and
returns / prints GFLOP/s per ISA (avx512, avx2fma, fma128, sse, scalar) for 1 thread, 2 threads and all
cores, with the CPU model and the clock the cores actually ran at (a chain of 1-cycle integer adds).

    python bench/fma_peak.py                          # 1, 2 and all threads; prints a table
    python bench/fma_peak.py --threads 1,2,4,8,16 --json .benchmarks/fma_peak.json

Library use (the benchmark suite): ``measure()``, ``peak_gflops(result, threads)``, ``load_or_measure(path)``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "fma_peak.cpp"
ISAS = ("avx512", "avx2fma", "fma128", "sse", "scalar")
#: ISAs a compiled kernel may use (scalar is a reference point, not a kernel path).
VECTOR_ISAS = ("avx512", "avx2fma", "fma128", "sse")
FORMAT = "fastafm-fma-peak/1"


def n_cores() -> int:
    """CPUs this process may run on (the affinity mask, else os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (every figure in bench/ names the CPU that produced it)."""
    return cpu_info()["model_name"]


def cpu_info() -> dict:
    """CPU model, nominal clock, flags of interest and core count, from /proc/cpuinfo and lscpu."""
    info = {"machine": platform.machine(), "cores": n_cores(), "cpu_count": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # first processor's entry
    info["model_name"] = fields.get("model name", platform.processor() or "unknown")
    info["vendor"] = fields.get("vendor_id")
    info["cpu_family"] = fields.get("cpu family")
    info["model"] = fields.get("model")
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, flags=re.M)]
    info["cpuinfo_mhz"] = round(sum(mhz) / len(mhz), 1) if mhz else None
    flags = fields.get("flags", "").split()
    info["flags"] = sorted(f for f in flags if re.match(r"^(avx|fma|sse|amx)", f))
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for key in ("Model name", "CPU max MHz", "CPU min MHz", "Thread(s) per core", "Core(s) per socket",
                    "Socket(s)", "L1d cache", "L2 cache", "L3 cache", "Hypervisor vendor"):
            m = re.search(rf"^{re.escape(key)}:\s*(.+)$", out, flags=re.M)
            if m:
                info["lscpu_" + key.lower().replace(" ", "_").replace("(s)", "s")] = m.group(1).strip()
    return info


def compile_binary(workdir: Path, cxx: str | None = None) -> Path:
    """Compile fma_peak.cpp into `workdir` and return the executable's path."""
    cxx = cxx or os.environ.get("CXX") or "g++"
    exe = workdir / "fma_peak"
    cmd = [cxx, "-O2", "-fopenmp", "-o", str(exe), str(SOURCE)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"compiling the FMA peak benchmark failed ({' '.join(cmd)}):\n{res.stderr}")
    return exe


def _parse(output: str) -> dict:
    available, clock, peaks, fpc = {}, {}, {}, {}
    procs = None
    for line in output.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "procs":
            procs = int(parts[1])
        elif parts[0] == "isa":
            available[parts[1]] = parts[2] == "1"
        elif parts[0] == "clock":
            clock[parts[1]] = float(parts[2])
        elif parts[0] == "peak":
            peaks.setdefault(parts[1], {})[parts[2]] = float(parts[3])
            fpc.setdefault(parts[1], {})[parts[2]] = float(parts[4])
    return {"omp_procs": procs, "isa_available": available, "clock_ghz": clock, "gflops": peaks,
            "flops_per_cycle": fpc}


def measure(threads=None, isas=None, min_time: float = 0.2, repeats: int = 5, cxx: str | None = None,
            bind: bool = False) -> dict:
    """Compile and run the FMA benchmark; return a JSON-able dict.

    Parameters
    ----------
    threads : iterable of int, optional
        Thread counts to measure (default 1, 2 and all cores; counts above the core count are still run).
    isas : iterable of str, optional
        Subset of ISAS (default every ISA the CPU supports).
    min_time : float
        Seconds per timed trial; the best of `repeats` trials is kept.
    bind : bool
        Pin threads to cores (OMP_PROC_BIND=close, OMP_PLACES=cores).

    Returns
    -------
    dict with keys format, cpu (cpu_info()), gflops {isa: {threads: GFLOP/s}}, clock_ghz {threads: GHz per
    thread}, flops_per_cycle {isa: {threads: per thread per cycle}}, idle_estimate_gflops (flops_per_cycle x
    fastest clock x threads: what an idle machine should give), best {threads: {isa, gflops}},
    isa_available, settings.
    """
    cores = n_cores()
    threads = sorted({int(t) for t in (threads or (1, 2, cores)) if int(t) >= 1})
    args = ["--threads", ",".join(map(str, threads)), "--min-time", str(min_time), "--repeats", str(repeats)]
    if isas:
        args += ["--isa", ",".join(isas)]
    env = dict(os.environ)
    if bind:
        env.update(OMP_PROC_BIND="close", OMP_PLACES="cores")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastafm-fma-") as tmp:
        exe = compile_binary(Path(tmp), cxx)
        res = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"fma_peak failed ({res.returncode}):\n{res.stderr}")
    out = _parse(res.stdout)
    # Robust to load: FLOPs/cycle/thread (median of FMA trials each paired with a clock trial) times the
    # fastest clock seen times threads (at most the cores) estimates what an idle machine gives.
    fastest = max(out["clock_ghz"].values(), default=0.0)
    out["idle_estimate_gflops"] = {
        isa: {t: round(f * fastest * min(int(t), cores), 1) for t, f in per.items()}
        for isa, per in out["flops_per_cycle"].items()
    }
    out["best"] = {}
    for t in map(str, threads):
        cands = [(per[t], isa) for isa, per in out["gflops"].items() if isa in VECTOR_ISAS and t in per]
        if cands:
            g, isa = max(cands)
            out["best"][t] = {"isa": isa, "gflops": g}
    out.update(
        format=FORMAT,
        cpu=cpu_info(),
        settings={"threads": threads, "min_time": min_time, "repeats": repeats, "bind": bind,
                  "compiler": cxx or os.environ.get("CXX") or "g++", "flags": "-O2 -fopenmp",
                  "seconds": round(time.perf_counter() - start, 2),
                  "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    )
    return out


def peak_gflops(result: dict, threads: int, isa: str | None = None):
    """(GFLOP/s, isa, how) of the measured peak for `threads` threads.

    Uses the best vector ISA (or `isa`) measured at that thread count; for a count not measured, scales the
    largest measured count below it per thread (threads beyond the core count add nothing) and says so in
    `how` ("measured" or "scaled from N").
    """
    key = str(int(threads))
    per_isa = result["gflops"]
    names = [isa] if isa else [n for n in VECTOR_ISAS if n in per_isa]
    best = None
    for name in names:
        per = per_isa.get(name, {})
        if key in per:
            cand = (per[key], name, "measured")
        else:
            below = [int(t) for t in per if int(t) <= int(threads)]
            if not below:
                continue
            base = max(below)
            cores = result.get("cpu", {}).get("cores") or int(threads)
            cand = (per[str(base)] * min(int(threads), cores) / min(base, cores), name, f"scaled from {base}")
        if best is None or cand[0] > best[0]:
            best = cand
    if best is None:
        raise KeyError(f"no peak measured for {threads} threads")
    return best


def load_or_measure(path, threads=None, remeasure: bool = False, **kwargs) -> dict:
    """The cached result in `path` when it was measured on this CPU for these thread counts, else measure and
    write it (the benchmark suite measures the peak once per machine)."""
    path = Path(path)
    cores = n_cores()
    want = sorted({int(t) for t in (threads or (1, 2, cores)) if int(t) >= 1})
    if path.exists() and not remeasure:
        try:
            cached = json.loads(path.read_text())
            same_cpu = (cached.get("format") == FORMAT
                        and cached["cpu"].get("model_name") == cpu_info()["model_name"]
                        and cached["cpu"].get("cores") == cores)
            if same_cpu and all(str(t) in cached["clock_ghz"] for t in want):
                return cached
        except (ValueError, KeyError, TypeError):
            pass
    result = measure(threads=want, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def format_table(result: dict) -> str:
    """Markdown table: one row per ISA, GFLOP/s (and FLOPs/cycle/core) per thread count."""
    threads = sorted({int(t) for per in result["gflops"].values() for t in per})
    cpu = result["cpu"]
    lines = [
        f"CPU: {cpu.get('model_name')} ({cpu.get('cores')} cores available; /proc/cpuinfo {cpu.get('cpuinfo_mhz')} MHz"
        + (f", max {cpu['lscpu_cpu_max_mhz']} MHz" if cpu.get("lscpu_cpu_max_mhz") else "")
        + (f", hypervisor {cpu['lscpu_hypervisor_vendor']}" if cpu.get("lscpu_hypervisor_vendor") else "") + ")",
        "ISA available: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in result["isa_available"].items()),
        "measured clock (GHz per thread): "
        + ", ".join(f"{t} thr {g:.2f}" for t, g in sorted(result["clock_ghz"].items(), key=lambda x: int(x[0]))),
        "",
        "| ISA | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads) + " |",
        "|---|" + "---:|" * len(threads),
    ]
    for isa in ISAS:
        per = result["gflops"].get(isa)
        if not per:
            continue
        cells = []
        for t in threads:
            g = per.get(str(t))
            fpc = result.get("flops_per_cycle", {}).get(isa, {}).get(str(t))
            est = result.get("idle_estimate_gflops", {}).get(isa, {}).get(str(t))
            cells.append("" if g is None else f"{g:.1f} GFLOP/s" + (f" ({fpc:.1f}/cyc/thr" if fpc else "")
                         + (f", idle est. {est:.0f})" if est else ")" if fpc else ""))
        lines.append(f"| {isa} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", help="comma-separated thread counts (default 1,2,all cores)")
    ap.add_argument("--isa", help=f"comma-separated subset of {','.join(ISAS)}")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per trial (default 0.2)")
    ap.add_argument("--repeats", type=int, default=5, help="trials per measurement, best kept (default 5)")
    ap.add_argument("--bind", action="store_true", help="pin threads (OMP_PROC_BIND=close, OMP_PLACES=cores)")
    ap.add_argument("--cxx", help="C++ compiler (default $CXX or g++)")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    isas = args.isa.split(",") if args.isa else None
    result = measure(threads=threads, isas=isas, min_time=args.min_time, repeats=args.repeats, cxx=args.cxx,
                     bind=args.bind)
    print(format_table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
