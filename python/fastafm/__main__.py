"""`python -m fastafm` and the `fastafm` console script; the command line itself lives in fastafm.cli."""
from __future__ import annotations

import sys

from .cli.commands import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
