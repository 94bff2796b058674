"""The type stub of the compiled module matches the module, and the package is marked typed.

The stub is a package: _core/__init__.pyi for fastafm._core and _core/_testing.pyi for its submodule of test
hooks (fastafm._core._testing), which the package itself never uses. When the binding changes (cpp/bindings/),
these tests fail until the stub is regenerated with tools/gen_stubs.sh.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import fastafm
from fastafm import _core

PACKAGE = Path(fastafm.__file__).parent
STALE = "python/fastafm/_core/*.pyi are out of date with the compiled module: rerun tools/gen_stubs.sh"
#: Each compiled module and the file of its stub.
MODULES = {"_core": (_core, "__init__.pyi"), "_core._testing": (_core._testing, "_testing.pyi")}


def _parse(filename: str) -> ast.Module:
    path = PACKAGE / "_core" / filename
    assert path.is_file(), f"{path} is missing (is it packaged?)"
    return ast.parse(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def stub() -> ast.Module:
    return _parse("__init__.pyi")


@pytest.fixture(scope="module", params=sorted(MODULES))
def module_and_stub(request):
    module, filename = MODULES[request.param]
    return module, _parse(filename)


def defined_names(body) -> dict[str, list[ast.AST]]:
    """Names a module or class body defines (functions, classes, annotated or plain assignments)."""
    names: dict[str, list[ast.AST]] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.setdefault(node.target.id, []).append(node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, []).append(node)
    return names


def public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def runtime_signatures(func) -> set[tuple[str, ...]]:
    """Argument names of each signature pybind11 writes at the top of a function's docstring."""
    name = func.__name__
    sigs = set()
    for line in (func.__doc__ or "").splitlines():
        m = re.match(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> ", line)
        if m and m.group(1) != "*args, **kwargs":
            sigs.add(tuple(re.findall(r"(?:^|, )\*{0,2}(\w+)(?::|$|,)", m.group(1))))
    return sigs


def stub_signatures(defs) -> set[tuple[str, ...]]:
    out = set()
    for node in defs:
        a = node.args
        out.add(tuple(x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]))
    return out


def test_package_is_marked_typed():
    assert (PACKAGE / "py.typed").is_file()


def test_the_stub_is_a_package_of_the_module_and_its_submodule():
    assert not (PACKAGE / "_core.pyi").exists(), "a stale single-file stub would shadow the stub package"
    assert sorted(p.name for p in (PACKAGE / "_core").iterdir()) == ["__init__.pyi", "_testing.pyi"]
    assert _core._testing.__name__ == "fastafm._core._testing"


def test_stub_names_equal_the_module_names(module_and_stub):
    module, stub = module_and_stub
    names = defined_names(stub.body)
    assert public(names) == public(dir(module)), STALE
    if module is _core:
        assert "__version__" in names
    declared_all = next(ast.literal_eval(node.value) for node in stub.body
                        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "__all__")
    assert set(declared_all) == public(dir(module)), STALE


def test_stub_function_arguments_equal_the_module_signatures(module_and_stub):
    module, stub = module_and_stub
    names = defined_names(stub.body)
    functions = [n for n in public(dir(module)) if callable(getattr(module, n))
                 and not isinstance(getattr(module, n), type)]
    assert functions, f"no functions found in {module.__name__}"
    for name in functions:
        defs = [d for d in names.get(name, []) if isinstance(d, ast.FunctionDef)]
        assert defs, f"{name} is not a function in the stub; {STALE}"
        expected = runtime_signatures(getattr(module, name))
        assert expected, f"could not read the signature of {module.__name__}.{name} from its docstring"
        assert stub_signatures(defs) == expected, f"{module.__name__}.{name}: {STALE}"


def test_the_package_never_uses_the_test_hooks():
    """fastafm._core._testing is for tests, benchmarks and fuzzers: no module of the package names it."""
    users = sorted(path.name for path in PACKAGE.glob("*.py") if "_testing" in path.read_text(encoding="utf-8"))
    assert users == [], f"modules of the package that name _core._testing: {users}"


def test_stub_classes_have_the_module_attributes(stub):
    names = defined_names(stub.body)
    classes = [n for n in public(dir(_core)) if isinstance(getattr(_core, n), type)]
    assert {"Loss", "Optimizer", "TrainConfig"} <= set(classes)
    for name in classes:
        (node,) = [d for d in names[name] if isinstance(d, ast.ClassDef)]
        assert public(defined_names(node.body)) == public(dir(getattr(_core, name))), f"_core.{name}: {STALE}"
