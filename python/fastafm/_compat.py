"""scikit-learn is optional: use its base classes when installed, else a minimal stand-in with the same
get_params/set_params contract (parameters are the keyword arguments of __init__, stored verbatim).
import_optional: the other optional dependencies, imported on first use with one error message."""
from __future__ import annotations

import importlib
import inspect
from typing import Any

try:  # pragma: no cover - exercised by whichever branch the environment has
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

    class BaseEstimator:  # type: ignore[no-redef]
        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self")

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = set(self._get_param_names())
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}")
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class RegressorMixin:  # type: ignore[no-redef]
        _estimator_type = "regressor"

        def score(self, X, y, sample_weight=None):
            import numpy as np

            y = np.asarray(y, dtype=np.float64)
            pred = self.predict(X)
            ss_res = np.sum((y - pred) ** 2)
            ss_tot = np.sum((y - y.mean()) ** 2)
            return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else 0.0

    class ClassifierMixin:  # type: ignore[no-redef]
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            import numpy as np

            return float(np.mean(self.predict(X) == np.asarray(y)))


def import_optional(module: str, user: str, extra: str) -> Any:
    """`module` (e.g. "matplotlib.pyplot"), or an ImportError saying that `user` needs its package and how to
    install it, alone or as the fastafm extra `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        package = module.split(".")[0]
        raise ImportError(f"{user} needs {package}, which is not installed; install it with `pip install {package}` "
                          f"(or `pip install fastafm[{extra}]`)") from exc
