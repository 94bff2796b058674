"""A text stream checked as UTF-8 on its way to pyarrow's CSV reader.

pyarrow reads bytes it cannot decode into a string column as an error without a line, and a row of the wrong
width holding such bytes makes its invalid-row handler fail before it is called (an "Exception ignored" on
standard error, the row's line lost). So the bytes are decoded here first (incrementally, C speed), passed on
unchanged, and the first invalid byte is a ValueError naming the file, line and column.
"""
from __future__ import annotations

import codecs


class Utf8Checked:
    """A read-only file-like view of `stream` (a pyarrow input stream of the decompressed text) that raises
    ValueError "{name}:{line}: ..." at the first byte that is not UTF-8."""

    def __init__(self, stream, name: str):
        self._stream, self._name = stream, name
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._line, self._column = 1, 1  # where the text read so far ends (1-based)
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n) if n is not None and n >= 0 else self._stream.read()
        try:
            self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            self._fail(data, exc.start)
        newlines = data.count(b"\n")
        if newlines:
            self._line += newlines
            self._column = len(data) - data.rfind(b"\n")
        else:
            self._column += len(data)
        return data

    def _fail(self, data: bytes, at: int) -> None:
        head = data[:max(at, 0)]
        line = self._line + head.count(b"\n")
        column = (at - head.rfind(b"\n")) if b"\n" in head else self._column + at
        byte = data[at:at + 1] if 0 <= at < len(data) else b""
        raise ValueError(f"{self._name}:{line}: column {column} (byte offset in the line): byte "
                         f"{byte.hex() and '0x' + byte.hex()} is not UTF-8 text (re-encode the log, e.g. iconv "
                         "-f latin1 -t utf-8)") from None

    # what pyarrow's PythonFile asks of a readable file
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._stream.close()
