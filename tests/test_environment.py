"""The test extra is installed: the suite's `pytest.importorskip` calls guard optional packages for users who
run single files without the extra, so in a run with the extra (CI, the README's command) none may skip. This
test fails instead when a package of `pip install ".[test]"` cannot be imported."""
from __future__ import annotations

import importlib
import os
import re
import warnings

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODULE_OF = {"scikit-learn": "sklearn", "pytest-benchmark": "pytest_benchmark"}  # distribution -> import name


def _test_extra() -> list:
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as fh:
        text = fh.read()
    line = re.search(r"^test = \[(.*)\]$", text, re.M)
    assert line, "pyproject.toml has no test extra"
    names = [re.match(r"[A-Za-z0-9_.-]+", item.strip().strip('"')).group(0) for item in line.group(1).split(",")]
    return [MODULE_OF.get(name, name.replace("-", "_")) for name in names]


@pytest.mark.parametrize("module", _test_extra())
def test_every_package_of_the_test_extra_imports(module):
    with warnings.catch_warnings():  # only importability is tested here (shap's imports warn of deprecations)
        warnings.simplefilter("ignore")
        importlib.import_module(module)
