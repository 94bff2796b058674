"""The package's structure (issue 11): every estimator's signature agrees with the one hyperparameter table,
the README shows that table, python/fastafm has no import cycle, no module reads another module's private
attributes, and FM and AFM are siblings."""
from __future__ import annotations

import ast
import inspect
import os
import re

import pytest

import fastafm
from fastafm.models import hyperparams as _hyperparams
from fastafm.models import registry as _registry

PACKAGE = os.path.dirname(fastafm.__file__)
# The checkout (or, in tools/wheel_roundtrip.sh, the folder the tests and README.md are copied to): found from
# this file, not from the package, which is in site-packages when installed normally.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def signature_mismatches(cls, signature) -> list:
    """How `cls.__init__` differs from the table's `signature` (names in order, and defaults)."""
    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    names = tuple(p.name for p in params)
    problems = []
    if names != signature.names:
        problems.append(f"{cls.__name__} takes {names}, the table says {signature.names}")
    for p in params:
        if p.name in signature.names and p.default != signature.default(p.name):
            problems.append(f"{cls.__name__}.{p.name} defaults to {p.default!r}, the table says "
                            f"{signature.default(p.name)!r}")
    return problems


def _estimators():
    out = [(fastafm.AFMRegressor, "afm"), (fastafm.AFMClassifier, "afm_classifier"), (fastafm.FMRegressor, "fm"),
           (fastafm.FMClassifier, "fm_classifier")]
    try:
        from fastafm.dask import DaskAFMClassifier, DaskAFMRegressor, DaskFwFMClassifier, DaskFwFMRegressor
    except ImportError:
        return out
    return out + [(DaskAFMRegressor, "dask"), (DaskAFMClassifier, "dask_classifier"),
                  (DaskFwFMRegressor, "dask_fwfm"), (DaskFwFMClassifier, "dask_fwfm_classifier")]


@pytest.mark.parametrize("cls, family", _estimators(), ids=lambda v: getattr(v, "__name__", v))
def test_every_signature_agrees_with_the_hyperparameter_table(cls, family):
    assert signature_mismatches(cls, _hyperparams.SIGNATURES[family]) == []
    if family.startswith("dask"):
        assert cls._signature == family  # what the Dask estimator validates against
    else:
        assert _registry.kind(cls).signature is _hyperparams.SIGNATURES[family]


def test_the_signature_check_sees_a_drift():
    class Drifted(fastafm.FMRegressor):
        def __init__(self, embedding_dim=32, dropout=0.5, l2=0.0, learning_rate=0.05, optimizer="adagrad",
                     batch_size=128, n_epochs=20, init_std=0.01, n_threads=0, random_state=None, verbose=0,
                     early_stopping="auto"):
            pass

    problems = signature_mismatches(Drifted, _hyperparams.SIGNATURES["fm"])
    assert any("takes" in p for p in problems) and any("embedding_dim defaults to 32" in p for p in problems)


def test_every_table_entry_validates_its_default():
    for hp in _hyperparams.TABLE:
        hp.constraint.check(hp.default, hp.name)


def test_readme_shows_the_hyperparameter_table():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    assert _hyperparams.markdown_table() in readme, "regenerate it: python -m fastafm.models.hyperparams"


def test_cli_options_come_from_the_table():
    from fastafm.cli import build_parser

    train = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    options = {opt for action in train._actions for opt in action.option_strings}
    assert {hp.cli for hp in _hyperparams.TABLE if hp.cli} <= options


# ---------------------------------------------------------------------------------------------- imports
def _modules() -> dict:
    """{dotted name under fastafm ("models.fitting"; a subpackage's __init__ as "models"): its AST}."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        rel = os.path.relpath(folder, PACKAGE)
        parts = [] if rel == "." else rel.split(os.sep)
        for name in sorted(files):
            if name.endswith(".py"):
                dotted = ".".join(parts + ([] if name == "__init__.py" else [name[:-3]])) or "__init__"
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    out[dotted] = ast.parse(fh.read())
    return out


def _is_package(module: str) -> bool:
    return module == "__init__" or os.path.isdir(os.path.join(PACKAGE, *module.split(".")))


def _imports(module: str, tree, known=None) -> set:
    """The package modules `module` imports anywhere (top level or inside functions), as dotted names."""
    known = known if known is not None else _modules()
    here = [] if module == "__init__" else module.split(".")
    package = here if _is_package(module) else here[:-1]
    found = set()

    def add(name: str) -> None:
        while name and name not in known:  # an attribute of a module: the module
            name = name.rpartition(".")[0]
        found.add(name or "__init__")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
            elif node.module and node.module.startswith("fastafm"):
                base, node_module = [], node.module.split(".", 1)[1] if "." in node.module else ""
                target = node_module
                for alias in node.names:
                    add(".".join(p for p in (target, alias.name) if p))
                continue
            else:
                continue
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                add(".".join(p for p in (target, alias.name) if p))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("fastafm."):
                    add(a.name.split(".", 1)[1])
    return found - {module}


def test_no_import_cycle():
    modules = _modules()
    graph = {m: {d for d in _imports(m, tree, modules) if d in modules} for m, tree in modules.items()
             if m != "__init__"}
    graph = {m: deps - {"__init__"} for m, deps in graph.items()}
    state: dict = {}

    def visit(m, path):
        state[m] = "open"
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, path + [dep])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_no_module_reads_private_attributes_of_another_modules_objects():
    """`obj._name` is only read on self/cls (or a module's own names); modules of the package (fastafm._core,
    fastafm.data.validation ...) are reached by their public names."""
    allowed_owners = {"self", "cls", "super"}
    offenders = []
    for module, tree in _modules().items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and re.match(r"_[a-z]", node.attr)):
                continue
            owner = node.value
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue
            if isinstance(owner, ast.Name) and owner.id in allowed_owners:
                continue
            offenders.append(f"{module}.py:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_fm_and_afm_are_siblings():
    assert not issubclass(fastafm.FMRegressor, fastafm.AFMRegressor)
    assert not issubclass(fastafm.FMClassifier, fastafm.AFMClassifier)
    assert not issubclass(fastafm.AFMRegressor, fastafm.FMRegressor)
    base = fastafm.models.base._Base
    assert all(issubclass(c, base) for c in (fastafm.AFMRegressor, fastafm.AFMClassifier, fastafm.FMRegressor,
                                             fastafm.FMClassifier))


# ---------------------------------------------------------------------------------------------- rooms
def test_the_package_is_in_rooms_of_one_purpose():
    """Subpackages name the architecture; no module over 600 lines, no class over 250."""
    modules = _modules()
    subpackages = {m for m in modules if _is_package(m) and m != "__init__"}
    assert {"models", "objectives", "training", "data", "dask", "cli"} <= subpackages
    too_long = []
    for m, tree in modules.items():
        path = os.path.join(PACKAGE, *m.split(".")) + ("/__init__.py" if _is_package(m) else ".py")
        with open(path if m != "__init__" else os.path.join(PACKAGE, "__init__.py"), encoding="utf-8") as fh:
            n_lines = len(fh.read().splitlines())
        if n_lines > 600:
            too_long.append(f"{m}: {n_lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 250:
                too_long.append(f"{m}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []


def test_only_the_package_root_imports_the_oracle():
    """fastafm.reference is the tests' float64 oracle: no module of the package uses it (the root re-exports it)."""
    modules = _modules()
    for oracle in ("reference", "reference_fwfm", "reference_field_afm", "reference_bf16"):
        users = sorted(m for m, tree in modules.items() if oracle in _imports(m, tree, modules))
        assert users == ["__init__"], oracle


def test_the_dask_driver_trains_through_the_shared_pipeline():
    """No Dask module reaches the core's training itself: the workers train through
    fastafm.training.engine.CoreTrainer over the row sources of fastafm.training."""
    for m, tree in _modules().items():
        if m.split(".")[0] != "dask":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("train_epoch", "Trainer", "TrainConfig"):
                raise AssertionError(f"{m}.py:{node.lineno}: {ast.unparse(node)}")


def test_the_cores_public_names_hold_no_test_hooks():
    """Test-only hooks live in fastafm._core._testing; the one training entry point is _core.Trainer."""
    from fastafm import _core

    hooks = {"train_epoch", "batch_gradients", "dropout_mask", "gemm", "set_pair_tile", "set_pair_layout",
             "adagrad_update_", "sgd_update_", "adam_update_", "gemm_bf16", "predict_bf16"}
    assert hooks & set(dir(_core)) == set()
    assert hooks <= set(dir(_core._testing)) and hasattr(_core, "Trainer")
