"""fastafm: Attentional Factorization Machines (Xiao et al., IJCAI 2017) trained on the CPU by a C++17/OpenMP core.

Public API
----------
AFMRegressor, AFMClassifier    scikit-learn style estimators
FMRegressor, FMClassifier      the factorization machine baseline (warm start for AFM: fit(..., init=fm))
FwFMRegressor, FwFMClassifier  field-weighted FM (a learned weight per field pair; fields=...)
field_array, fields_of_ids     the field of every feature, checked / from from_fields' id matrix
load_libffm                    libFFM files (label field:feature:value) -> (X, y, fields)
field_pair_attention           mean attention weight per pair of fields
field_pair_terms               the field-pair tables (r, s) of a field-aware AFM or an FwFM, from its weights
from_fields, make_planted      building sparse rows; make_clicks: a synthetic click log
FieldEncoder                   pandas DataFrame -> one-field-per-column sparse rows (needs pandas)
load_libfm                     libFM/libSVM files, parsed in C++
convert, CacheFile             binary row caches for out-of-core training: fit(CacheFile(path)) streams it
load                           read a model written by `model.save(path)`
set_max_pairs_per_row          the limit on feature pairs per row of AFM with attention (max_pairs_per_row())
reference                      the float64 NumPy reference implementation (the tests' oracle)
plot                           figures (needs matplotlib); imported on first access of fastafm.plot
onnx                           ONNX export for serving (needs onnx); imported on first access of fastafm.onnx
"""
import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING, Any as _Any, List as _List

from . import metrics
from . import reference
from ._core import __version__
from .data.cache import CacheFile
from .rawlog import convert
from .data.synthetic import from_fields, make_clicks, make_planted
from .data.fields import field_array, fields_of_ids
from .data.libffm import load_libffm
from . import reference_fwfm
from . import reference_field_afm
from . import reference_bf16
from .data.libfm import load_libfm
from .data.limits import RowTooLongError, max_pairs_per_row, set_max_pairs_per_row

if _TYPE_CHECKING:  # imported on first access (below): they need scikit-learn (and pandas), 180 MiB and 2 s
    from .data.encoder import FieldEncoder
    from .interpret import field_pair_attention, field_pair_terms
    from .models.estimators import (AFMClassifier, AFMRegressor, FMClassifier, FMRegressor, FwFMClassifier,
                                    FwFMRegressor)
    from .models.persistence import load_model as load

# Names whose modules import scikit-learn's base classes (fastafm._compat), imported on first access so that
# `import fastafm` and `fastafm.convert` of a raw log stay light: {name: (module, attribute)}.
_LAZY_NAMES = {
    **{name: ("models.estimators", name) for name in (
        "AFMClassifier", "AFMRegressor", "FMClassifier", "FMRegressor", "FwFMClassifier", "FwFMRegressor")},
    "FieldEncoder": ("data.encoder", "FieldEncoder"),
    "field_pair_attention": ("interpret", "field_pair_attention"),
    "field_pair_terms": ("interpret", "field_pair_terms"),
    "load": ("models.persistence", "load_model"),
}

__all__ = [
    "AFMClassifier",
    "AFMRegressor",
    "CacheFile",
    "FMClassifier",
    "FMRegressor",
    "FieldEncoder",
    "FwFMClassifier",
    "FwFMRegressor",
    "field_array",
    "fields_of_ids",
    "load_libffm",
    "reference_fwfm",
    "reference_field_afm",
    "reference_bf16",
    "__version__",
    "convert",
    "field_pair_attention",
    "field_pair_terms",
    "from_fields",
    "load",
    "load_libfm",
    "make_clicks",
    "make_planted",
    "metrics",
    "reference",
    "RowTooLongError",
    "max_pairs_per_row",
    "set_max_pairs_per_row",
]

# Submodules with optional dependencies, imported on first attribute access (PEP 562) so that `import fastafm`
# imports neither matplotlib nor onnx. Not in __all__: `from fastafm import *` should not import them either.
_LAZY_SUBMODULES = ("onnx", "plot")


def __getattr__(name: str) -> _Any:
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)  # also binds it as an attribute of the package
    if name in _LAZY_NAMES:
        module, attribute = _LAZY_NAMES[name]
        value = getattr(_importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> _List[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | set(_LAZY_NAMES))
