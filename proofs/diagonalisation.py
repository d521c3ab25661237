"""§3 diagonalisation: left and full diagonalisation leave the network function unchanged.

Write the weight of layer ``l`` through its singular value decomposition ``W_l = R L Q^T`` with
generic symbolic factors: ``R``, ``Q`` Cayley rotations and ``L`` rectangular-diagonal with
symbolic ``sigma_i``, so that ``R^T W_l = L Q^T`` and ``R^T W_l Q = L``. Then

left (any layer followed by an activation)::

    W_l <- L Q^T,  b_l <- R^T b_l,  psi_l <- R^T psi_l,  W_{l+1} <- W_{l+1} R

full (interior layer, activations on both sides)::

    W_l <- L,  b_l <- R^T b_l,  psi_l <- R^T psi_l,
    W_{l-1} <- Q^T W_{l-1},  b_{l-1} <- Q^T b_{l-1},  psi_{l-1} <- Q^T psi_{l-1},
    W_{l+1} <- W_{l+1} R

leave the output identical. Proof: the new pre-activations are ``Q^T z_{l-1}`` and ``R^T z_l``,
whose squared lengths equal the old ones (argument identities, step one), so the gains are
unchanged and ``W_{l+1} R (g R^T z_l) = W_{l+1} g z_l`` (step two). Checked on whole networks
(left at ``l = 0``, full at ``l = 1``: no psi before the layer) and on slices with psi on every
layer (left at ``l >= 1``, full at ``l >= 2``).

Any sizes (:func:`left_any` / :func:`full_any`): ``W_l = R L Q^T`` with ``R`` (``m x m``) and
``Q`` (``n x n``) :func:`~proofs._matrices.orthogonal` symbols and ``L`` an ``m x n`` matrix
symbol, ``m``, ``n`` and every other width symbolic (square ``m = n`` included; the identity
does not use that ``L`` is diagonal). Second, independent check with every entry symbolic and
Cayley ``R``, ``Q``: ``W_l`` of shapes :data:`LEFT_SIZES` (left) and :data:`FULL_CASES`
(full; no square ``4 x 4`` and no ``2 x 4``: their exact expansion takes minutes). Controls
(``broken=``): bias not rotated, next layer not rotated, previous layer not rotated.

Example::

    >>> from isoproof.proofs import diagonalisation
    >>> diagonalisation.left_any().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._matrices import orthogonal
from ._symbolic import (
    Perceptron,
    Size,
    cayley,
    entries,
    forward,
    matrix,
    stack,
    trace_residual,
    vector,
)

__all__ = [
    "FULL_CASES",
    "LEFT_SIZES",
    "full",
    "full_any",
    "left",
    "left_any",
    "svd_factors",
]

#: ``(rows, cols)`` of the diagonalised weight ``W_l`` in the left checks (with and without psi).
LEFT_SIZES: tuple[tuple[int, int], ...] = ((2, 2), (3, 2), (2, 3), (3, 3), (4, 2), (2, 4))
#: ``(rows, cols, with_psi)`` of the full checks (``4 x 2``: ``R`` a generic 4 x 4 rotation).
FULL_CASES: tuple[tuple[int, int, bool], ...] = (
    *(
        (rows, cols, psi)
        for rows, cols in ((2, 2), (3, 2), (2, 3), (3, 3))
        for psi in (False, True)
    ),
    (4, 2, True),
)

#: Input width of the full-diagonalisation networks: ``z_{l-1} = U x + b + psi g_in`` is a
#: generic vector already for a scalar ``x`` (``b``, ``psi`` free), and width 1 halves the cost.
_IN = 1
#: Output width of every concrete network checked here.
_OUT = 2

_m, _n, _p, _r = sp.symbols("m n p r", integer=True, positive=True)


def svd_factors(rows: Size, cols: Size) -> tuple[sp.MatrixBase, sp.Matrix, sp.MatrixBase]:
    """Generic symbolic ``(R, L, Q)`` with ``W = R L Q^T``.

    Concrete sizes: Cayley ``R``, ``Q`` and rectangular-diagonal ``L``. Symbolic sizes:
    orthogonal symbols ``R``, ``Q`` and an ``m x n`` matrix symbol ``L``.
    """
    if not isinstance(rows, int):
        return orthogonal("R", rows), sp.MatrixSymbol("L", rows, cols), orthogonal("Q", cols)
    sigma = vector("sigma", min(rows, cols))
    diagonal = sp.zeros(rows, cols)
    for i, s in enumerate(entries(sigma)):
        diagonal[i, i] = s
    return cayley(rows, "r"), diagonal, cayley(cols, "q")


def _left_residual(
    rows: Size, cols: Size, with_psi: bool, out: Size = _OUT, broken: str | None = None
) -> sp.Matrix:
    r, diagonal, q = svd_factors(rows, cols)
    x = vector("a", cols)
    g_prev = sp.Symbol("g_prev", real=True) if with_psi else None
    psi = vector("psi", rows) if with_psi else None
    net = Perceptron(
        weights=(r * diagonal * q.T, matrix("V", out, rows)),
        biases=(vector("b", rows), vector("c", out)),
        psis=(psi, vector("phi", out) if with_psi else None),
        lengths=(sp.Symbol("o", positive=True),),
    )
    new = net.with_layers(
        weights={
            0: diagonal * q.T,
            1: net.weights[1] if broken == "next_not_rotated" else net.weights[1] * r,
        },
        biases={0: net.biases[0] if broken == "bias_not_rotated" else r.T * net.biases[0]},
        psis={0: None if psi is None else r.T * psi},
    )
    return trace_residual(forward(x, net, g_prev), forward(x, new, g_prev))


def left(broken: str | None = None) -> sp.Matrix:
    """Left diagonalisation is exact: first layer (no psi) and a slice with psi, all sizes."""
    return stack(
        *[
            _left_residual(rows, cols, with_psi, broken=broken)
            for rows, cols in (LEFT_SIZES[:1] if broken else LEFT_SIZES)
            for with_psi in (False, True)
        ]
    )


def left_any(broken: str | None = None) -> sp.Matrix:
    """Left diagonalisation for any ``m x n`` weight and any output width, with and without psi."""
    return stack(*[_left_residual(_m, _n, psi, _r, broken) for psi in (False, True)])


def _full_residual(
    rows: Size,
    cols: Size,
    with_psi: bool,
    sizes: tuple[Size, Size] = (_IN, _OUT),
    broken: str | None = None,
) -> sp.Matrix:
    r, diagonal, q = svd_factors(rows, cols)
    x = vector("x", sizes[0])
    g_in = sp.Symbol("g_in", real=True) if with_psi else None
    psi_before = vector("psi", cols) if with_psi else None
    psi = vector("chi", rows)
    net = Perceptron(
        weights=(matrix("U", cols, sizes[0]), r * diagonal * q.T, matrix("V", sizes[1], rows)),
        biases=(vector("b", cols), vector("c", rows), vector("d", sizes[1])),
        psis=(psi_before, psi, vector("phi", sizes[1])),
        lengths=(sp.Symbol("o0", positive=True), sp.Symbol("o1", positive=True)),
    )
    before = q.T if broken != "previous_not_rotated" else None
    new = net.with_layers(
        weights={
            0: net.weights[0] if before is None else before * net.weights[0],
            1: diagonal,
            2: net.weights[2] * r,
        },
        biases={
            0: net.biases[0] if before is None else before * net.biases[0],
            1: r.T * net.biases[1],
        },
        psis={
            0: None if psi_before is None else q.T * psi_before,
            1: r.T * psi,
        },
    )
    return trace_residual(forward(x, net, g_in), forward(x, new, g_in))


def full(broken: str | None = None) -> sp.Matrix:
    """Full diagonalisation is exact: ``l = 1`` of a network and a psi slice (``l >= 2``)."""
    return stack(
        *[
            _full_residual(rows, cols, with_psi, broken=broken)
            for rows, cols, with_psi in (FULL_CASES[:1] if broken else FULL_CASES)
        ]
    )


def full_any(broken: str | None = None) -> sp.Matrix:
    """Full diagonalisation for any ``m x n`` weight and any neighbouring widths, +- psi."""
    return stack(*[_full_residual(_m, _n, psi, (_p, _r), broken) for psi in (False, True)])
