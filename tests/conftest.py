"""Shared fixtures: seeded random sparse rows and models, built fresh for every test; the Dask tests' cluster."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from fastafm import _core
from fastafm._core import _testing


@pytest.fixture
def rng(request):
    # A fresh, reproducible stream per test (seeded by the test's name).
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


@pytest.fixture(params=_core.supported_isas())
def isa(request):
    # Each kernel path this CPU has, selected for the test and restored after it.
    before = _core.active_isa()
    _core.select_isa(request.param)
    yield request.param
    _core.select_isa(before)


@pytest.fixture(params=["rows", "pairs"])
def pair_layout(request):
    # Each layout of the block kernels (rows: E is pairs x k; pairs: E^T is k x pairs), forced for the test.
    before = _testing.set_pair_layout(request.param)
    yield request.param
    _testing.set_pair_layout(before)


@pytest.fixture(scope="module")
def client():
    # A 2-worker Dask cluster per test module. Threads, not processes: starts in a fraction of a second, and
    # the core releases the GIL while it trains. The dashboard on a free port: another cluster on the machine
    # (on 8787) must not fail the suite. Imported here so that only the Dask tests pay for it.
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c
