"""Hostile inputs (issue 15): files that are not regular files, destinations that are the source, labels that
slip past the checks, forged cache headers, and errors that must stay one clear line.

Every case that could hang or grow memory without bound if its check were missing runs in a child process
with a capped address space and a timeout, so a regression fails the test instead of stalling the suite.
"""
from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest

import fastafm
from fastafm import _core
from fastafm.data import files as _files
from fastafm.data import libfm as fio
from fastafm.objectives.labels import MixedLabelsError, eval_targets
from fastafm.data.cache import HEADER_BYTES, CacheFile
from fastafm.data.convert import convert
from fastafm.cli import main

TINY = dict(embedding_dim=2, attention_dim=2, n_epochs=1, n_threads=1, random_state=0)
CLI_TINY = ["--epochs", "1", "--embedding-dim", "2", "--attention-dim", "2", "--threads", "1"]
# A bound on a child process, far above what its work takes anywhere (a second or two), and reached only when
# a check is missing and the child hangs on a pipe or reads a device without end.
CHILD_TIMEOUT = 120


def libfm_text(n_rows=3000, seed=0, classes=(0, 1)) -> bytes:
    rng = np.random.default_rng(seed)
    lines = [f"{classes[int(rng.integers(2))]} {int(rng.integers(50))}:1 {50 + int(rng.integers(50))}:0.5"
             for _ in range(n_rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "train.libfm"
    path.write_bytes(libfm_text())
    return str(path)


def child(code: str, *, stdin: bytes | None = None, args=()):
    """Run python code (or `-m fastafm` args) in a child with 2 GiB of address space to grow into and a timeout."""
    # 2 GiB of address space beyond what the child has mapped at its start (under ASan that is terabytes of
    # shadow memory, so the cap cannot be absolute)
    cap = ("import os, resource\n"
           "if os.path.exists('/proc/self/statm'):\n"
           "    with open('/proc/self/statm') as fh:\n"
           "        size = int(fh.read().split()[0]) * os.sysconf('SC_PAGE_SIZE') + (2 << 30)\n"
           "    resource.setrlimit(resource.RLIMIT_AS, (size, size))\n")
    argv = [sys.executable, "-c", cap + code] if code else [
        sys.executable, "-c", cap + "import sys; from fastafm.cli import main; sys.exit(main(sys.argv[1:]))", *args]
    env = dict(os.environ)
    env.pop("FASTAFM_SKIP_MEMORY_CHECK", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=CHILD_TIMEOUT,  # timing: hang guard only
                          env=env)


def read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastafm: error: ") and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------ non-regular files
CHAR_DEVICE_CASES = {
    "load": "fastafm.load('/dev/zero')",
    "load_libfm": "fastafm.load_libfm('/dev/zero')",
    "load_libffm": "fastafm.load_libffm('/dev/zero')",
    "parse_libffm": "fastafm._core.parse_libfm_file('/dev/zero', format='libffm')",
    "parse_libfm_file": "fastafm._core.parse_libfm_file('/dev/zero')",
    "CacheFile": "fastafm.CacheFile('/dev/zero')",
    "convert": "fastafm.convert('/dev/zero', DEST)",
}


def test_a_character_device_is_refused_by_every_reader(tmp_path):
    dest = str(tmp_path / "out.cache")
    code = "import json, fastafm, fastafm._core\nDEST = %r\nout = {}\n" % dest
    for name, call in CHAR_DEVICE_CASES.items():
        code += (f"try:\n    {call}\n    out[{name!r}] = 'accepted'\n"
                 f"except BaseException as exc:\n    out[{name!r}] = [type(exc).__name__, str(exc)]\n")
    code += "print(json.dumps(out))\n"
    res = child(code)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    for name, (kind, message) in out.items():
        assert kind == "ValueError", (name, kind, message)
        assert "/dev/zero" in message and "character device" in message, (name, message)
    assert not os.path.exists(dest)


def test_the_cli_refuses_a_character_device_as_train_and_as_model(tmp_path, text_file):
    res = child("", args=["train", "/dev/zero", "--model", str(tmp_path / "m.afm"), *CLI_TINY])
    assert res.returncode == 3
    assert "character device" in one_error_line(res.stderr.decode())
    res = child("", args=["predict", text_file, "--model", "/dev/zero"])
    assert res.returncode == 4
    assert "character device" in one_error_line(res.stderr.decode())


def test_model_and_cache_on_a_fifo_are_refused_without_blocking(tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    code = ("import json, fastafm\nout = []\n"
            f"for f in (fastafm.load, fastafm.CacheFile):\n"
            f"    try:\n        f({fifo!r}); out.append('accepted')\n"
            f"    except ValueError as exc:\n        out.append(str(exc))\n"
            "print(json.dumps(out))\n")
    res = child(code)  # without the check, open() of a FIFO nobody writes to blocks until the timeout
    assert res.returncode == 0, res.stderr.decode()
    for message in json.loads(res.stdout):
        assert fifo in message and "pipe" in message and "not a regular file" in message, message


class FifoWriter(threading.Thread):
    """Writes `data` into the FIFO at `path` once a reader opens it, then closes it."""

    def __init__(self, path: str, data: bytes):
        super().__init__(daemon=True)
        self.path, self.data = path, data

    def run(self):
        try:
            with open(self.path, "wb") as fh:
                fh.write(self.data)
        except OSError:  # the reader went away (or release() opened the FIFO to end a blocked open)
            pass

    def release(self):
        """Unblock the writer's open() if no reader ever came (it then writes into a pipe nobody reads)."""
        if self.is_alive():
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        self.join(CHILD_TIMEOUT)  # timing: hang guard only


def test_cli_trains_from_a_fifo_reading_it_once(tmp_path):
    fifo = str(tmp_path / "train.fifo")
    os.mkfifo(fifo)
    data = libfm_text(3000)
    writer = FifoWriter(fifo, data)
    writer.start()
    try:
        res = child("", args=["train", fifo, "--model", str(tmp_path / "m.afm"), *CLI_TINY])
    finally:
        writer.release()
    assert res.returncode == 0, res.stderr.decode()
    assert f"read {fifo}: 3000 rows" in res.stdout.decode()


def test_cli_reads_a_pipe_on_stdin_whole(tmp_path):
    # `fastafm train <(zcat f.gz)` is a pipe like this one: the sniff for a cache's magic bytes must not lose
    # the start of the stream (it lost the first 4 KiB when TRAIN was opened twice)
    data = libfm_text(3000)
    assert len(data) > 3 * 4096
    res = child("", stdin=data, args=["train", "/dev/stdin", "--model", str(tmp_path / "m.afm"), *CLI_TINY])
    assert res.returncode == 0, res.stderr.decode()
    assert "read /dev/stdin: 3000 rows" in res.stdout.decode()
    cache = str(tmp_path / "piped.cache")
    res = child("", stdin=data, args=["train", "/dev/stdin", "--cache", cache, "--model", str(tmp_path / "m2.afm"),
                                      *CLI_TINY])
    assert res.returncode == 0, res.stderr.decode()
    assert CacheFile(cache).n_rows == 3000
    res = child("", stdin=data, args=["train", "/dev/stdin", "--cache", "--model", str(tmp_path / "m3.afm")])
    assert res.returncode == 2 and "needs a CACHE path" in one_error_line(res.stderr.decode())
    with open(cache, "rb") as fh:
        cache_bytes = fh.read()
    res = child("", stdin=cache_bytes, args=["train", "/dev/stdin", "--model", str(tmp_path / "m4.afm")])
    assert res.returncode == 3 and "must be a regular file" in one_error_line(res.stderr.decode())


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("gzip") is None, reason="needs bash and gzip")
def test_cli_trains_from_a_process_substitution_of_a_gzip_file(tmp_path):
    data = libfm_text(3000)
    gz = tmp_path / "train.libfm.gz"
    gz.write_bytes(gzip.compress(data))
    cmd = (f"{shlex.quote(sys.executable)} -m fastafm train <(gzip -dc {shlex.quote(str(gz))}) "
           f"--model {shlex.quote(str(tmp_path / 'm.afm'))} {' '.join(CLI_TINY)}")
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, timeout=CHILD_TIMEOUT)  # timing: hang guard only
    assert res.returncode == 0, res.stderr.decode()
    assert ": 3000 rows" in res.stdout.decode()  # every row, the first 4 KiB included


def pipe_path(data: bytes):
    """A /dev/fd path of a pipe a thread fills with `data`; returns (path, read fd to close, thread)."""
    r, w = os.pipe()

    def fill():
        try:
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
        except OSError:
            pass

    t = threading.Thread(target=fill, daemon=True)
    t.start()
    return f"/dev/fd/{r}", r, t


def test_load_libfm_from_a_pipe_equals_the_file(text_file):
    with open(text_file, "rb") as fh:
        data = fh.read()
    path, r, t = pipe_path(data)
    try:
        X, y = fastafm.load_libfm(path)
    finally:
        os.close(r)
        t.join(CHILD_TIMEOUT)  # timing: hang guard only
    X0, y0 = fastafm.load_libfm(text_file)
    assert (X != X0).nnz == 0 and X.shape == X0.shape
    np.testing.assert_array_equal(y, y0)


def test_a_pipe_is_parsed_in_chunks_with_exact_line_numbers(monkeypatch):
    data = libfm_text(200) + b"1 3:x\n"
    import io as pyio

    with pytest.raises(ValueError, match=r"<s>:201: value 'x'"):
        fio.parse_stream(pyio.BytesIO(data), "<s>", chunk_bytes=100)
    text = libfm_text(200)
    X0, y0 = fio.assemble("<s>", _core.parse_libfm_buffer(text, "<s>", 1), None)
    X1, y1 = fio.load_libfm_stream(pyio.BytesIO(text[7:]), "<s>", prefix=text[:7])  # a sniffed prefix
    assert (X0 != X1).nnz == 0
    np.testing.assert_array_equal(y0, y1)


def test_an_endless_line_on_a_pipe_ends_the_read(monkeypatch):
    import io as pyio

    with pytest.raises(ValueError, match="NUL byte"):  # a stream of zeros: the first chunk tells
        fio.parse_stream(pyio.BytesIO(bytes(1 << 20)), "<zeros>", chunk_bytes=4096)
    monkeypatch.setattr(fio, "MAX_LINE_BYTES", 10000)
    with pytest.raises(ValueError, match="longer than 10000 bytes"):
        fio.parse_stream(pyio.BytesIO(b"1" + b" 1:1" * 100000), "<long>", chunk_bytes=4096)


def test_a_pipe_that_outgrows_memory_is_a_memory_error_naming_it(monkeypatch):
    import io as pyio

    from fastafm.data import validation as _validation

    monkeypatch.delenv("FASTAFM_SKIP_MEMORY_CHECK", raising=False)
    monkeypatch.setattr(_validation, "available_memory", lambda: 64 << 10)
    monkeypatch.setattr(_validation, "SMALL_REQUEST_BYTES", 0, raising=False)  # check requests of any size
    with pytest.raises(MemoryError, match="reading <pipe>"):
        fio.parse_stream(pyio.BytesIO(libfm_text(3000)), "<pipe>", chunk_bytes=8192)


def test_convert_reads_a_pipe_once(tmp_path, text_file):
    with open(text_file, "rb") as fh:
        data = fh.read()
    path, r, t = pipe_path(data)
    try:
        cache = convert(path, tmp_path / "p.cache", chunk_bytes=1000)
    finally:
        os.close(r)
        t.join(CHILD_TIMEOUT)  # timing: hang guard only
    X, y = cache.read_rows(0, cache.n_rows)
    X0, y0 = fastafm.load_libfm(text_file)
    assert (X != X0).nnz == 0
    np.testing.assert_array_equal(y, y0)


def test_open_input_policy(tmp_path):
    assert _files.input_kind(__file__, "x", pipes=False) == _files.REGULAR
    with pytest.raises(IsADirectoryError):
        _files.input_kind(str(tmp_path), "x", pipes=True)
    with pytest.raises(FileNotFoundError):
        _files.input_kind(str(tmp_path / "missing"), "x", pipes=True)
    fifo = str(tmp_path / "f")
    os.mkfifo(fifo)
    assert _files.input_kind(fifo, "x", pipes=True) == _files.PIPE
    with pytest.raises(ValueError, match="pipe"):
        _files.input_kind(fifo, "x", pipes=False)


# ------------------------------------------------------------------------------------ destroying a source
def test_convert_refuses_to_overwrite_its_source(text_file, tmp_path):
    before = read(text_file)
    with pytest.raises(ValueError, match="is the source file"):
        convert(text_file, text_file)
    link = str(tmp_path / "hard.link")
    os.link(text_file, link)
    with pytest.raises(ValueError, match="is the source file"):
        convert(text_file, link)
    assert read(text_file) == before


def test_cli_refuses_to_overwrite_its_inputs(text_file, tmp_path, capsys):
    before = read(text_file)
    model = str(tmp_path / "m.afm")
    for argv, code in ((["train", text_file, "--cache", text_file, "--model", model], 3),
                       (["convert", text_file, text_file], 3),
                       (["train", text_file, "--model", text_file], 4)):
        assert main([*argv, "--quiet"]) == code, argv
        assert "destroy" in one_error_line(capsys.readouterr().err)
        assert read(text_file) == before
    assert main(["train", text_file, "--model", model, "--quiet", *CLI_TINY]) == 0
    model_bytes = read(model)
    for out in (text_file, model):
        assert main(["predict", text_file, "--model", model, "--out", out, "--quiet"]) == 3
        assert "destroy" in one_error_line(capsys.readouterr().err)
    assert read(text_file) == before and read(model) == model_bytes


# ------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("y, message", [
    ([1, "a"] * 5, "mixes number and string labels"),
    (["a", "b"] * 4 + ["a", float("nan")], "missing labels"),
    ([0, 1] * 4 + [1, float("nan")], "missing labels"),
    (["a", b"a"] * 5, "mixes bytes and string labels"),
    (np.array([1, "a"] * 5, dtype=object), "mixes number and string labels"),
    ([[1], ["a"]] * 5, "mixes number and string labels"),
])
def test_classifier_refuses_labels_of_mixed_types_or_missing(y, message):
    X = np.eye(10)
    with pytest.raises(ValueError, match=message):
        fastafm.AFMClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match=message):
        fastafm.AFMClassifier(**TINY).partial_fit(X, y, classes=[0, 1])


def test_mixed_labels_error_is_also_the_former_type_error():
    with pytest.raises(TypeError):
        fastafm.AFMClassifier(**TINY).fit(np.eye(4), [1, "a", 1, "a"])
    assert issubclass(MixedLabelsError, ValueError)


def test_string_labels_of_one_type_still_train():
    model = fastafm.AFMClassifier(**TINY).fit(np.eye(4), ["no", "yes", "no", "yes"])
    assert model.classes_.tolist() == ["no", "yes"]


def test_eval_targets_refuses_unknown_labels_and_accepts_string_labels():
    classes = np.array(["no", "yes"])
    assert eval_targets(["yes", "no", "no"], 3, classes).tolist() == ["yes", "no", "no"]
    with pytest.raises(ValueError, match=r"eval_set y contains labels not seen in fit: \['maybe'\]"):
        eval_targets(["yes", "maybe", "no"], 3, classes)
    with pytest.raises(ValueError, match="not seen in fit"):
        eval_targets([1, 0, 1], 3, classes)
    with pytest.raises(ValueError, match="not seen in fit"):
        eval_targets([0, 1, 2], 3, np.array([0, 1]))
    with pytest.raises(ValueError, match="missing labels"):
        eval_targets(["yes", None, "no"], 3, classes)
    with pytest.raises(ValueError, match="eval_set y has 2 values"):
        eval_targets(["yes", "no"], 3, classes)
    np.testing.assert_array_equal(eval_targets([0.5, 2.0], 2, None), np.array([0.5, 2.0], np.float32))


# ------------------------------------------------------------------------------------ forged caches
def forge_header(path, **fields):
    """Rewrite fields of a cache's fixed header and re-sign its checksum (a forged, self-consistent header)."""
    from fastafm.data import cache as cmod

    with open(path, "r+b") as fh:
        head = bytearray(fh.read(HEADER_BYTES))
        names = ("magic", "version", "header_size", "dtypes", "n_rows", "n_features", "nnz", "max_row_nnz",
                 "label_min", "label_max", "n_label_values")
        values = dict(zip(names, cmod.FIXED.unpack_from(head, 0)))
        values.update(fields)
        cmod.FIXED.pack_into(head, 0, *(values[n] for n in names))
        head[HEADER_BYTES - 4:] = struct.pack("<I", zlib.crc32(bytes(head[:HEADER_BYTES - 4])))
        fh.seek(0)
        fh.write(head)


@pytest.mark.parametrize("fields, message", [
    (dict(label_min=float("nan")), "label range"),
    (dict(label_max=float("inf")), "label range"),
    (dict(label_min=1.0, label_max=0.0), "label range"),
    (dict(n_label_values=7), "label summary"),
    (dict(n_label_values=1), "label summary"),
    (dict(max_row_nnz=0), "inconsistent counts"),
    (dict(max_row_nnz=1), "inconsistent counts"),  # 3000 rows of 1 cannot hold 6000 non-zeros
])
def test_forged_header_fields_are_refused(text_file, tmp_path, fields, message):
    path = convert(text_file, tmp_path / "c.cache").path
    forge_header(path, **fields)
    with pytest.raises(ValueError, match=f"{path}: not a valid fastafm cache: .*{message}"):
        CacheFile(path)


def _set_label(cache, row, value):
    with open(cache.path, "r+b") as fh:
        fh.seek(cache._offsets["labels"] + 4 * row)
        fh.write(struct.pack("<f", value))


@pytest.mark.parametrize("label, n_label_values", [(0.5, 2), (7.0, 2), (-3.0, 3)])
def test_a_label_the_header_does_not_list_is_refused_where_it_is_read(text_file, tmp_path, label, n_label_values):
    """The class of labels outside the header's summary: a third label in a classifier cache (0.5 between its
    two, or 7 beyond them) used to train as the negative class; a label outside a regression cache's range too.
    Every reader of the labels (training blocks, label-only reads, read_rows, an eval_set cache) names the
    file, the row and the value."""
    cache = convert(text_file, tmp_path / "c.cache")
    row = 2345
    _set_label(cache, row, label)
    if n_label_values == 3:
        forge_header(cache.path, n_label_values=3)
    blocks = CacheFile(cache.path, block_rows=1000)
    message = f"{cache.path}: not a valid fastafm cache: row {row} has the label {label:g}, but the header lists"
    fits = [lambda: fastafm.AFMRegressor(**TINY).fit(blocks), lambda: blocks.read_labels(2000, 3000),
            lambda: blocks.read_rows(2000, 2400)]
    if n_label_values == 2:
        X, y = fastafm.load_libfm(text_file)
        fits += [lambda: fastafm.AFMClassifier(**TINY).fit(blocks),
                 lambda: fastafm.AFMClassifier(**TINY, pretrain=None).fit(X, y, eval_set=(blocks, None))]
    for fit in fits:
        with pytest.raises(ValueError, match=message):
            fit()


@pytest.mark.parametrize("delta", [1 << 40, -1, 7])
def test_a_flipped_indptr_at_a_block_boundary_is_a_value_error_naming_the_file(text_file, tmp_path, delta):
    cache = convert(text_file, tmp_path / "c.cache")
    boundary = 1000
    offset = cache._offsets["indptr"] + 8 * boundary
    with open(cache.path, "r+b") as fh:
        fh.seek(offset)
        (value,) = struct.unpack("<q", fh.read(8))
        fh.seek(offset)
        fh.write(struct.pack("<q", value + delta if delta != 7 else value ^ 0x7))
    blocks = CacheFile(cache.path, block_rows=boundary)
    with pytest.raises(ValueError, match=f"{cache.path}: not a valid fastafm cache: indptr"):
        fastafm.AFMRegressor(**TINY).fit(blocks)


# ------------------------------------------------------------------------------------ one-line errors
def test_n_threads_is_range_checked_at_predict(text_file):
    X, y = fastafm.load_libfm(text_file)
    model = fastafm.AFMRegressor(**TINY).fit(X, y)
    for bad in (-1, 10**20, 5000):
        model.set_params(n_threads=bad)
        for call in (model.predict, model.attention_weights):
            with pytest.raises(ValueError, match="n_threads must be"):
                call(X[:5])


def test_n_threads_of_the_wrong_type_after_fit_is_named(text_file):
    X, y = fastafm.load_libfm(text_file)
    model = fastafm.AFMRegressor(**TINY).fit(X, y)
    for bad in (None, 2.7, "2"):  # set_params skips validation: int() would fail unnamed or truncate 2.7
        model.set_params(n_threads=bad)
        for call in (model.predict, model.attention_weights):
            with pytest.raises(TypeError, match="n_threads must be an integer"):
                call(X[:5])


def test_the_kernel_calls_check_n_threads_by_the_tables_bound():
    from fastafm.data import validation as _validation
    from fastafm.models.hyperparams import BY_NAME

    assert BY_NAME["n_threads"].constraint.maximum == _validation.MAX_THREADS
    assert BY_NAME["n_threads"].constraint.minimum == 0


def test_cli_threads_out_of_range_is_one_line(text_file, tmp_path, capsys):
    model = str(tmp_path / "m.afm")
    assert main(["train", text_file, "--model", model, "--quiet", *CLI_TINY]) == 0
    for command in ("predict", "eval"):
        assert main([command, text_file, "--model", model, "--threads", str(10**20)]) == 2
        assert "--threads: n_threads must be <= 4096" in one_error_line(capsys.readouterr().err)


def test_cli_memory_error_and_unexpected_errors_are_one_line(text_file, tmp_path, capsys, monkeypatch):
    model = str(tmp_path / "m.afm")

    def no_memory(*args, **kwargs):
        raise MemoryError("std::bad_alloc")

    monkeypatch.setattr(fio, "load_libfm", no_memory)
    assert main(["train", text_file, "--model", model, "--quiet"]) == 3
    assert "out of memory" in one_error_line(capsys.readouterr().err)
    monkeypatch.undo()
    monkeypatch.setattr(fastafm.AFMRegressor, "fit", no_memory)
    assert main(["train", text_file, "--model", model, "--quiet"]) == 1
    assert "out of memory: std::bad_alloc" in one_error_line(capsys.readouterr().err)

    def pybind_dump(*args, **kwargs):
        raise TypeError("predict(): incompatible function arguments. The following argument types are supported:\n"
                        "    1. (params: dict, indptr: numpy.ndarray) -> numpy.ndarray\n\nInvoked with: 1")

    monkeypatch.setattr(fastafm.AFMRegressor, "fit", pybind_dump)
    assert main(["train", text_file, "--model", model, "--quiet"]) == 3
    line = one_error_line(capsys.readouterr().err)
    assert "incompatible function arguments" in line and "Invoked with" not in line
    monkeypatch.setattr(fastafm.AFMRegressor, "fit", lambda *a, **k: 1 / 0)
    assert main(["train", text_file, "--model", model, "--quiet"]) == 1
    assert "ZeroDivisionError" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------ the core's labels
@pytest.mark.parametrize("entry", ["train_epoch", "Trainer", "batch_gradients"])
def test_the_core_refuses_logistic_labels_outside_minus_one_one(rng, entry):
    """+1 / -1 (classes) and values between (2 rate - 1, a rate target) train; outside [-1, 1] or NaN is refused."""
    from fastafm.data.validation import csr_arrays
    from support import core_config, core_slots, random_csr, random_params, to_core

    X = random_csr(rng, [3, 2, 4, 1], n_features=7)
    params = to_core(random_params(rng, 7, 2, 2))
    arrays = csr_arrays(X)
    order = np.arange(4, dtype=np.int64)
    cfg = core_config(loss="logistic", optimizer="sgd")
    for y, ok in ((np.array([1, -1, 1, -1], np.float32), True), (np.array([1, 0, 0.5, -0.9], np.float32), True),
                  (np.array([1, 2, 1, 0], np.float32), False), (np.array([1, -1, np.nan, 1], np.float32), False)):
        if entry == "train_epoch":
            call = lambda: _core._testing.train_epoch(  # noqa: E731
                params, core_slots("sgd", {}), *arrays, y, order, cfg)
        elif entry == "Trainer":
            call = lambda: _core.Trainer(params, {}, cfg).train_epoch(*arrays, y, order, 0, 0)  # noqa: E731
        else:
            call = lambda: _core._testing.batch_gradients(params, *arrays, y, order, cfg)  # noqa: E731
        if ok:
            call()
        else:
            with pytest.raises(ValueError, match=r"the logistic loss needs labels in \[-1, 1\]"):
                call()
    squared = core_config(loss="squared", optimizer="sgd")
    _core._testing.batch_gradients(params, *arrays, np.array([0.5, 0, 3, 1], np.float32), order, squared)


def test_fit_scores_an_eval_set_of_string_labels_and_refuses_unknown_ones():
    X, y, _ = fastafm.make_planted(600, n_fields=4, cardinality=5, classification=True, random_state=0)
    labels = np.where(y > 0, "click", "none")
    small = dict(embedding_dim=4, attention_dim=4, n_epochs=2, random_state=0)
    model = fastafm.AFMClassifier(**small).fit(X[:500], labels[:500], eval_set=(X[500:], labels[500:]))
    assert np.isfinite(model.history_[-1]["eval_logloss"])
    other = np.where(y[500:] > 0, "click", "other")
    with pytest.raises(ValueError, match=r"eval_set y contains labels not seen in fit: \['other'\]"):
        fastafm.AFMClassifier(**small).fit(X[:500], labels[:500], eval_set=(X[500:], other))
    with pytest.raises(ValueError, match="eval_set y contains labels not seen in fit"):
        fastafm.AFMClassifier(**small).fit(X[:500], y[:500], eval_set=(X[500:], y[500:] + 2))
