"""fastafm: Attentional Factorization Machines (Xiao et al., IJCAI 2017) trained on the CPU by a C++17/OpenMP core.

Public API
----------
AFMRegressor, AFMClassifier    scikit-learn style estimators
from_fields, make_planted      building sparse rows
FieldEncoder                   pandas DataFrame -> one-field-per-column sparse rows (needs pandas)
load_libfm                     libFM/libSVM files, parsed in C++
load                           read a model written by `model.save(path)`
reference                      the float64 NumPy reference implementation (the tests' oracle)
"""
from . import metrics, reference
from ._core import __version__
from .data import from_fields, make_planted
from .encoder import FieldEncoder
from .estimators import AFMClassifier, AFMRegressor
from .io import load_libfm
from .persistence import load_model as load

__all__ = [
    "AFMClassifier",
    "AFMRegressor",
    "FieldEncoder",
    "__version__",
    "from_fields",
    "load",
    "load_libfm",
    "make_planted",
    "metrics",
    "reference",
]
