"""Raw-log conversion speed and memory (issue 23): MB/s of input text and peak RSS of `fastafm.convert` on a
generated Criteo-format TSV (no header; label, 13 counts, 26 8-hex-digit categoricals; empty fields missing) and
on its double, each conversion in a fresh process. The file goes to /tmp (never commit it).

    python bench/raw_logs.py --mb 100 --threads 2                       # vocabularies (the default encoding)
    python bench/raw_logs.py --mb 100 --threads 2 --hash-buckets 1000000
    python bench/raw_logs.py --mb 100 --threads 2 --gzip                # the same text, .gz
    python bench/raw_logs.py --mb 100 --rounds 3 --compare-with /tmp/old/python   # interleaved with another fastafm

--compare-with DIR: a folder holding another `fastafm` package (e.g. `git archive <commit> python/fastafm | tar -x
-C /tmp/old` plus a built _core*.so copied into /tmp/old/python/fastafm): every round converts with this checkout
and then with that one, each in a fresh process, so both see the same load.

Prints one line per file: rows, MB of text, seconds, MB/s, CPU seconds of the whole process (import included)
and of the conversion alone (figures the machine's load changes less than the wall clock), peak RSS (MiB, the
whole process), the cache's features, the load average.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np

ROW_BYTES = 230  # about a Criteo line


def generate(path: str, mb: float, seed: int = 0) -> int:
    """A Criteo-format file of about `mb` MB; the categoricals drawn Zipf-like from vocabularies of 10 to 2e6
    values (so the distinct count grows with the rows, as in the real log). Returns the rows written."""
    rng = np.random.default_rng(seed)
    target, rows, chunk = int(mb * 1e6), 0, 20_000
    vocab = np.geomspace(10, 2_000_000, 26).astype(np.int64)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt") as fh:
        written = 0
        while written < target:
            cols = [rng.integers(0, 2, chunk).astype(str)]
            for _ in range(13):
                x = rng.geometric(0.05, chunk).astype(str).astype(object)
                x[rng.random(chunk) < 0.2] = ""
                cols.append(x)
            for v in vocab:
                ids = np.minimum((rng.pareto(1.2, chunk) * v / 20).astype(np.int64), v - 1)
                h = np.char.mod("%08x", (ids * 2654435761 + int(v)) % 2**32).astype(object)
                h[rng.random(chunk) < 0.1] = ""
                cols.append(h)
            text = "\n".join("\t".join(r) for r in zip(*cols)) + "\n"
            fh.write(text)
            written += len(text)
            rows += chunk
    return rows


CHILD = r"""
import json, resource, sys, time, os
if sys.argv[5]:  # another fastafm: drop the editable install's finder, put that package first
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, sys.argv[5])
import pyarrow as pa
threads = int(sys.argv[3])
pa.set_cpu_count(threads); pa.set_io_thread_count(threads)
import fastafm
t = time.perf_counter()
u0 = resource.getrusage(resource.RUSAGE_SELF)
kw = json.loads(sys.argv[4])
c = fastafm.convert(sys.argv[1], sys.argv[2], label=0, numeric=list(range(1, 14)), header=False, progress=False, **kw)
seconds = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rows": c.n_rows, "features": c.n_features, "seconds": seconds, "cpu": u.ru_utime + u.ru_stime,
                  "rss_mib": u.ru_maxrss / 1024,
                  "cpu_convert": u.ru_utime + u.ru_stime - u0.ru_utime - u0.ru_stime, "package": os.path.dirname(fastafm.__file__)}))
"""


def measure(path: str, threads: int, options: dict, text_bytes: int, other: str = "") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-c", CHILD, path, path + ".cache", str(threads), json.dumps(options), other]
    out = subprocess.run(command,
                         check=True, capture_output=True, text=True, env=env).stdout
    os.unlink(path + ".cache")
    result = json.loads(out.strip().splitlines()[-1])
    result["mb"] = text_bytes / 1e6
    result["mb_per_s"] = result["mb"] / result["seconds"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hash-buckets", type=int, default=None)
    ap.add_argument("--gzip", action="store_true")
    ap.add_argument("--folder", default="/tmp")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--compare-with", default="", help="a folder holding another fastafm package")
    args = ap.parse_args()
    options = {} if args.hash_buckets is None else {"hash_buckets": args.hash_buckets}
    for scale in (1, 2):
        path = os.path.join(args.folder, f"criteo-{int(args.mb * scale)}mb.txt")
        if not os.path.exists(path):
            t = time.perf_counter()
            generate(path, args.mb * scale)
            print(f"generated {path} in {time.perf_counter() - t:.0f} s", flush=True)
        text_bytes = os.path.getsize(path)
        if args.gzip:
            gz = path + ".gz"
            if not os.path.exists(gz):
                with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
                    dst.write(src.read())
            path = gz
        packages = [""] + ([args.compare_with] if args.compare_with else [])
        for _ in range(args.rounds):
            for other in packages:
                r = measure(path, args.threads, options, text_bytes, other)
                print(f"{'other ' if other else ''}{os.path.basename(path)}: {r['rows']} rows, {r['mb']:.1f} MB of "
                      f"text, {r['seconds']:.2f} s, {r['mb_per_s']:.1f} MB/s, {r['cpu']:.2f} CPU s (conversion "
                      f"{r['cpu_convert']:.2f}: {r['mb'] / r['cpu_convert']:.1f} MB per CPU s), peak RSS "
                      f"{r['rss_mib']:.0f} MiB, {r['features']} features ({options or 'vocabularies'}, "
                      f"{args.threads} threads; load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
