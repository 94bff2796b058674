"""Data in and out of the core: input checks, libFM files, row caches, the pandas encoder, synthetic data.

`fastafm.data.from_fields` and `fastafm.data.make_planted` stay importable from here (and from the package root).
"""
from .synthetic import field_offsets, from_fields, make_clicks, make_planted

__all__ = ["field_offsets", "from_fields", "make_clicks", "make_planted"]
