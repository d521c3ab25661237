"""The layering contract, checked on the source with ``ast`` (no import is executed).

* the core (``isoproof/`` outside ``isoproof/app/``) imports neither the exporters, nor the
  proofs, nor the application layer;
* the proofs import neither torch nor isoproof (they are SymPy only);
* the exporters import the core but never the application layer or the proofs;
* no source file points outside the repository for its maths (the maths is in ``docs/``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("proofs", "exporters"):
        parts = ["isoproof", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in files:
        for name in imports_of(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return sorted(set(bad))


def test_core_imports_no_exporters_proofs_or_app() -> None:
    # isoproof/__main__.py is ``python -m isoproof``: the command line's entry, part of the app
    app = ("app", "__main__.py")
    core = [p for p in _sources("isoproof") if p.relative_to(ROOT).parts[1] not in app]
    assert len(core) > 20
    forbidden = ("isoproof.exporters", "isoproof.proofs", "isoproof.app", "exporters", "proofs")
    assert _violations(core, forbidden) == []


def test_proofs_import_neither_torch_nor_isoproof() -> None:
    files = _sources("proofs")
    assert _violations(files, ("torch", "numpy")) == []
    own = [
        f"{p.relative_to(ROOT)} imports {n}"
        for p in files
        for n in imports_of(p)
        if (n == "isoproof" or n.startswith("isoproof.")) and not n.startswith("isoproof.proofs")
    ]
    assert own == []


def test_exporters_import_no_app_and_no_proofs() -> None:
    assert _violations(_sources("exporters"), ("isoproof.app", "isoproof.proofs", "proofs")) == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    """The contract test can fail: a core-like file importing the exporters is reported."""
    bad = ROOT / "isoproof" / "_contract_probe_tmp.py"
    bad.write_text("from .exporters import export_onnx\nimport torch\n", encoding="utf-8")
    try:
        assert _violations([bad], ("isoproof.exporters",)) == [
            "isoproof/_contract_probe_tmp.py imports isoproof.exporters",
            "isoproof/_contract_probe_tmp.py imports isoproof.exporters.export_onnx",
        ]
    finally:
        bad.unlink()


@pytest.mark.parametrize("folder", ["isoproof", "proofs", "exporters", "benchmarks", "tests"])
def test_no_reference_outside_the_repository(folder: str) -> None:
    needle = "../" + "shared"
    files = _sources(folder)
    offenders = [str(p.relative_to(ROOT)) for p in files if needle in p.read_text("utf-8")]
    assert offenders == []


# --------------------------------------------------------------------------- function length
MAX_FUNCTION_LINES = 80


def long_functions(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``"path:line name (n lines)"`` for every function or method longer than ``limit`` lines
    (decorators and docstring included: ``end_lineno - lineno + 1`` of the ``def``)."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                    found.append(f"{rel}:{node.lineno} {node.name} ({n} lines)")
    return sorted(found)


def _library_files() -> list[Path]:
    return [p for f in ("isoproof", "proofs", "exporters", "benchmarks") for p in _sources(f)]


def test_no_function_over_80_lines_outside_tests() -> None:
    files = _library_files()
    assert len(files) > 40
    assert long_functions(files) == []


def test_the_length_checker_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    probe = tmp_path / "probe.py"
    probe.write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n", encoding="utf-8")
    assert [o.split(" ", 1)[1] for o in long_functions([probe], 80)] == ["long (81 lines)"]
    # the filter of the real test: an empty allow-list lets nothing through, a name exempts it
    assert [o.split(" ", 1)[1] for o in long_functions([probe])] == ["long (81 lines)"]


def test_lazy_table_lists_each_module_public_names() -> None:
    """The package's lazy table must be written out (reading ``ops.__all__`` would import torch
    for ``isoproof --version``), so it is checked against each module's own ``__all__``."""
    import importlib

    import isoproof

    for module, names in isoproof._LAZY.items():
        exported = set(getattr(importlib.import_module(f"isoproof.{module}"), "__all__", names))
        assert set(names) <= exported, module
    ops = importlib.import_module("isoproof.ops")
    assert set(isoproof._LAZY["ops"]) == set(ops.__all__)
