"""Writes the seed corpus of the fuzzers (run from the repository root; the files are committed):
fuzz/corpus/libfm/*  small libFM files, valid and malformed (the cases of tests/test_libfm*.py)
fuzz/corpus/libffm/* small libFFM files, valid and malformed
fuzz/corpus/model/*  small model files: regressor, classifier (string and int labels), with an eval history,
                     uniform pooling, SGD, as format version 3 (*_v3.afm) and a version 1 file derived from
                     the regressor. regressor.afm, classifier_*.afm and uniform_sgd.afm are version 2 files
                     written by fastafm before format 3; they are kept as seeds and no longer rewritten."""
from __future__ import annotations

import io
import json
import os
import sys
import zipfile

import numpy as np

import fastafm

ROOT = os.path.dirname(os.path.abspath(__file__))

LIBFM = {
    "basic": b"1 0:1 3:2.5\n-1 1:0.5\n0 2:-3 4:1e2\n",
    "crlf": b"1 0:1 3:2.5\r\n-1 1:0.5\r\n",
    "blanks_comments": b"# header\n\n1\t0:1 \t2:2   # c 5:5\n   \n-1 1:2#glued\n0# label only\n#\n",
    "no_final_newline": b"1 0:1\n-1 1:2",
    "labels": b"-1 0:1\n+1 0:1\n1.0 0:1\n3.5e-1 0:1\n.5 0:1\n7. 0:1\n1E2 0:1\n",
    "values": b"1 0:0.1 1:-2.5 2:3.5e-1 3:1e-3 4:-7E+2 5:123456789 6:0.333333333333333333333 7:0 8:+4\n",
    "repeats": b"1 3:1 3:2 1:5\n-1 0:1\n",
    "only_label": b"1 0:1\n-1\n0 \t\n1 2:3\n",
    "big_id": b"1 2147483647:1 0:2 007:1\n",
    "boundaries": b"1 0:3.4028234e38 1:1e-45 2:1e-50 3:-0 4:9007199254740993\n",
    "bad_label": b"1 0:1\nabc 1:1\n",
    "bad_token": b"1 0:1\n1 3 4:1\n",
    "empty_value": b"1 3:\n",
    "empty_id": b"1 :1\n",
    "negative_id": b"1 -3:1\n",
    "overflow_id": b"1 2147483648:1\n",
    "bad_value": b"1 3:1.0abc 4:nan 5:inf 6:0x10\n",
    "overflow_value": b"1 3:1e39\n",
    "qid": b"1 qid:2 3:1\n",
    "nul": b"1 3:1 # a\0b\n",
    "lone_cr": b"1 3:1\r4:1\n",
    "bom": b"\xef\xbb\xbf1 0:1\n",
    "non_utf8": b"# caf\xe9\n1 0:1\xff\n",
}

LIBFFM = {
    "basic": b"1 0:0:1 1:3:2.5\n-1 0:1:0.5 2:5:1\n0 1:4:-3\n",
    "crlf_comments": b"# h\r\n1 0:0:1\t1:2:1 # c 5:5:5\r\n\n-1\r\n",
    "repeats": b"1 0:3:1 0:3:2 1:1:5\n",
    "limits": b"1 65535:2147483647:1 0:0:3.4028234e38\n",
    "wide": b"1 65535:16777215:1 0:0:1\n",
    "two_fields": b"1 0:0:1\n0 1:0:1\n",
    "field_beyond": b"1 65536:0:1\n",
    "libfm_token": b"1 3:1\n",
    "extra_colon": b"1 0:3:1:2\n",
    "negative_field": b"1 -1:3:1\n",
    "empty_field": b"1 :3:1\n",
    "bad_value": b"1 0:3:nan\n",
}


def model_files():
    X, y, _ = fastafm.make_planted(n_rows=120, n_fields=3, cardinality=3, planted_pairs=((0, 1),), random_state=0)
    small = dict(embedding_dim=2, attention_dim=2, n_threads=1, random_state=0)
    yield "regressor", fastafm.AFMRegressor(n_epochs=2, **small).fit(X, y, eval_set=(X, y))
    yield "classifier_str", fastafm.AFMClassifier(n_epochs=1, **small).fit(X, np.where(y > 0, "yes", "no"))
    yield "classifier_int", fastafm.AFMClassifier(n_epochs=1, **small).fit(X, np.where(y > 0, 1, -1))
    yield "uniform_sgd", fastafm.AFMRegressor(n_epochs=1, attention=False, optimizer="sgd", **small).fit(X, y)


def main() -> None:
    os.makedirs(os.path.join(ROOT, "corpus", "libfm"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "corpus", "model"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "corpus", "libffm"), exist_ok=True)
    for name, data in LIBFFM.items():
        with open(os.path.join(ROOT, "corpus", "libffm", name + ".ffm"), "wb") as fh:
            fh.write(data)
    for name, data in LIBFM.items():
        with open(os.path.join(ROOT, "corpus", "libfm", name + ".libfm"), "wb") as fh:
            fh.write(data)
    for name, model in model_files():
        model.save(os.path.join(ROOT, "corpus", "model", name + "_v3.afm"))
    # A version 1 file, as fastafm 0.1 wrote it (np.savez, no checksums, one accumulator per parameter).
    with zipfile.ZipFile(os.path.join(ROOT, "corpus", "model", "regressor_v3.afm")) as zf:
        members = {i.filename[:-4]: np.load(io.BytesIO(zf.read(i))) for i in zf.infolist()}
    members = {key.replace("slot.G.", "accum."): a for key, a in members.items()}
    meta = json.loads(members.pop("meta").tobytes())
    meta["version"] = 1
    del meta["sha256"], meta["optimizer_slots"]
    with open(os.path.join(ROOT, "corpus", "model", "version1.afm"), "wb") as fh:
        np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **members)
    print("wrote", len(LIBFM), "libfm files,", len(LIBFFM), "libffm files and", len(os.listdir(os.path.join(ROOT, "corpus", "model"))),
          "model files", file=sys.stderr)


if __name__ == "__main__":
    main()
