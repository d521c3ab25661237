"""§1 isotropic activations: equivariance ``f(Qz) = Q f(z)`` under the orthogonal group.

For ``f(z) = g(N(z; o)) z`` with ``N(z; o) = sqrt(o + |z|^2)`` and any ``Q`` with ``Q^T Q = I``::

    |Qz|^2 + o = z^T Q^T Q z + o = |z|^2 + o          (norm invariance, the argument identity)
    f(Qz) = g(N(Qz; o)) Qz = g(N(z; o)) Qz = Q f(z)   (equivariance)

Checked exactly with every entry symbolic, for rotations (Cayley transform, ``n = 2, 3, 4``) and
reflections (Householder, ``n = 2, 3, 4``), with a symbolic intrinsic length ``o > 0`` and
without one (``o = 0``); the general-``n`` statement is proven on matrix expressions.

Example::

    >>> from isoproof.proofs import equivariance
    >>> equivariance.rotation_without_length().is_zero_matrix
    True
"""

from __future__ import annotations

from typing import cast

import sympy as sp

from ._symbolic import (
    cayley,
    g,
    householder,
    isotropic,
    radial_length,
    reduce,
    stack,
    vector,
)

__all__ = [
    "SIZES",
    "any_size",
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


def equivariance_residual(q: sp.MatrixBase, o: sp.Expr) -> sp.Matrix:
    """Residual of ``f(Qz) = Q f(z)`` for a symbolic ``z``, two steps.

    Step one: ``(o + |Qz|^2) - (o + |z|^2)`` reduces to 0. Step two: with
    ``g(N(Qz; o)) -> g(N(z; o))`` (justified by step one), ``f(Qz) - Q f(z)`` reduces to 0.
    """
    z = vector("z", q.rows)
    f_z, g_z = isotropic(z, o)
    f_qz, g_qz = isotropic(q * z, o)
    # the argument identity is taken on the lengths that built the two gains (one source)
    argument = reduce(radial_length(q * z, o) ** 2 - radial_length(z, o) ** 2)
    subs = {g_qz: g_z} if argument == 0 else {}
    return stack(argument, reduce(f_qz.xreplace(subs) - q * f_z))


def _orthogonality(q: sp.MatrixBase) -> sp.Matrix:
    """``Q^T Q - I``, reduced."""
    return reduce(q.T * q - sp.eye(q.rows))


def rotation() -> sp.Matrix:
    """``Q^T Q = I`` and ``f(Qz) = Q f(z)`` for Cayley rotations, ``n = 2, 3, 4``, ``o > 0``."""
    return stack(
        *[stack(_orthogonality(cayley(n)), equivariance_residual(cayley(n), _o)) for n in SIZES]
    )


def rotation_without_length() -> sp.Matrix:
    """``f(Qz) = Q f(z)`` for Cayley rotations, ``n = 2, 3, 4``, no intrinsic length (o = 0)."""
    return stack(*[equivariance_residual(cayley(n), sp.S.Zero) for n in SIZES])


def reflection() -> sp.Matrix:
    """``H^T H = I`` and ``f(Hz) = H f(z)`` for Householder reflections, ``n = 2, 3, 4``."""
    return stack(
        *[
            stack(_orthogonality(householder(n)), equivariance_residual(householder(n), _o))
            for n in SIZES
        ]
    )


def reflection_without_length() -> sp.Matrix:
    """``f(Hz) = H f(z)`` for Householder reflections, ``n = 2, 3, 4``, ``o = 0``."""
    return stack(*[equivariance_residual(householder(n), sp.S.Zero) for n in SIZES])


def norm_invariance() -> sp.Matrix:
    """``|Qz|^2 + o - (|z|^2 + o) = 0`` for Cayley and Householder ``Q``, ``n = 2, 3, 4``."""
    parts: list[sp.Expr] = []
    for n in SIZES:
        z = vector("z", n)
        for q in (cayley(n), householder(n)):
            parts.append(reduce(radial_length(q * z, _o) ** 2 - radial_length(z, _o) ** 2))
    return stack(*parts)


def any_size() -> sp.Matrix:
    """General ``n``: ``Q^T Q = I_n`` implies ``(Qz)^T (Qz) = z^T z`` and ``f(Qz) = Q f(z)``.

    Proven on matrix expressions of symbolic dimension ``n``: ``(Qz)^T (Qz)`` expands to
    ``z^T Q^T Q z``, the hypothesis ``Q^T Q -> I_n`` is substituted and ``z^T z`` subtracted;
    then ``g(sqrt(o + z^T z)) Qz - Q (g(sqrt(o + z^T z)) z)`` is formed. The residual is the
    generic entry ``[i, 0]`` of both (zero iff the matrix expression is the zero matrix).
    """
    n = sp.Symbol("n", integer=True, positive=True)
    i = sp.Symbol("i", integer=True, nonnegative=True)
    z = sp.MatrixSymbol("z", n, 1)
    q = sp.MatrixSymbol("Q", n, n)
    qz = cast(sp.MatrixExpr, q * z)
    squared = cast(sp.MatrixExpr, (qz.T * qz).doit())
    z_sq = cast(sp.MatrixExpr, z.T * z)
    argument = cast(sp.MatrixExpr, (squared.subs(q.T * q, sp.Identity(n)) - z_sq).doit())
    gain = g(sp.sqrt(_o + z_sq[0, 0]))
    equivariance = cast(sp.MatrixExpr, (gain * qz - q * (gain * z)).doit())
    return stack(argument[0, 0], equivariance[i, 0])
