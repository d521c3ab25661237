"""SymPy proofs of the isotropic method's invariances, run in CI with a machine-readable report.

Each claim of the method note (``§1`` isotropic activations ... ``§5`` neurogenesis) is a
:class:`~proofs.registry.Claim` whose check returns an exact residual, identically zero when
the identity holds; negative controls (near-misses such as elementwise tanh, or degeneration
without the ``o`` update) must return a demonstrably non-zero number. SymPy only: nothing here
imports torch.

Run ``python -m proofs --json out/proofs.json --junit out/proofs.xml`` (or ``isoproof prove``);
the exit status is 0 iff every claim holds and every control is refuted. pytest collects one
test per claim from ``tests/test_proofs.py``.

Measured: ``python -m proofs`` (24 claims, 6 controls) takes 10.6-12.3 s of CPU and 10.8-14.8 s
wall-clock on the 2-core development machine (5 runs, cores shared with other jobs); the target
is under 30 s. The slowest claim is ``diagonalisation.full`` (about 2.5 s).

Example::

    >>> import isoproof.proofs as proofs
    >>> report = proofs.run(["equivariance.reflection", "control.elementwise_tanh"])
    >>> report.ok, [r.status for r in report.results]
    (True, ['proved', 'refuted'])
"""

from .registry import Claim, claims
from .report import Report, Result
from .runner import evaluate, main, run

__all__ = ["Claim", "Report", "Result", "claims", "evaluate", "main", "run"]
