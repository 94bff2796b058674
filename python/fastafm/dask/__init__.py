"""Data-parallel training across the workers of a dask.distributed cluster (fastafm.dask.estimators).

Needs the optional dependencies: pip install fastafm[dask].
"""
from .estimators import DaskAFMClassifier, DaskAFMRegressor, DaskFwFMClassifier, DaskFwFMRegressor

__all__ = ["DaskAFMClassifier", "DaskAFMRegressor", "DaskFwFMClassifier", "DaskFwFMRegressor"]
