"""The test extra is installed: the suite's `pytest.importorskip` calls guard optional packages for users who
run single files without the extra, so in a run with the extra (CI, the README's command, the wheel round trip)
none may skip. This test fails instead when a package of `pip install ".[test]"` cannot be imported. The
extra's packages come from the installed distribution's metadata (the wheel round trip has no pyproject.toml)."""
from __future__ import annotations

import importlib
import importlib.metadata
import re
import warnings

import pytest

MODULE_OF = {"scikit-learn": "sklearn", "pytest-benchmark": "pytest_benchmark"}  # distribution -> import name


def _test_extra() -> list:
    requires = importlib.metadata.requires("fastafm") or []
    names = [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in requires
             if re.search(r"""extra\s*==\s*["']test["']""", r)]
    assert names, "fastafm's metadata lists no test extra"
    return [MODULE_OF.get(name, name.replace("-", "_")) for name in names]


@pytest.mark.parametrize("module", _test_extra())
def test_every_package_of_the_test_extra_imports(module):
    with warnings.catch_warnings():  # only importability is tested here (shap's imports warn of deprecations)
        warnings.simplefilter("ignore")
        importlib.import_module(module)
