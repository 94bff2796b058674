"""Model files: a ZIP archive of .npy arrays (readable by ``np.load(path, allow_pickle=False)``), versioned and
checksummed. Loading never unpickles and never runs code from the file: it parses each array's .npy header
itself, refuses anything that is not a little-endian float32 array of the expected shape *before* reading its
data, verifies a SHA-256 digest of every array and of the metadata, and only builds the estimator classes
listed here.

Layout (format version 3):
    meta.npy          uint8 array holding UTF-8 JSON: {"format": "fastafm-model", "version": 3, "class": ...,
                      "hyperparameters": {...}, "n_features_in": int, "n_epochs_done": int, "history": [...],
                      "classes": [...] | null, "label_range": [lo, hi] | null, "row_nnz": float | null (the
                      training rows' mean non-zeros, learning_rate "auto"'s; absent in older files: the
                      unscaled rate), "dropout_seed": int,
                      "rng_state": {...}, "optimizer_slots": [...], "sha256": {"meta": hex, "param.w0": hex, ...}}
                      sha256["meta"] is the digest of the canonical JSON (sorted keys, no blanks) of the record
                      without "sha256"; sha256["param.w"] etc. are digests of the arrays' raw little-endian bytes.
    param.<name>.npy        the parameters w0 (1,), w (n,), V (n, k), W (t, k), b (t,), h (t,), p (k,)
    slot.<slot>.<name>.npy  the optimizer's state, one array per slot and parameter it covers, of the
                            parameter's shape (fastafm.training.optim: none for sgd; slot G for adagrad, all > 0; m, v
                            (>= 0) for every parameter and step (>= 0) for w and w0 for adam), so partial_fit
                            can continue after loading; "optimizer_slots" lists the slots
    FwFM files (FwFMRegressor, FwFMClassifier) add param.R (n_fields, n_fields) and R's slots, and
    fields.npy: the field of every feature, little-endian int32 (n,), each in [0, n_fields); their
                      "fields" hyperparameter is stored as null and read back as that array. Field-aware AFM
                      files (field_aware "weights", "logits", "both") add param.R and/or param.S (the same
                      shape), their slots and fields.npy likewise. Files of the other classes and
                      field_aware None are unchanged, so every older file loads as before.
    encoding.npy      a model trained from a raw log's cache (fastafm.rawlog) only: its RawEncoding as UTF-8 JSON
                      in a uint8 array (checksummed), so predict reads raw rows as the training rows were read.

Version 2 files (one `accum.<name>.npy` Adagrad accumulator per parameter, written for SGD models too) are
read bit for bit: the accumulators become adagrad's slot G, and an SGD model's are dropped. Version 1 files
(fastafm 0.1 before checksums: the version 2 layout without "sha256") are read with every check but the
digests. Compressed members (np.savez_compressed) are refused: with stored members no header
can make the reader allocate more than the file holds. Members are stored uncompressed with a fixed timestamp, so saving the same model twice
gives byte-identical files; the file is written to a temporary name and renamed, so a crash while saving never
leaves a truncated model under the final name.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import math
import os
import zipfile
from typing import TYPE_CHECKING, cast

import numpy as np
from numpy.lib import format as npy_format

from . import registry as _registry
from .._compat import fitted_state
from ..data.files import open_input
from .hyperparams import validate
from ..training.optim import OPTIMIZERS
from .params import FIELD_AWARE_PARAMS
from ..training.state import TrainingState
from ..data.validation import check_memory

if TYPE_CHECKING:  # TypeGuard is in typing from Python 3.10 only
    from typing_extensions import TypeGuard

FORMAT = "fastafm-model"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
PARAM_NAMES = ("w0", "w", "V", "W", "b", "h", "p")
V2_ARRAY_KEYS = tuple(f"{prefix}.{name}" for prefix in ("param", "accum") for name in PARAM_NAMES)
ARRAY_KEYS = V2_ARRAY_KEYS  # the members of a version 1/2 file (fuzz/fuzz_load.py reads this name)
MAX_META_BYTES = 64 << 20  # the JSON record (history included) is small; refuse absurd ones before reading
_INT32_MAX = 2**31 - 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class ModelFileError(ValueError):
    """The file is not a valid fastafm model (truncated, corrupted, edited, or another kind of file)."""


def array_keys(version: int, optimizer: str = "sgd", names: tuple = PARAM_NAMES) -> tuple:
    """The float32 array members of a file of `version` written for `optimizer` (versions 1-2: always accum):
    every parameter of `names` (FwFM's add R), then each of the optimizer's slots for the parameters it covers
    (fastafm.training.optim)."""
    if version < 3:
        return V2_ARRAY_KEYS
    spec = OPTIMIZERS[optimizer]
    return tuple(f"param.{n}" for n in names) + tuple(f"slot.{s}.{n}" for s in spec.slots
                                                       for n in spec.params_of(s, names))


FIELDS_KEY = "fields"  # FwFM: the field array, int32
ENCODING_KEY = "encoding"  # a raw log's encoding, UTF-8 JSON bytes (any model class, optional)


def _param_names(kind, hyperparameters, where: str, has_fields: bool) -> tuple:
    """The parameters a file of this class and these hyperparameters holds: AFM's seven, and FwFM's R or field-aware
    AFM's R and/or S (field_aware; files from before it have none; "auto": those of "both" when the file holds
    the fields, none otherwise)."""
    hp = hyperparameters if isinstance(hyperparameters, dict) else {}
    _check(kind.family != "afm" or hp.get("field_aware") in FIELD_AWARE_PARAMS or hp.get("field_aware") == "auto",
           where, f"invalid hyperparameters (field_aware {hp.get('field_aware')!r})")
    return PARAM_NAMES + kind.field_params(hp, has_fields)


def _jsonable(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.random.Generator) or isinstance(value, np.random.RandomState):
        return None  # a generator object is not a reproducible setting; the rng state is saved separately
    return value


def _canonical(meta: dict) -> bytes:
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _digest(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_bytes(arr: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(arr, dtype="<f4")).cast("B")


def _class_weight_json(value):
    """class_weight in JSON: a dict as a list of [label, weight] pairs (JSON keys would turn labels into
    strings); None and "balanced" as they are."""
    if isinstance(value, dict):
        return {"pairs": [[_label(k), float(v)] for k, v in value.items()]}
    return value


def _class_weight_from_json(value, where: str):
    if isinstance(value, dict):
        pairs = value.get("pairs")
        if not isinstance(pairs, list):
            raise ModelFileError(f"{where}: class_weight {value!r} is not a list of [label, weight] pairs")
        _check(set(value) == {"pairs"}
               and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int, float, bool))
                       and isinstance(p[1], (int, float)) and not isinstance(p[1], bool) for p in pairs),
               where, f"class_weight {value!r} is not a list of [label, weight] pairs")
        return {p[0]: float(p[1]) for p in pairs}
    return value


def _label(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_shapes_match(model, state: TrainingState) -> None:
    """The file stores the hyperparameters and loads the arrays by their shapes: a set_params after fit that
    changes the shapes (embedding_dim, field_aware, ...) would write a file that cannot be loaded."""
    kind = _registry.kind(type(model))
    values = {name: getattr(model, name) for name in kind.signature.names}
    if "field_aware" in values:  # "auto" as the fit settled it (None without early stopping, fields given or not)
        values["field_aware"] = kind.fitted_field_aware(values, state.fields is not None)
    try:
        shapes = kind.spec(values, state.spec.n_features, state.fields).shapes()
    except (TypeError, ValueError) as exc:
        shapes, why = None, f" ({exc})"
    else:
        why = ""
    if shapes != state.spec.shapes():
        raise ValueError(f"cannot save {type(model).__name__}: its hyperparameters were changed after fit (set_params) "
                         f"to ones of other parameter shapes{why}; restore them, or fit again")


def save_model(model, path) -> None:
    """Write a fitted model to `path` (format version 3, see the module docstring)."""
    state = fitted_state(model)
    _check_shapes_match(model, state)
    path = os.fspath(path)
    arrays = {}
    names = state.spec.param_names
    for name in names:
        arrays[f"param.{name}"] = np.ascontiguousarray(state.params[name], dtype="<f4")
    spec = OPTIMIZERS[state.optimizer]
    slots = spec.slots
    for slot in slots:
        for name in spec.params_of(slot, names):
            arrays[f"slot.{slot}.{name}"] = np.ascontiguousarray(state.slots[slot][name], dtype="<f4")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "class": type(model).__name__,
        "hyperparameters": {k: _class_weight_json(v) if k == "class_weight" else None if k == "fields" else
                            _jsonable(v) for k, v in model.get_params().items()},
        "n_features_in": int(state.spec.n_features),
        "n_epochs_done": int(state.n_epochs_done),
        "history": state.history,
        "classes": None if state.classes is None else [_label(c) for c in state.classes],
        "label_range": None if state.label_range is None else list(state.label_range),
        "row_nnz": None if state.row_nnz is None else float(state.row_nnz),
        "dropout_seed": int(state.dropout_seed),
        "rng_state": state.rng.bit_generator.state,
        "optimizer_slots": list(slots),
    }
    meta["sha256"] = {"meta": _digest(_canonical(meta))}
    meta["sha256"].update({key: _digest(_array_bytes(arr)) for key, arr in arrays.items()})
    if state.fields is not None:  # not a float parameter: its own int32 member (and digest)
        arrays[FIELDS_KEY] = np.ascontiguousarray(state.fields, dtype="<i4")
        meta["sha256"][FIELDS_KEY] = _digest(memoryview(arrays[FIELDS_KEY]).cast("B"))
    if getattr(state, "encoding", None) is not None:
        arrays[ENCODING_KEY] = np.frombuffer(state.encoding.to_json(), dtype=np.uint8)
        meta["sha256"][ENCODING_KEY] = _digest(memoryview(arrays[ENCODING_KEY]).cast("B"))
    meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
    members = {"meta": np.frombuffer(meta_bytes, dtype=np.uint8), **arrays}

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for key, arr in members.items():
                    info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
                    info.external_attr = 0o644 << 16
                    with zf.open(info, "w", force_zip64=True) as out:
                        npy_format.write_array(out, arr, version=(1, 0), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------------------------------- loading

_MAX_HEADER = 10000
# numpy >= 1.24 limits the header length it parses itself; with older ones the length is checked here first.
_HEADER_KW = ({"max_header_size": _MAX_HEADER}
              if "max_header_size" in inspect.signature(npy_format.read_array_header_1_0).parameters else {})


def _npy_header(fh, version):
    """(shape, fortran_order, dtype) of the .npy header at fh (after the magic), never parsing a long one."""
    width = {(1, 0): 2, (2, 0): 4}.get(version)
    if width is None:
        raise ModelFileError(f"unsupported .npy version {version}")
    raw = fh.read(width)
    if len(raw) != width or int.from_bytes(raw, "little") > _MAX_HEADER:
        raise ModelFileError(".npy header too long or truncated")
    fh.seek(-width, io.SEEK_CUR)
    read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    return read(fh, **_HEADER_KW)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, dtype: np.dtype, shape, where: str):
    """The array of member `info` after checking its .npy header (dtype, order, shape, size) without reading
    its data; `shape` None accepts any 1-D shape. Returns a writable array owning its memory."""
    with zf.open(info) as fh:
        version = npy_format.read_magic(fh)
        try:
            file_shape, fortran, file_dtype = _npy_header(fh, version)
        except ModelFileError as exc:
            raise ModelFileError(f"{where}: array {key}: {exc}") from None
        if file_dtype != dtype:  # object or structured dtypes end here, before any data is read
            raise ModelFileError(f"{where}: array {key} has dtype {file_dtype}, expected {np.dtype(dtype)}")
        if fortran and len(file_shape) > 1:
            raise ModelFileError(f"{where}: array {key} is stored in Fortran order")
        if shape is None:
            if len(file_shape) != 1:
                raise ModelFileError(f"{where}: array {key} has shape {file_shape}, expected a 1-D array")
        elif tuple(file_shape) != tuple(shape):
            raise ModelFileError(f"{where}: array {key} has shape {tuple(file_shape)}, expected {tuple(shape)}")
        nbytes = math.prod(file_shape) * np.dtype(dtype).itemsize
        if info.file_size != fh.tell() + nbytes:
            raise ModelFileError(f"{where}: array {key} holds {info.file_size - fh.tell()} data bytes, "
                                 f"its header says {nbytes} (truncated or edited)")
        buf = bytearray(nbytes)
        if cast(io.BufferedIOBase, fh).readinto(buf) != nbytes or fh.read(1):
            raise ModelFileError(f"{where}: array {key} is truncated")
    return np.frombuffer(buf, dtype=dtype).reshape(file_shape)


def _check(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ModelFileError(f"{where}: {what}")


def _is_int(v) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_meta(meta: dict, kind, where: str) -> None:
    """The metadata's fields, before anything is built from them."""
    hp = meta.get("hyperparameters")
    if not isinstance(hp, dict):
        raise ModelFileError(f"{where}: metadata has no hyperparameters record")
    names = set(kind.signature.names)
    unknown = sorted(set(hp) - names)
    _check(not unknown, where, f"unknown hyperparameters {unknown} for {kind.name}")
    rs = hp.get("random_state")
    _check(rs is None or (_is_int(rs) and rs >= 0), where, f"random_state {rs!r} is not None or an integer")
    n = meta.get("n_features_in")
    _check(_is_int(n) and 1 <= n <= _INT32_MAX, where, f"n_features_in {n!r} is not a positive int32")
    ne = meta.get("n_epochs_done")
    _check(_is_int(ne) and 0 <= ne < 2**63, where, f"n_epochs_done {ne!r} is not a non-negative int64")
    hist = meta.get("history")
    _check(isinstance(hist, list) and all(isinstance(h, dict) for h in hist), where, "history is not a list of records")
    ds = meta.get("dropout_seed")
    _check(_is_int(ds) and 0 <= ds < 2**64, where, f"dropout_seed {ds!r} is not a 64-bit unsigned integer")
    _check(isinstance(meta.get("rng_state"), dict), where, "rng_state is not a record")
    classes = meta.get("classes")
    if kind.classifier:
        _check(isinstance(classes, list) and len(classes) == 2
               and all(isinstance(c, (str, int, float, bool)) for c in classes)
               and all(not isinstance(c, float) or math.isfinite(c) for c in classes)
               and type(classes[0]) is type(classes[1]) and classes[0] != classes[1],
               where, f"classes {classes!r} are not two distinct labels of one type")
    else:
        _check(classes is None, where, "a regressor has no classes")
    lr = meta.get("label_range")
    _check(lr is None or (isinstance(lr, list) and len(lr) == 2
                          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                  for v in lr) and lr[0] <= lr[1]),
           where, f"label_range {lr!r} is not two finite numbers lo <= hi")
    nnz = meta.get("row_nnz")
    _check(nnz is None or (isinstance(nnz, (int, float)) and not isinstance(nnz, bool) and math.isfinite(nnz)
                           and nnz >= 0), where, f"row_nnz {nnz!r} is not a finite number >= 0")


def load_model(path):
    """Read a model written by `model.save(path)`.

    Raises FileNotFoundError/PermissionError/IsADirectoryError (OSError) when the file cannot be opened,
    TypeError for a path that is not a str or os.PathLike, ValueError naming the path when it is not a regular
    file (a pipe, a device such as /dev/zero: refused before it is opened or read), and ValueError
    (ModelFileError) for any file that is not a valid fastafm model: truncated, corrupted (checksum), a newer or unknown format version, edited
    arrays (wrong dtype, shape, NaN/inf), a pickle or object arrays, unknown classes or hyperparameters.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    where = os.fsdecode(path)
    # A regular file only, checked before it is opened (a FIFO would block the open, /dev/zero would be read
    # without end); OSErrors (missing file, directory, permissions) propagate as they are.
    fh, _ = open_input(where, "a model file", pipes=False)
    with fh:
        try:
            return _load(fh, where)
        except ModelFileError:
            raise
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # anything the zip/npy/json readers raise on a damaged file
            raise ModelFileError(f"{where}: not a valid fastafm model file ({type(exc).__name__}: {exc})") from exc


def _load(fh, where: str):
    head = fh.read(4)
    fh.seek(0)
    if head[:2] == b"\x80\x04" or head[:1] == b"\x80":
        raise ModelFileError(f"{where}: not a fastafm model file (it looks like a pickle, which is never loaded)")
    if not zipfile.is_zipfile(fh):
        raise ModelFileError(f"{where}: not a fastafm model file (not a ZIP/.npz archive; truncated?)")
    fh.seek(0)
    with zipfile.ZipFile(fh) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        _check(len(names) == len(set(names)), where, "the archive holds duplicate members")
        by_key = {}
        for info in infos:
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            by_key[key] = info
        _check("meta" in by_key, where, "not a fastafm model file (no metadata record)")
        file_size = fh.seek(0, os.SEEK_END)
        for info in infos:
            # Stored members only (np.savez and fastafm write them): a member's data then lies in the file, so no
            # header can make the reader allocate more than the file's size (no zip bomb).
            _check(info.compress_type == zipfile.ZIP_STORED, where,
                   f"member {info.filename} is compressed (fastafm writes stored members only)")
            _check(not info.flag_bits & 0x1, where, f"member {info.filename} is encrypted")
            _check(info.file_size == info.compress_size and info.header_offset + info.file_size <= file_size,
                   where, f"member {info.filename} extends beyond the end of the file (truncated?)")
        _check(by_key["meta"].file_size <= MAX_META_BYTES, where, "the metadata record is too large")

        raw = _read_member(zf, by_key["meta"], "meta", np.dtype(np.uint8), None, where).tobytes()
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ModelFileError(f"{where}: corrupted metadata ({type(exc).__name__}: {exc})") from None
        _check(isinstance(meta, dict) and meta.get("format") == FORMAT, where, "not a fastafm model file")
        version = meta.get("version")
        if not (_is_int(version) and version in READABLE_VERSIONS):
            newer = _is_int(version) and version > VERSION
            raise ModelFileError(
                f"{where}: model file format version {version!r}"
                + (" was written by a newer fastafm; " if newer else " is unknown; ")
                + f"this fastafm reads versions {', '.join(map(str, READABLE_VERSIONS))}"
            )
        digests = meta.get("sha256")
        if version >= 2:
            _check(isinstance(digests, dict) and isinstance(digests.get("meta"), str), where,
                   "the metadata has no checksums")
            _check(_digest(_canonical(meta)) == digests["meta"], where,
                   "the metadata fails its SHA-256 checksum (the file is corrupted or was edited)")
        kind = _kind_of(meta, where)
        if isinstance(meta.get("hyperparameters"), dict):
            meta["hyperparameters"] = _upgrade_hyperparameters(meta["hyperparameters"], kind)
        optimizer = _optimizer_of(meta, kind, version, where)
        param_names = _param_names(kind, meta.get("hyperparameters"), where, FIELDS_KEY in by_key)
        keys = array_keys(version, optimizer, param_names)
        field_keys = (FIELDS_KEY,) if len(param_names) > len(PARAM_NAMES) else ()
        extra = sorted(set(by_key) - {"meta", *keys, *field_keys, ENCODING_KEY})
        _check(not extra, where, f"unexpected members {extra[:5]} (not written by fastafm)")
        missing = [key for key in keys + field_keys if key not in by_key]
        _check(not missing, where, f"missing array {', '.join(missing)}")
        if version >= 2:
            _check(all(isinstance(digests.get(k), str) for k in keys), where, "the metadata has no checksums")
        _check_meta(meta, kind, where)
        hyperparameters = meta["hyperparameters"]
        encoding = None
        if ENCODING_KEY in by_key:
            encoding = _read_encoding(zf, by_key[ENCODING_KEY], meta, digests, where)
        fields = None
        if field_keys:
            fields = _read_fields(zf, by_key[FIELDS_KEY], meta, digests, where)
            hyperparameters["fields"] = fields
        if "class_weight" in hyperparameters:  # files before class_weight have none: the default, None
            hyperparameters["class_weight"] = _class_weight_from_json(hyperparameters["class_weight"], where)
        try:
            model = kind.cls(**hyperparameters)
            values = {name: getattr(model, name) for name in kind.signature.names}
            validate(values, kind.signature.names)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{where}: invalid hyperparameters ({exc})") from None

        spec = kind.spec(values, meta["n_features_in"], fields)
        shapes = spec.shapes()
        n_copies = 1 + max(len(OPTIMIZERS[optimizer].slots), 1)  # the parameters and the slots (v1/2: one)
        check_memory(n_copies * 4 * sum(math.prod(shape) for shape in shapes.values()), f"loading {where}")
        arrays = {}
        for key in keys:
            name = key.rsplit(".", 1)[1]
            arr = _read_member(zf, by_key[key], key, np.dtype("<f4"), shapes[name], where)
            if version >= 2 and _digest(memoryview(arr).cast("B")) != digests[key]:
                raise ModelFileError(f"{where}: array {key} fails its SHA-256 checksum "
                                     "(the file is corrupted or was edited)")
            if not np.all(np.isfinite(arr)):
                raise ModelFileError(f"{where}: array {key} contains NaN or infinity")
            if _positive(key, optimizer, version) and not np.all(arr > 0):
                raise ModelFileError(f"{where}: array {key} holds Adagrad accumulators <= 0")
            if _slot_in(key, OPTIMIZERS[optimizer].nonnegative, version) and not np.all(arr >= 0):
                raise ModelFileError(f"{where}: array {key} holds negative values (second moments or step counts)")
            arrays[key] = arr.astype(np.float32, copy=False)

    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = meta["rng_state"]
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as exc:
        raise ModelFileError(f"{where}: invalid rng_state ({type(exc).__name__}: {exc})") from None
    params = {name: arrays[f"param.{name}"] for name in param_names}
    if version >= 3:
        ospec = OPTIMIZERS[optimizer]
        slots = {slot: {name: arrays[f"slot.{slot}.{name}"] for name in ospec.params_of(slot, param_names)}
                 for slot in ospec.slots}
    else:  # one accumulator per parameter: adagrad's G; an SGD model's were dummies
        slots = {"G": {name: arrays[f"accum.{name}"] for name in PARAM_NAMES}} if optimizer == "adagrad" else {}
    classes = None if meta.get("classes") is None else np.asarray(meta["classes"])
    label_range = None if meta.get("label_range") is None else tuple(float(v) for v in meta["label_range"])
    row_nnz = None if meta.get("row_nnz") is None else float(meta["row_nnz"])
    state = TrainingState(spec, optimizer, params, slots, rng, meta["dropout_seed"], meta["n_epochs_done"],
                          list(meta["history"]), classes, label_range, row_nnz, fields, encoding)
    return kind.build(hyperparameters, state)


def _read_encoding(zf, info, meta: dict, digests, where: str):
    """A raw log's RawEncoding (fastafm.rawlog), checksummed, of the model's width."""
    from ..rawlog.encoding import RawEncoding

    _check(info.file_size <= 4 * MAX_META_BYTES * 64, where, "the encoding record is too large")
    raw = _read_member(zf, info, ENCODING_KEY, np.dtype(np.uint8), None, where).tobytes()
    _check(isinstance(digests, dict) and digests.get(ENCODING_KEY) == _digest(raw), where,
           f"array {ENCODING_KEY} fails its SHA-256 checksum (the file is corrupted or was edited)")
    try:
        encoding = RawEncoding.from_json(raw, where)
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
    _check(encoding.n_features == meta.get("n_features_in"), where,
           f"the encoding makes {encoding.n_features} features, the model has {meta.get('n_features_in')}")
    return encoding


def _read_fields(zf, info, meta: dict, digests, where: str) -> np.ndarray:
    """An FwFM file's field array: int32 (n_features_in,), every field in [0, 65536), checksummed."""
    n = meta.get("n_features_in")
    _check(_is_int(n) and 1 <= n <= _INT32_MAX, where, f"n_features_in {n!r} is not a positive int32")
    arr = _read_member(zf, info, FIELDS_KEY, np.dtype("<i4"), (n,), where)
    _check(isinstance(digests, dict) and digests.get(FIELDS_KEY) == _digest(memoryview(arr).cast("B")), where,
           f"array {FIELDS_KEY} fails its SHA-256 checksum (the file is corrupted or was edited)")
    _check(bool(np.all((arr >= 0) & (arr < 65536))), where, f"array {FIELDS_KEY} holds a field outside [0, 65536)")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _kind_of(meta: dict, where: str):
    name = meta.get("class")
    if isinstance(name, str):
        try:
            return _registry.kind(name)
        except KeyError:
            pass
    raise ModelFileError(f"{where}: unknown model class {name!r}")


def _upgrade_hyperparameters(hp: dict, kind) -> dict:
    """Load older files with the settings that behave as they did: files from before frequency_l2 (issue 12)
    trained without it; files written before early stopping was on by default name it `patience` (None: off)
    and never pretrained."""
    if "frequency_l2" not in hp and "l2" in hp:  # files from before frequency_l2 (issue 12) trained without it
        hp = {**hp, "frequency_l2": 0.0}
    if "patience" not in hp:
        return hp
    hp = dict(hp)
    patience = hp.pop("patience")
    hp.setdefault("early_stopping", False if patience is None else "auto")
    if patience is not None:
        hp.setdefault("n_iter_no_change", patience)
    if "pretrain" in kind.signature.names:
        hp.setdefault("pretrain", None)
    return hp


def _optimizer_of(meta: dict, kind, version: int, where: str) -> str:
    """The optimizer of the file (its hyperparameter, or the class default), and for version 3 its slots."""
    hp = meta.get("hyperparameters")
    if not isinstance(hp, dict):
        raise ModelFileError(f"{where}: metadata has no hyperparameters record")
    optimizer = hp.get("optimizer", kind.signature.default("optimizer"))
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ModelFileError(f"{where}: invalid hyperparameters (optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{optimizer!r})")
    if version >= 3:
        slots = meta.get("optimizer_slots")
        _check(slots == list(OPTIMIZERS[optimizer].slots), where,
               f"optimizer_slots {slots!r} are not the slots of {optimizer} {list(OPTIMIZERS[optimizer].slots)}")
    return optimizer


def _positive(key: str, optimizer: str, version: int) -> bool:
    """Whether array `key` must hold values > 0 (Adagrad's sums; every accumulator of a version 1/2 file)."""
    if version < 3:
        return key.startswith("accum.")
    return _slot_in(key, OPTIMIZERS[optimizer].positive, version)


def _slot_in(key: str, slots: tuple, version: int) -> bool:
    """Whether array `key` of a version 3 file belongs to one of `slots`."""
    parts = key.split(".")
    return version >= 3 and parts[0] == "slot" and parts[1] in slots


def resign(data: bytes) -> bytes:
    """For the fuzzer: recompute the checksums of a (mutated) model file's bytes so that its deeper checks
    are reached; returns the input unchanged when it is not a ZIP with a JSON metadata record."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
        meta_raw = members["meta.npy"]
        with io.BytesIO(meta_raw) as fh:
            _npy_header(fh, npy_format.read_magic(fh))
            meta = json.loads(meta_raw[fh.tell():].decode("utf-8"))
        digests = {"meta": _digest(_canonical(meta))}
        for name, raw in members.items():
            if name != "meta.npy" and name.endswith(".npy"):
                with io.BytesIO(raw) as fh:
                    _npy_header(fh, npy_format.read_magic(fh))
                    digests[name[:-4]] = _digest(raw[fh.tell():])
        meta["sha256"] = digests
        members["meta.npy"] = _npy_bytes(np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for name, raw in members.items():
                zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), raw)
        return out.getvalue()
    except Exception:
        return data


def _npy_bytes(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    npy_format.write_array(out, arr, version=(1, 0), allow_pickle=False)
    return out.getvalue()
