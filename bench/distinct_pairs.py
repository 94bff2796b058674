"""How much of a block's or a batch's pair work repeats (issue 13: "measure computing distinct feature pairs of
a batch once"): the fraction of (i, j, x_i, x_j) pair products that are distinct among the pairs of n random
training rows. The attention pre-activations depend only on that key, so this is the share of the GEMM work
left if each distinct pair were computed once.

    python bench/distinct_pairs.py --frappe ../shared/data/frappe --ml100k DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tuning_data  # noqa: E402


def distinct_fraction(X, n_rows: int, rng: np.random.Generator, draws: int) -> float:
    """Mean over `draws` random sets of n_rows rows of (distinct pair keys) / (pairs)."""
    out = []
    for _ in range(draws):
        keys: set = set()
        total = 0
        for r in rng.choice(X.shape[0], n_rows, replace=False):
            lo, hi = X.indptr[r], X.indptr[r + 1]
            idx, val = X.indices[lo:hi], X.data[lo:hi]
            for i in range(len(idx)):
                for j in range(i + 1, len(idx)):
                    keys.add((idx[i], idx[j], val[i], val[j]))
                    total += 1
        out.append(len(keys) / max(total, 1))
    return float(np.mean(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frappe")
    ap.add_argument("--ml100k")
    ap.add_argument("--rows", type=int, nargs="+", default=[5, 22, 128, 1024],
                    help="rows per set: 5 and 22 are a 256 KiB block of Criteo-shaped k = 16 and Frappe-shaped "
                         "k = 64 rows; 128 the default batch")
    ap.add_argument("--draws", type=int, default=10)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| set | " + " | ".join(f"{n} rows" for n in args.rows) + " |")
    print("|---|" + "---:|" * len(args.rows))
    for data in tuning_data.load_all(args.frappe, args.ml100k):
        if data.name.endswith("-reg"):
            continue  # the same rows as the classification set
        X = data.train[0].tocsr()
        cells = [f"{distinct_fraction(X, n, rng, args.draws):.2f}" for n in args.rows]
        print(f"| {data.name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
