"""Reading raw click logs in batches: CSV and TSV text (plain, .gz, .bz2, .xz) with pyarrow's streaming CSV
reader, Parquet files batch by batch, and in-memory tables (pandas or pyarrow), all as pyarrow record batches of
the columns a schema uses, typed: the label and numeric columns float64, categorical columns strings. Errors
name the file, the line (the physical line of the text file, the header being line 1; the row, from 1, of a
Parquet file or a table) and the column.
"""
from __future__ import annotations

import csv
import glob
import os
import re
from dataclasses import dataclass

from ..data.files import display, input_kind
from .utf8 import Utf8Checked

TEXT = "csv"
PARQUET = "parquet"
TABLE = "table"
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
_PARQUET_EXT = (".parquet", ".pq")
_CONVERSION = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error to (\w+): invalid value '(.*)'",
                         re.S)
DEFAULT_BLOCK_BYTES = 1 << 20


def pyarrow():
    from .._optional import import_optional  # not _compat: it imports scikit-learn

    return import_optional("pyarrow", "reading CSV, TSV and Parquet logs", "raw")  # the extra is named raw


def is_table(obj) -> bool:
    mod = type(obj).__module__
    return (mod.startswith("pandas") and type(obj).__name__ == "DataFrame") or (
        mod.startswith("pyarrow") and type(obj).__name__ in ("Table", "RecordBatch"))


def is_raw_rows(X) -> bool:
    """Whether X is raw rows for a model with an encoding: a path, a list of paths, or a table."""
    if is_table(X) or isinstance(X, (str, bytes, os.PathLike)):
        return True
    return isinstance(X, (list, tuple)) and bool(X) and all(isinstance(x, (str, os.PathLike)) for x in X)


def expand(source) -> list:
    """The inputs of `source`: one path, a glob pattern, a list of them, or in-memory tables; paths sorted within a
    pattern, in the given order otherwise. A pattern that matches nothing and a missing file are errors."""
    items = source if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ValueError("no input: give a file, a glob pattern, a list of them or a DataFrame")
    out: list = []
    for item in items:
        if is_table(item):
            out.append(item)
            continue
        if not isinstance(item, (str, bytes, os.PathLike)):
            raise TypeError(f"an input must be a path, a glob pattern or a DataFrame, got {type(item).__name__}")
        path = os.fsdecode(os.fspath(item))
        if any(ch in path for ch in "*?[") and not os.path.exists(path):
            matches = sorted(glob.glob(path))
            if not matches:
                raise FileNotFoundError(f"{display(path)}: the pattern matches no file")
            out.extend(matches)
        elif not os.path.exists(path):
            raise FileNotFoundError(f"{display(path)}: no such file")
        else:
            out.append(path)
    return out


def file_kind(path: str) -> tuple:
    """(TEXT or PARQUET, compression or None, the default separator) from the file name."""
    base = path.lower()
    compression = None
    for ext, codec in COMPRESSIONS.items():
        if base.endswith(ext):
            compression, base = codec, base[:-len(ext)]
    if base.endswith(_PARQUET_EXT):
        return PARQUET, compression, None
    sep = "," if base.endswith(".csv") else "\t"  # .tsv, .txt (Criteo) and anything else: tab
    return TEXT, compression, sep


def is_raw_path(path: str) -> bool:
    """Whether a file name says it is a raw log (.csv, .tsv, .parquet, .pq, possibly compressed)."""
    base = path.lower()
    for ext in COMPRESSIONS:
        if base.endswith(ext):
            base = base[:-len(ext)]
    return base.endswith((".csv", ".tsv") + _PARQUET_EXT)


@dataclass
class Batch:
    name: str            # the file (or "DataFrame")
    first_line: int      # the line (text: physical line; Parquet/table: row from 1) of the batch's first row
    data: object         # pyarrow.RecordBatch of the used columns, typed
    position: int = 0    # bytes of the input consumed so far (progress)


class Source:
    """One input (a file or a table) of a schema: its column list and its batches."""

    def __init__(self, item, schema, block_bytes: int = DEFAULT_BLOCK_BYTES, threads: bool = True):
        self.item, self.schema, self.block_bytes, self.threads = item, schema, block_bytes, threads
        if is_table(item):
            self.kind, self.name, self.size = TABLE, "DataFrame", 0
            pa = pyarrow()
            if isinstance(item, (pa.Table, pa.RecordBatch)):
                self.table = pa.table(item) if isinstance(item, pa.RecordBatch) else item
            else:
                try:
                    self.table = pa.Table.from_pandas(item, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
                    raise ValueError(f"DataFrame: a column cannot be read as one type ({exc})") from None
            self.columns = [str(c) for c in self.table.column_names]
            return
        self.path = item
        self.name = display(item)
        # a regular file only: the log is read twice (statistics, then writing), which a pipe cannot be
        input_kind(item, "a raw log (it is read twice: convert it from a regular file)", pipes=False)
        self.size = os.path.getsize(item)
        self.kind, self.compression, default_sep = file_kind(item)
        self.sep = schema.sep or default_sep
        if self.kind == PARQUET:
            import pyarrow.parquet as pq

            try:
                self.parquet = pq.ParquetFile(item)
            except Exception as exc:  # pyarrow's errors of a damaged or non-Parquet file
                raise ValueError(f"{self.name}: not a readable Parquet file ({exc})") from None
            self.columns = list(self.parquet.schema_arrow.names)
            return
        first = self._first_line()
        if first is None:
            raise ValueError(f"{self.name}: the file is empty (no header, no rows)")
        try:
            fields = next(csv.reader([first], delimiter=self.sep))
        except csv.Error as exc:  # a lone carriage return, a NUL byte ...
            raise ValueError(f"{self.name}:1: the first line is not {self.sep!r}-separated text ({exc})") from None
        if schema.header:
            self.columns = fields
        else:
            self.columns = [str(i) for i in range(len(fields))]

    # -- text
    def _open_stream(self):
        """(pyarrow input stream of the decompressed text, the raw file whose position tracks progress)."""
        pa = pyarrow()
        raw = pa.OSFile(self.path, "rb")
        if self.compression is None:
            return raw, raw
        if self.compression == "xz":
            import lzma

            return pa.PythonFile(lzma.open(raw, "rb"), mode="r"), raw
        return pa.CompressedInputStream(raw, self.compression), raw

    def _first_line(self):
        stream, raw = self._open_stream()
        try:
            head = b""
            while b"\n" not in head:
                piece = stream.read(1 << 16)
                if not piece:
                    break
                head += piece
        except OSError as exc:
            raise ValueError(f"{self.name}: cannot read it as {self.compression or 'text'} ({exc})") from None
        finally:
            stream.close()
            raw.close()
        if not head.strip(b"\r\n"):
            return None
        return head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")

    def batches(self, layout, types: dict):
        """The batches of the columns `layout.used()`, typed by `types` (column -> pyarrow type)."""
        if self.kind == TABLE:
            yield from self._table_batches(self.table, layout, types)
        elif self.kind == PARQUET:
            yield from self._parquet_batches(layout, types)
        else:
            yield from self._text_batches(layout, types, self.threads)

    def _text_options(self, layout, types: dict, threads: bool, bad: list):
        import pyarrow.csv as pcsv

        def invalid(row):
            bad.append(row)
            return "error"

        # The column names are always ours (the header as csv.reader read it): pyarrow's own reading of a header
        # with odd bytes or quotes may differ, and include_columns must name what it holds.
        read = pcsv.ReadOptions(use_threads=threads, block_size=self.block_bytes, column_names=self.columns,
                                skip_rows=1 if self.schema.header else 0)
        parse = pcsv.ParseOptions(delimiter=self.sep, invalid_row_handler=invalid, ignore_empty_lines=False)
        convert = pcsv.ConvertOptions(column_types=types, include_columns=layout.used(), null_values=[""],
                                      strings_can_be_null=True, quoted_strings_can_be_null=True)
        return read, parse, convert

    def _text_batches(self, layout, types: dict, threads: bool):
        import pyarrow.csv as pcsv

        pa = pyarrow()
        stream, raw = self._open_stream()
        stream = Utf8Checked(stream, self.name)  # a clear error at the first non-UTF-8 byte, with its line
        bad: list = []
        line = 2 if self.schema.header else 1
        try:
            reader = pcsv.open_csv(stream, *self._text_options(layout, types, threads, bad))
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                yield Batch(self.name, line, batch, raw.tell())
                line += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            if threads and (not bad or bad[0].number is None):  # locate it: the single-threaded reader numbers rows
                stream.close()
                yield from _skip(self._text_batches(layout, types, False), line)
            raise self._text_error(exc, bad, layout) from None
        finally:
            stream.close()
            raw.close()

    def _text_error(self, exc, bad: list, layout) -> ValueError:
        if bad:
            row = bad[0]
            where = f"{self.name}:{row.number}" if row.number is not None else self.name
            return ValueError(f"{where}: {row.actual_columns} columns, expected {row.expected_columns} (the "
                              f"{'header' if self.schema.header else 'first line'}'s); the line is "
                              f"{row.text[:80]!r}")
        message = str(exc)
        found = _CONVERSION.search(message)
        if found:
            column = int(found.group(1))
            name = layout.used()[column] if column < len(layout.used()) else str(column)
            return ValueError(f"{self.name}:{found.group(2)}: column {self.describe(name)}: "
                              f"{found.group(4)[:80]!r} is not a number ({self.role(name, layout)})")
        if isinstance(exc, OSError):
            return ValueError(f"{self.name}: cannot read it as {self.compression or 'text'} ({exc})")
        return ValueError(f"{self.name}: {message.splitlines()[0] if message else type(exc).__name__}")

    def describe(self, name: str) -> str:
        """A column as the user named it: its header name (and index), or its index."""
        if self.kind == TEXT and not self.schema.header:
            return name
        index = self.columns.index(name) if name in self.columns else -1
        return f"{name!r} (#{index})" if index >= 0 else repr(name)

    @staticmethod
    def role(name: str, layout) -> str:
        return "the label" if name == layout.label else "a numeric column"

    # -- Parquet and tables
    def _parquet_batches(self, layout, types: dict):
        pa = pyarrow()
        row = 1
        try:
            for batch in self.parquet.iter_batches(batch_size=65536, columns=layout.used()):
                yield from self._table_batches(pa.Table.from_batches([batch]), layout, types, row)
                row += batch.num_rows
        except pa.ArrowException as exc:
            raise ValueError(f"{self.name}: cannot read the Parquet file ({exc})") from None

    def _table_batches(self, table, layout, types: dict, first: int = 1):
        import pyarrow.compute as pc

        pa = pyarrow()
        names = [str(c) for c in table.column_names]
        table = table.rename_columns(names).select(layout.used())
        for batch in table.to_batches(max_chunksize=65536):
            arrays = []
            for name, array in zip(layout.used(), batch.columns):
                target = types[name]
                if array.type != target:
                    if pa.types.is_dictionary(array.type):
                        array = array.dictionary_decode()
                    if pa.types.is_string(target) and (pa.types.is_floating(array.type)
                                                       or pa.types.is_boolean(array.type)):
                        array = _as_text(array)  # as pandas writes them to CSV: 3.0, True
                    try:
                        array = pc.cast(array, target) if array.type != target else array
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                        raise self._cast_error(array, name, target, layout, first) from None
                arrays.append(array)
            yield Batch(self.name, first, pa.RecordBatch.from_arrays(arrays, names=layout.used()))
            first += batch.num_rows

    def _cast_error(self, array, name, target, layout, first) -> ValueError:
        import pyarrow.compute as pc

        pa = pyarrow()
        text = pc.cast(array, pa.string(), safe=False) if not pa.types.is_string(array.type) else array
        for i, value in enumerate(text.to_pylist()):
            if value is None:
                continue
            try:
                float(value)
            except (TypeError, ValueError):
                return ValueError(f"{self.name}:{first + i}: column {self.describe(name)}: {value[:80]!r} is not a "
                                  f"number ({self.role(name, layout)})")
        return ValueError(f"{self.name}: column {self.describe(name)} of type {array.type} cannot be read as "
                          f"{target} ({self.role(name, layout)})")


def _as_text(array):
    """Floats and booleans of a categorical column as Python's str writes them (3.0, True), so that a DataFrame
    and the CSV file pandas writes of it give the same categories; missing values stay missing."""
    pa = pyarrow()
    return pa.array([None if v is None else str(v) for v in array.to_pylist()], type=pa.string())


def _skip(batches, line: int):
    """The batches of a second reading of a file, from `line` on (the ones before were already yielded)."""
    for batch in batches:
        end = batch.first_line + batch.data.num_rows
        if end <= line:
            continue
        if batch.first_line < line:
            batch = Batch(batch.name, line, batch.data.slice(line - batch.first_line), batch.position)
        yield batch

