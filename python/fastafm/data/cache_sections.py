"""The sections of a cache with fields: the field of every feature id (format version 3, a raw log's cache
(fastafm.rawlog), and version 4, a libFFM file's or one converted with `fields=`) and a raw log's encoding
(version 3), read by `CacheFile.read_fields()` and `CacheFile.read_encoding()` (methods of this mixin)."""
from __future__ import annotations

import zlib

import numpy as np


class EncodedSections:
    """Reads the fields (versions 3 and 4) and encoding (version 3) sections; CacheFile provides the file access."""

    def read_fields(self):
        """The field of every feature id (int32, n_features) of a cache with fields (version 3 or 4), checked
        against its section's CRC32 (field numbers in [0, 65536), a raw log's non-decreasing); None for a cache
        without fields."""
        if not self.has_fields:
            return None
        with self._open() as fh:
            fields = self._read_at(fh, self._offsets["fields"], self.n_features, "fields")
        if zlib.crc32(fields.astype("<i4").tobytes()) != self._crcs["fields"]:
            self._corrupt("checksum mismatch in section fields (the data is damaged)")
        if fields.size and (int(fields.min()) < 0 or int(fields.max()) > 65535):
            self._corrupt("the fields section holds a field number outside [0, 65536)")
        if self.has_encoding and np.any(np.diff(fields) < 0):  # a raw log's fields are blocks of ids
            self._corrupt("the fields section of a raw log's cache is not non-decreasing")
        return fields.astype(np.int32)

    def read_encoding(self):
        """The RawEncoding (fastafm.rawlog) a raw log's cache (version 3) was written with; None for another
        cache. Checked against its section's CRC32."""
        if not self.has_encoding:
            return None
        from ..rawlog.encoding import RawEncoding

        with self._open() as fh:
            data = self._read_at(fh, self._offsets["encoding"], self._sizes["encoding"], "encoding").tobytes()
        if zlib.crc32(data) != self._crcs["encoding"]:
            self._corrupt("checksum mismatch in section encoding (the data is damaged)")
        encoding = RawEncoding.from_json(data, self.path)
        if encoding.n_features != self.n_features:
            self._corrupt(f"the encoding makes {encoding.n_features} features, the header says {self.n_features}")
        return encoding
