"""The prover's own counter-examples: the engine must refuse false identities.

Like e3nn testing its equivariance tester, the run checks the zero test, the exact reduction
and the two-step gain matching of :mod:`proofs._symbolic` on fixed inputs whose answers are
known. :func:`soundness` returns one entry per check, ``0`` iff the engine answered correctly,
so a broken engine (a zero test that is always true, a reduction that returns 0 for symbolic
input, gain matching that always substitutes) fails the run through the ordinary runner.

Example::

    >>> from isoproof.proofs import engine
    >>> engine.soundness().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from . import _symbolic

__all__ = ["soundness"]


def _wrong(ok: bool) -> sp.Expr:
    return sp.S.Zero if ok else sp.S.One


def soundness(broken: str | None = None) -> sp.Matrix:
    """``0`` per correct engine answer (calls go through the module, so patches are seen).

    ``broken="zero_test"`` (a control) asks a zero test that always answers "zero".
    """
    x, y = sp.symbols("x y", real=True)
    is_zero = (lambda residual: True) if broken == "zero_test" else _symbolic.is_zero
    g = _symbolic.g
    identity = (x + y) ** 2 - x**2 - 2 * x * y - y**2
    before = _symbolic.Trace(sp.Matrix([g(sp.sqrt(x)) * y]), (x,), (g(sp.sqrt(x)),))
    after = _symbolic.Trace(sp.Matrix([g(sp.sqrt(y)) * y]), (y,), (g(sp.sqrt(y)),))
    _, subs = _symbolic.match_gains(before, after)
    return sp.Matrix(
        [
            _wrong(is_zero(sp.Matrix([identity]))),  # proves a true identity
            _wrong(not is_zero(sp.Matrix([x - y]))),  # refuses a false one
            _wrong(_symbolic.reduce(x * (y + 1) - x * y) == x),  # reduces symbolic input
            _wrong(not subs),  # never identifies g(N') with g(N) when N'^2 != N^2
            _wrong(not is_zero(_symbolic.trace_residual(before, after))),
        ]
    )
