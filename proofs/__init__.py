"""SymPy proofs of the isotropic method's invariances, run in CI with a machine-readable report.

Each claim of the method note (``§1`` isotropic activations ... ``§5`` neurogenesis) is a
:class:`~proofs.registry.Claim` whose check returns an exact residual, identically zero when
the identity holds; "any n" claims are proven on matrix expressions of symbolic size. Every
claim has negative controls: its own check with one thing broken (``broken=``), which the same
proof path must fail to prove. SymPy only: nothing here imports torch.

Run ``python -m proofs --json out/proofs.json --junit out/proofs.xml`` (or ``isoproof prove``);
the exit status is 0 iff every claim is proved and no control is. The JSON report carries the
run's wall and CPU seconds. pytest collects one test per claim from ``tests/test_proofs.py``.

Example::

    >>> import isoproof.proofs as proofs
    >>> report = proofs.run(["equivariance.any_n", "control.equivariance.any_n.no_hypothesis"])
    >>> report.ok, [r.status for r in report.results]
    (True, ['proved', 'not proved'])
"""

from __future__ import annotations

import importlib
from typing import Any

#: Module -> the public names it provides, imported on first use (PEP 562), so that importing
#: :mod:`proofs.options` (the ``isoproof`` parser does) does not import SymPy.
_LAZY = {
    "registry": ("Claim", "claims"),
    "report": ("Report", "Result"),
    "runner": ("evaluate", "main", "run"),
}
_SOURCE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _SOURCE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["Claim", "Report", "Result", "claims", "evaluate", "main", "run"]
