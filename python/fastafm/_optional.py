"""Optional dependencies imported on first use, with one error message saying how to install them. Apart from
fastafm._compat (which imports scikit-learn, 100+ MiB and seconds) so that light paths such as the raw-log
conversion can use it."""
from __future__ import annotations

import importlib
from typing import Any


def import_optional(module: str, user: str, extra: str) -> Any:
    """`module` (e.g. "matplotlib.pyplot"), or an ImportError saying that `user` needs its package and how to
    install it, alone or as the fastafm extra `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        package = module.split(".")[0]
        raise ImportError(f"{user} needs {package}, which is not installed; install it with `pip install {package}` "
                          f"(or `pip install fastafm[{extra}]`)") from exc
