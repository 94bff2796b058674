"""Raw click logs (CSV, TSV, Parquet, DataFrames) to caches and rows, with the encoding carried by the cache and
the model (docs/data.md). `fastafm.convert` is `convert` here: the libFM route of fastafm.data.convert, or the
raw-log route of fastafm.rawlog.pipeline."""
from .api import convert, encode_rows
from .encoding import RawEncoding
from .hashing import fnv1a64
from .schema import RawSchema

__all__ = ["RawEncoding", "RawSchema", "convert", "encode_rows", "fnv1a64"]
