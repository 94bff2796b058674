"""Shared fixtures: seeded random sparse rows and models, built fresh for every test."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from fastafm import _core


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
