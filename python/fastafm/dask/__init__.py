"""Data-parallel training across the workers of a dask.distributed cluster (fastafm.dask.estimators).

Needs the optional dependencies: pip install fastafm[dask].
"""
from .estimators import DaskAFMClassifier, DaskAFMRegressor

__all__ = ["DaskAFMClassifier", "DaskAFMRegressor"]
