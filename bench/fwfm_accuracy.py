"""FwFM defaults against FM defaults (and modern-fm's FwFM, when installed) on the real click logs of
../shared/data (README there), issue 22: test AUC and log loss, best epoch, seconds.

    python bench/fwfm_accuracy.py ../shared/data [--seeds 0] [--sets criteo,avazu,ipinyou,frappe] [--no-modern]
                                  [--params '{"early_stopping": true}'] [--out NAME]

Defaults means `random_state=seed` and, for FwFM, `fields=` the data's fields (FieldEncoder().fields_, the id
ranges of Frappe's README, iPinYou's featindex.txt); the splits are the README's. modern-fm: its FwFMClassifier
with `early_stopping=True` (its own 10% validation split, as issue 22's table) and `random_state=seed`.
Prints a markdown table and writes bench/results/NAME.json; `--report` rewrites bench/ACCURACY.md's FwFM section
from those files (bench/accuracy_defaults.py keeps it too). The data are never copied.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import fastafm
from fastafm.metrics import log_loss, roc_auc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
THREADS = 2


def _encoded(train_df, test_df):
    enc = fastafm.FieldEncoder().fit(train_df)
    return enc.transform(train_df), enc.transform(test_df), enc.fields_


def criteo(root: Path):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(root / "criteo-head" / "criteo.head10k.txt", sep="\t", header=None)
    y = df.pop(0).to_numpy()
    df.columns = [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    a, b = train_test_split(np.arange(len(df)), test_size=0.3, random_state=0, stratify=y)
    Xa, Xb, fields = _encoded(df.iloc[a].reset_index(drop=True), df.iloc[b].reset_index(drop=True))
    return Xa, y[a], Xb, y[b], fields


def avazu(root: Path):
    import pandas as pd

    d = root / "avazu-head"
    train = pd.read_csv(d / "train.csv", dtype=str)
    cols = list(train.columns)
    test = pd.concat([pd.read_csv(d / n, header=None, names=cols, dtype=str) for n in ("dev.csv", "test.csv")],
                     ignore_index=True)
    ya, yb = train.pop("click").astype(int).to_numpy(), test.pop("click").astype(int).to_numpy()
    train, test = train.drop(columns=["id", "hour"]), test.drop(columns=["id", "hour"])
    Xa, Xb, fields = _encoded(train, test)
    return Xa, ya, Xb, yb, fields


def ipinyou(root: Path):
    d = root / "ipinyou"
    ids = {}
    for line in (d / "featindex.txt").read_text().splitlines():
        key, idx = line.split("\t", 1)
        field = key.split(":", 1)[0]
        # "field:value<TAB>id"; a few ids carry trailing bytes of a broken value (line 43: "42<junk>")
        ids[int(re.match(r"\d+", idx).group())] = int(field) if field.isdigit() else 0  # "truncate" (id 0): 0
    n = max(ids) + 1
    fields = fastafm.field_array(ids, n)
    Xa, ya = fastafm.load_libfm(d / "train.fm.txt", n_features=n)
    Xb, yb = fastafm.load_libfm(d / "test.fm.txt", n_features=n)
    return Xa, ya, Xb, yb, fields


FRAPPE_FIELDS = [(0, 957), (957, 5039), (5039, 5046), (5046, 5053), (5053, 5055), (5055, 5058), (5058, 5060),
                 (5060, 5069), (5069, 5149), (5149, 5382)]


def frappe(root: Path):
    d = root / "frappe"
    Xa, ya = fastafm.load_libfm(d / "frappe.validation.libfm", n_features=5382)
    Xb, yb = fastafm.load_libfm(d / "frappe.test.libfm", n_features=5382)
    return Xa, (ya > 0).astype(int), Xb, (yb > 0).astype(int), fastafm.field_array(FRAPPE_FIELDS, 5382)


SETS = {"criteo": criteo, "avazu": avazu, "ipinyou": ipinyou, "frappe": frappe}


def _row(name, model_name, seed, proba, yb, seconds, best=None, extra=None):
    return {"set": name, "model": model_name, "seed": seed, "auc": roc_auc(yb, proba),
            "logloss": log_loss(yb, proba), "best_epoch": best, "seconds": round(seconds, 2), **(extra or {})}


def run_fastafm(name, cls, kw, data, seed):
    Xa, ya, Xb, yb, fields = data
    t0 = time.perf_counter()
    model = cls(random_state=seed, n_threads=THREADS, **kw).fit(Xa, ya)
    seconds = time.perf_counter() - t0
    extra = {"epochs": len(model.history_)}
    return _row(name, cls.__name__, seed, model.predict_proba(Xb)[:, 1], yb, seconds,
                getattr(model, "best_epoch_", None), extra), model


def run_modern(name, data, seed):
    import modern_fm

    Xa, ya, Xb, yb, fields = data
    t0 = time.perf_counter()
    model = modern_fm.FwFMClassifier(early_stopping=True, random_state=seed, n_jobs=THREADS)
    model.fit(sp.csr_matrix(Xa, dtype=np.float32), ya, field_ids=np.asarray(fields, np.int64))
    seconds = time.perf_counter() - t0
    return _row(name, "modern-fm FwFMClassifier (early_stopping=True)", seed,
                model.predict_proba(sp.csr_matrix(Xb, dtype=np.float32))[:, 1], yb, seconds)


SECTION = "## FwFM and FM defaults on the shared click logs (issue 22)"
RUNS = {  # results file -> (what was run, the command)
    "fwfm_accuracy": ("defaults (random_state=seed), and modern-fm's FwFMClassifier(early_stopping=True)",
                      "python bench/fwfm_accuracy.py ../shared/data --seeds 0,1,2"),
}


def section() -> list:
    """The FwFM section of bench/ACCURACY.md, from the recorded results (bench/results/fwfm_accuracy*.json)."""
    from fma_peak import cpu_model

    lines = [SECTION, "",
             "Test AUC / log loss of FMClassifier and FwFMClassifier (fields: FieldEncoder().fields_, Frappe's id "
             "ranges, iPinYou's featindex.txt) on the splits of ../shared/data/README.md, 2 threads, "
             f"CPU: {cpu_model()}. Seconds are wall time on a shared 2-core machine (not a speed measurement).", ""]
    for name, (what, command) in RUNS.items():
        path = HERE / "results" / f"{name}.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())
        groups: dict = {}
        for r in rows:
            groups.setdefault((r["set"], r["model"]), []).append(r)
        n_seeds = max(len(g) for g in groups.values())
        lines += [f"### {what}", "", f"`{command}`" + (f" (seeds {n_seeds}: mean ± half the range)"
                                                       if n_seeds > 1 else ""), "",
                  "| log | model | AUC | log loss | base-rate log loss | best epoch / epochs | seconds |",
                  "|---|---|---:|---:|---:|---:|---:|"]

        def spread(g, key):
            v = np.array([r[key] for r in g], float)
            return f"{v.mean():.4f}" + (f" ± {(v.max() - v.min()) / 2:.4f}" if len(v) > 1 else "")

        for (name, model), g in groups.items():
            ep = "" if g[0].get("epochs") is None else " ".join(f"{r['best_epoch'] or '-'}/{r['epochs']}" for r in g)
            lines.append(f"| {name} | {model} | {spread(g, 'auc')} | {spread(g, 'logloss')} | "
                         f"{g[0]['base_logloss']:.4f} | {ep} | {np.mean([r['seconds'] for r in g]):.1f} |")
        lines.append("")
    return lines


def write_report() -> None:
    """Replace the FwFM section of bench/ACCURACY.md (everything from its heading on) with section()."""
    report = HERE / "ACCURACY.md"
    text = report.read_text()
    head = text.split(SECTION, 1)[0].rstrip("\n")
    report.write_text(head + "\n\n" + "\n".join(section()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="?")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--no-modern", action="store_true")
    ap.add_argument("--params", default="{}", help="JSON keyword arguments for both fastafm estimators")
    ap.add_argument("--out", default="fwfm_accuracy", help="bench/results/NAME.json")
    ap.add_argument("--report", action="store_true", help="only rewrite bench/ACCURACY.md's FwFM section")
    args = ap.parse_args(argv)
    if args.report:
        write_report()
        return 0
    rows = []
    for name in args.sets.split(","):
        data = SETS[name](args.data)
        base = float(np.mean(data[3]))
        base_ll = log_loss(data[3], np.full(len(data[3]), np.mean(data[1])))
        print(f"# {name}: train {data[0].shape}, test {data[2].shape}, {int(data[4].max()) + 1} fields, "
              f"test base rate {base:.4f} (log loss of the train rate {base_ll:.4f})", flush=True)
        for seed in map(int, args.seeds.split(",")):
            extra = json.loads(args.params)
            for cls, kw in ((fastafm.FMClassifier, extra), (fastafm.FwFMClassifier, {"fields": data[4], **extra})):
                r, model = run_fastafm(name, cls, kw, data, seed)
                r["params"] = extra
                r["base_logloss"] = base_ll
                rows.append(r)
                print(json.dumps(r), flush=True)
            if not args.no_modern:
                try:
                    r = run_modern(name, data, seed)
                except ImportError:
                    print("modern-fm is not installed: skipped", flush=True)
                else:
                    r["base_logloss"] = base_ll
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    out = HERE / "results" / f"{args.out}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print()
    print("| log | model | AUC | log loss | best epoch / epochs | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        ep = "" if r.get("epochs") is None else f"{r['best_epoch'] or '-'} / {r['epochs']}"
        params = "" if not r.get("params") else " " + json.dumps(r["params"])
        print(f"| {r['set']} | {r['model']}{params} | {r['auc']:.4f} | {r['logloss']:.4f} | {ep} | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
