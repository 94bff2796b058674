"""Shared fixtures: seeded random sparse rows and models, built fresh for every test."""
from __future__ import annotations

import zlib

import numpy as np
import pytest



@pytest.fixture
def rng(request):
    # A fresh, reproducible stream per test (seeded by the test's name).
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
