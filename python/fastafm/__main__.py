"""Command line entry point: `fastafm demo` (also `python -m fastafm demo`)."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastafm", description="Attentional Factorization Machines on the CPU.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train FM-like pooling and AFM on synthetic planted data and compare them")
    demo.add_argument("--rows", type=int, default=30000, help="number of synthetic rows (default 30000)")
    demo.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    demo.add_argument("--threads", type=int, default=0, help="OpenMP threads, 0 = all cores (default 0)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(n_rows=args.rows, n_epochs=args.epochs, n_threads=args.threads, random_state=args.seed,
                 verbose=0 if args.quiet else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
