"""§1 isotropic activations: equivariance ``f(Qz) = Q f(z)`` under the orthogonal group.

For ``f(z) = g(N(z; o)) z`` with ``N(z; o) = sqrt(o + |z|^2)`` and any ``Q`` with ``Q^T Q = I``::

    |Qz|^2 + o = z^T Q^T Q z + o = |z|^2 + o          (norm invariance, the argument identity)
    f(Qz) = g(N(Qz; o)) Qz = g(N(z; o)) Qz = Q f(z)   (equivariance)

Any width (:func:`any_width`): ``z`` an ``n x 1`` and ``Q`` an ``n x n`` matrix symbol of
symbolic size ``n`` with the hypothesis ``Q^T Q = I`` (:func:`proofs._matrices.orthogonal`); the
gain of ``f(Qz)`` is ``g(N(Qz; o))``, built from ``Qz`` itself, and is identified with
``g(N(z; o))`` only after the argument identity is proven. Second, independent check with
every entry symbolic for rotations (Cayley transform, ``n = 2, 3, 4``) and reflections
(Householder, ``n = 2, 3, 4``), with ``o > 0`` and ``o = 0``. Controls (``broken=``): an
arbitrary ``P`` without the hypothesis, and elementwise tanh.

Example::

    >>> from isoproof.proofs import equivariance
    >>> equivariance.rotation_without_length().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._matrices import orthogonal
from ._symbolic import (
    activation_trace,
    cayley,
    householder,
    radial_length,
    reduce,
    stack,
    trace_residual,
    vector,
)

__all__ = [
    "SIZES",
    "any_width",
    "equivariance_residual",
    "norm_invariance",
    "reflection",
    "reflection_without_length",
    "rotation",
    "rotation_without_length",
]

#: Concrete widths checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)

_o = sp.Symbol("o", positive=True)


def equivariance_residual(q: sp.MatrixBase, o: sp.Expr, broken: str | None = None) -> sp.Matrix:
    """Residual of ``f(Qz) = Q f(z)`` for a symbolic ``z``, two steps (:func:`trace_residual`).

    Step one: ``N(Qz; o)^2 - N(z; o)^2`` reduces to 0 (both read off the lengths that built the
    gains). Step two: with ``g(N(Qz; o)) -> g(N(z; o))``, ``f(Qz) - Q f(z)`` reduces to 0.
    ``broken="elementwise"`` uses elementwise tanh for ``f`` instead (a control).
    """
    z = vector("z", q.rows)
    if broken == "elementwise":
        residual = (q * z).applyfunc(sp.tanh) - q * z.applyfunc(sp.tanh)
        return reduce(residual)
    return trace_residual(activation_trace(z, o, left=q), activation_trace(q * z, o))


def _sizes(broken: str | None) -> tuple[int, ...]:
    """All :data:`SIZES` for a claim; the first only for a control (one failure is enough)."""
    return SIZES[:1] if broken else SIZES


def _q(q: sp.MatrixBase, broken: str | None) -> sp.MatrixBase:
    """``Q``, or ``2 Q`` (not orthogonal) for ``broken="scaled"``."""
    return 2 * q if broken == "scaled" else q


def _orthogonality(q: sp.MatrixBase) -> sp.Matrix:
    """``Q^T Q - I``, reduced."""
    return reduce(q.T * q - sp.eye(q.rows))


def rotation(broken: str | None = None) -> sp.Matrix:
    """``Q^T Q = I`` and ``f(Qz) = Q f(z)`` for Cayley rotations, ``n = 2, 3, 4``, ``o > 0``.

    ``broken="elementwise"`` (a control): elementwise tanh, at ``n = 2`` only (enough to fail).
    """
    if broken == "elementwise":
        return equivariance_residual(cayley(2), _o, broken)
    return stack(
        *[
            stack(_orthogonality(cayley(n)), equivariance_residual(cayley(n), _o, broken))
            for n in SIZES
        ]
    )


def rotation_without_length(broken: str | None = None) -> sp.Matrix:
    """``f(Qz) = Q f(z)`` for Cayley rotations, ``n = 2, 3, 4``, no intrinsic length (o = 0).

    ``broken="scaled"``: ``2 Q`` (a control, as for the other concrete checks here).
    """
    return stack(*[equivariance_residual(_q(cayley(n), broken), sp.S.Zero) for n in _sizes(broken)])


def reflection(broken: str | None = None) -> sp.Matrix:
    """``H^T H = I`` and ``f(Hz) = H f(z)`` for Householder reflections, ``n = 2, 3, 4``."""
    return stack(
        *[
            stack(_orthogonality(_q(householder(n), broken)),
                  equivariance_residual(_q(householder(n), broken), _o))
            for n in _sizes(broken)
        ]
    )  # fmt: skip


def reflection_without_length(broken: str | None = None) -> sp.Matrix:
    """``f(Hz) = H f(z)`` for Householder reflections, ``n = 2, 3, 4``, ``o = 0``."""
    return stack(
        *[equivariance_residual(_q(householder(n), broken), sp.S.Zero) for n in _sizes(broken)]
    )


def norm_invariance(broken: str | None = None) -> sp.Matrix:
    """``|Qz|^2 + o - (|z|^2 + o) = 0`` for Cayley and Householder ``Q``, ``n = 2, 3, 4``."""
    parts: list[sp.Expr] = []
    for n in _sizes(broken):
        z = vector("z", n)
        for q in (_q(cayley(n), broken), _q(householder(n), broken)):
            parts.append(reduce(radial_length(q * z, _o) ** 2 - radial_length(z, _o) ** 2))
    return stack(*parts)


def any_width(broken: str | None = None) -> sp.Matrix:
    """Any ``n``: ``Q^T Q = I_n`` gives ``f(Qz) = g(N(Qz; o)) Qz = Q f(z)``, ``o > 0`` and 0.

    ``broken="no_hypothesis"``: ``Q`` an arbitrary ``n x n`` matrix symbol (a control).
    """
    n = sp.Symbol("n", integer=True, positive=True)
    q = sp.MatrixSymbol("Q", n, n) if broken == "no_hypothesis" else orthogonal("Q", n)
    z = vector("z", n)
    return stack(
        *[
            trace_residual(activation_trace(z, o, left=q), activation_trace(q * z, o))
            for o in (_o, sp.S.Zero)
        ]
    )
