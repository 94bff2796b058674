"""scikit-learn is optional: use its base classes when installed, else a minimal stand-in with the same
get_params/set_params contract (parameters are the keyword arguments of __init__, stored verbatim).
import_optional (fastafm._optional, re-exported): the other optional dependencies, imported on first use with one error
message."""
from __future__ import annotations

import inspect

from ._optional import import_optional  # noqa: F401  (re-exported: the modules that use scikit-learn take both here)

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
            """R² of the predictions, weighted by `sample_weight` when given (as scikit-learn's r2_score)."""
            import numpy as np

            y = np.asarray(y, dtype=np.float64)
            w = _weights(sample_weight, y.shape[0])
            pred = self.predict(X)
            ss_res = np.sum(w * (y - pred) ** 2)
            ss_tot = np.sum(w * (y - np.average(y, weights=w)) ** 2)
            return float(1.0 - ss_res / ss_tot) if ss_tot > 0 else 0.0

    class ClassifierMixin:  # type: ignore[no-redef]
        _estimator_type = "classifier"

        def score(self, X, y, sample_weight=None):
            """Accuracy, weighted by `sample_weight` when given (as scikit-learn's accuracy_score)."""
            import numpy as np

            correct = self.predict(X) == np.asarray(y)
            return float(np.average(correct, weights=_weights(sample_weight, correct.shape[0])))

    def _weights(sample_weight, n: int):
        import numpy as np

        if sample_weight is None:
            return np.ones(n)
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"sample_weight must be {n} finite non-negative weights with a positive sum")
        return w

try:  # pragma: no cover
    from sklearn.exceptions import NotFittedError
except ImportError:  # pragma: no cover
    class NotFittedError(ValueError, AttributeError):  # type: ignore[no-redef]
        """Raised by a method that needs a fitted model (scikit-learn's exception when it is installed)."""


def check_fitted(model, attribute: str) -> None:
    """NotFittedError naming the class when `model` has no `attribute` (what its fit sets)."""
    if not hasattr(model, attribute):
        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet; call fit first.")


try:  # pragma: no cover
    from sklearn.utils._param_validation import InvalidParameterError
except ImportError:  # pragma: no cover
    class InvalidParameterError(ValueError, TypeError):  # type: ignore[no-redef]
        """A hyperparameter of the wrong type or value (scikit-learn's class when it is installed): both a
        ValueError and a TypeError, so callers catching either convention see it."""


def fitted_state(model):
    """The training state of a fitted estimator; NotFittedError naming the class when it has none."""
    state = getattr(model, "training_state_", None)
    if state is None:
        raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet; call fit first.")
    return state
