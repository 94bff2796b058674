"""The sections of a raw log's cache (format version 3, fastafm.rawlog): the field of every feature id and the
encoding, read by `CacheFile.read_fields()` and `CacheFile.read_encoding()` (methods of this mixin)."""
from __future__ import annotations

import zlib

import numpy as np


class EncodedSections:
    """Reads the fields and encoding sections of a version 3 cache; CacheFile provides the file access."""

    def read_fields(self):
        """The field of every feature id (int32, n_features) of a raw log's cache (version 3), checked against
        its section's CRC32; None for a cache without fields."""
        if not self.has_encoding:
            return None
        with self._open() as fh:
            fields = self._read_at(fh, self._offsets["fields"], self.n_features, "fields")
        if zlib.crc32(fields.astype("<i4").tobytes()) != self._crcs["fields"]:
            self._corrupt("checksum mismatch in section fields (the data is damaged)")
        if fields.size and (int(fields.min()) < 0 or np.any(np.diff(fields) < 0)):
            self._corrupt("the fields section is not a non-decreasing list of field numbers >= 0")
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
