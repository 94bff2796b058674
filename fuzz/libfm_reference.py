"""A slow, literal Python reading of the libFM/libSVM grammar of cpp/include/afm/libfm.hpp: the oracle of the
parser fuzzer (fuzz_libfm.py), which checks that the C++ parser accepts exactly the same files, with
bit-identical arrays, and rejects the others at the same line.

It is written from the documented grammar, not from the C++ code, in the most direct way: split lines, strip a
CR and a comment, split blanks, match each token with a regular expression, convert with float(). Under atheris
its Python branches (one per grammar rule) also guide the fuzzer, since the compiled parser has no coverage
instrumentation.
"""
from __future__ import annotations

import re

import numpy as np

INT32_MAX = 2**31 - 1
FLOAT32_OVERFLOW = float.fromhex("0x1.ffffffp127")  # the smallest double that rounds to inf as float32
_DECIMAL = re.compile(rb"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(rb"[+-]?(inf|infinity|nan(\([0-9A-Za-z_]*\))?)", re.IGNORECASE)
_FEATURE = re.compile(rb"([0-9]+):(.*)", re.DOTALL)
_FFM_FEATURE = re.compile(rb"([0-9]+):([0-9]+):(.*)", re.DOTALL)
MAX_FIELD = 65535
_BLANKS = re.compile(rb"[ \t]+")


class ReferenceError_(ValueError):
    def __init__(self, line: int, what: str):
        super().__init__(f"{line}: {what}")
        self.line = line


def parse_real(token: bytes, line: int, what: str) -> np.float32:
    if _DECIMAL.fullmatch(token):
        d = float(token)
        if d != d or abs(d) >= FLOAT32_OVERFLOW:  # (d is never NaN here; inf = an exponent beyond double)
            raise ReferenceError_(line, f"{what} out of the float32 range")
        with np.errstate(under="ignore"):
            return np.float32(d)
    if _NON_FINITE.fullmatch(token):
        raise ReferenceError_(line, f"{what} not finite")
    raise ReferenceError_(line, f"{what} not a number")


def parse(data: bytes, ffm: bool = False):
    """(indptr int64, indices int32, values float32, labels float32, max_feature_id) or ReferenceError_; with
    `ffm` (libFFM: tokens field:feature:value, field <= MAX_FIELD) also (fields int32, max_field_id)."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()  # the text after the last newline is a line only when it is not empty
    indptr, indices, values, labels, fields = [0], [], [], [], []
    max_id = max_field = -1
    for number, line in enumerate(lines, start=1):
        if b"\0" in line:
            raise ReferenceError_(number, "NUL byte")
        if line.endswith(b"\r"):
            line = line[:-1]
        line = line.split(b"#", 1)[0]
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            raise ReferenceError_(number, "byte-order mark")
        tokens = [t for t in _BLANKS.split(line) if t]
        if not tokens:
            continue
        label = parse_real(tokens[0], number, "label")
        for token in tokens[1:]:
            if ffm:
                m = _FFM_FEATURE.fullmatch(token)
                if m is None or b":" in m.group(3):
                    raise ReferenceError_(number, "not field:feature:value")
                field = int(m.group(1))
                if field > MAX_FIELD:
                    raise ReferenceError_(number, "field id beyond the limit")
                fields.append(field)
                max_field = max(max_field, field)
                token = token[len(m.group(1)) + 1:]
            m = _FEATURE.fullmatch(token)
            if m is None:
                raise ReferenceError_(number, "not id:value")
            feature = int(m.group(1))
            if feature > INT32_MAX:
                raise ReferenceError_(number, "id beyond int32")
            if not m.group(2):
                raise ReferenceError_(number, "empty value")
            values.append(parse_real(m.group(2), number, "value"))
            indices.append(feature)
            max_id = max(max_id, feature)
        labels.append(label)
        indptr.append(len(indices))
    out = (np.array(indptr, np.int64), np.array(indices, np.int32), np.array(values, np.float32),
           np.array(labels, np.float32), max_id)
    return out + (np.array(fields, np.int32), max_field) if ffm else out


def coverage_hint(message: str) -> int:
    """One branch per error path of the C++ parser (from its message), so that under atheris, whose coverage
    sees Python only, an input reaching a new error path of the compiled parser counts as new coverage."""
    kind = 0
    if "NUL byte" in message:
        kind = 1
    elif "byte-order mark" in message:
        kind = 2
    elif "is the label missing" in message:
        kind = 3
    elif message.startswith("label") and "not finite" in message:
        kind = 4
    elif message.startswith("label") and "float32 range" in message:
        kind = 5
    elif message.startswith("label"):
        kind = 6
    elif "qid tokens" in message:
        kind = 7
    elif "no ':'" in message:
        kind = 8
    elif "feature id is empty" in message:
        kind = 9
    elif "is negative" in message:
        kind = 10
    elif "beyond the int32 range" in message:
        kind = 11
    elif "not a non-negative integer" in message:
        kind = 12
    elif "is empty (token" in message:
        kind = 13
    elif "not finite" in message:
        kind = 14
    elif "float32 range" in message:
        kind = 15
    elif "is not a number" in message:
        kind = 16
    if "field:feature:value" in message:  # libFFM
        kind = 17
    elif message.startswith("field id") and "beyond the limit" in message:
        kind = 18
    elif message.startswith("field id"):
        kind = 19
    if "bytes)" in message:  # a long token, shown truncated
        kind += 100
    if "\\x" in message:  # an odd byte, shown escaped
        kind += 200
    return kind
