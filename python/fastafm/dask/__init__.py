"""Data-parallel training across the workers of a dask.distributed cluster (fastafm.dask.estimators), and raw logs
converted on the workers (fastafm.dask.raw.convert).

Needs the optional dependencies: pip install fastafm[dask].
"""
from .estimators import DaskAFMClassifier, DaskAFMRegressor, DaskFwFMClassifier, DaskFwFMRegressor
from .raw import RawLog, convert

__all__ = ["DaskAFMClassifier", "DaskAFMRegressor", "DaskFwFMClassifier", "DaskFwFMRegressor", "RawLog", "convert"]
