"""The `fastafm` command line (libffm/xLearn style): `fastafm demo|train|predict|eval|convert`."""
from .commands import build_parser, main

__all__ = ["build_parser", "main"]
