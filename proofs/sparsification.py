"""§3 sparsification: alternating full diagonalisation halves the hidden-to-hidden weights.

A network with ``K`` hidden-to-hidden maps ``W_1 .. W_K`` of width ``n`` is fully diagonalised
at ``l = 1, 3, 5, ...`` (only alternate layers can be diagonal at once). Map ``l`` then stores
``c(l) = n`` entries if ``l`` is odd (``diag(sigma)``) and ``n^2`` if it is even, so::

    C(K, n) = sum_{l=1}^{K} c(l) = floor(K/2) n^2 + ceil(K/2) n,
    C(K, n) / (K n^2) -> 1/2       (n -> oo, then K -> oo; also in the other order).

Proven with symbolic ``n`` and ``m`` for ``K = 2m`` and ``K = 2m + 1`` (the sum taken pairwise,
``c(2j - 1) + c(2j)``, with ``c(l) = n^2 + (n - n^2) (l mod 2)`` evaluated by SymPy), and
verified at ``K = 1 .. 6``, ``n = 2 .. 4`` by performing the alternating diagonalisation on a
model with symbolic dense weights (``W_l <- diag(sigma_l)``, ``W_{l-1} <- Q_l^T W_{l-1}``,
``W_{l+1} <- W_{l+1} R_l``; generic symbolic ``Q_l``, ``R_l`` stand for the singular vectors,
whose exactness is the full diagonalisation claim) and counting the entries that are not
identically zero. Biases, psi, ``o`` and the first and last maps are not counted.

Example::

    >>> from isoproof.proofs import sparsification
    >>> sparsification.count_formula(5, 3)  # 2 * 3**2 + 3 * 3
    27
"""

from __future__ import annotations

from typing import cast

import sympy as sp

from ._symbolic import matrix, reduce, stack, vector

__all__ = [
    "DEPTHS",
    "WIDTHS",
    "count_formula",
    "explicit",
    "explicit_count",
    "ratio_limit",
    "symbolic_count",
]

#: Concrete numbers of hidden-to-hidden maps and widths checked by explicit counting.
DEPTHS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
WIDTHS: tuple[int, ...] = (2, 3, 4)


def count_formula(k: sp.Expr | int, n: sp.Expr | int) -> sp.Expr:
    """``floor(K/2) n^2 + ceil(K/2) n``: hidden-to-hidden entries after sparsification."""
    k, n = sp.sympify(k), sp.sympify(n)
    return sp.floor(k / 2) * n**2 + sp.ceiling(k / 2) * n


def _per_layer(l: sp.Expr, n: sp.Expr) -> sp.Expr:
    """``c(l) = n^2 + (n - n^2) (l mod 2)``: ``n`` for diagonal (odd) maps, ``n^2`` otherwise."""
    return n**2 + (n - n**2) * sp.Mod(l, 2)


def symbolic_count() -> sp.Matrix:
    """``sum_l c(l) - C(K, n) = 0`` for ``K = 2m`` and ``K = 2m + 1``, symbolic ``m, n``."""
    m = sp.Symbol("m", integer=True, positive=True)
    n = sp.Symbol("n", integer=True, positive=True)
    j = sp.Symbol("j", integer=True, positive=True)
    pairs = sp.summation(_per_layer(2 * j - 1, n) + _per_layer(2 * j, n), (j, 1, m))
    even = pairs - count_formula(2 * m, n)
    odd = pairs + _per_layer(2 * m + 1, n) - count_formula(2 * m + 1, n)
    return stack(reduce(even), reduce(odd))


def ratio_limit() -> sp.Matrix:
    """``C(K, n) / (K n^2) -> 1/2`` for ``K = 2m`` and ``K = 2m + 1``, both orders of limits."""
    m = sp.Symbol("m", integer=True, positive=True)
    n = sp.Symbol("n", integer=True, positive=True)
    parts: list[sp.Expr] = []
    for k in (2 * m, 2 * m + 1):
        ratio = count_formula(k, n) / (k * n**2)
        parts.append(sp.limit(sp.limit(ratio, n, sp.oo), m, sp.oo) - sp.Rational(1, 2))
        parts.append(sp.limit(sp.limit(ratio, m, sp.oo), n, sp.oo) - sp.Rational(1, 2))
    return stack(*[reduce(p) for p in parts])


def _nonzero_entries(w: sp.MatrixBase) -> int:
    return sum(1 for e in w if reduce(e) != 0)


def explicit_count(k: int, n: int) -> tuple[int, bool]:
    """Diagonalise ``l = 1, 3, ...`` of a symbolic model; ``(stored entries, odd maps diagonal)``.

    The model has an input map ``W_0`` (``n x 2``), maps ``W_1 .. W_K`` (``n x n``) and an
    output map ``W_{K+1}`` (``2 x n``), all dense with independent symbols.
    """
    weights = [matrix("W0_", n, 2), *[matrix(f"W{l}_", n, n) for l in range(1, k + 1)]]
    weights.append(matrix(f"W{k + 1}_", 2, n))
    for l in range(1, k + 1, 2):
        weights[l] = sp.diag(*vector(f"sigma{l}_", n))
        weights[l - 1] = matrix(f"Q{l}_", n, n).T * weights[l - 1]
        weights[l + 1] = weights[l + 1] * matrix(f"R{l}_", n, n)
    hidden = weights[1 : k + 1]
    diagonal = all(
        reduce(cast(sp.Expr, hidden[l - 1][i, j])) == 0
        for l in range(1, k + 1, 2)
        for i in range(n)
        for j in range(n)
        if i != j
    )
    return sum(_nonzero_entries(w) for w in hidden), diagonal


def explicit() -> sp.Matrix:
    """``explicit_count(K, n) - C(K, n) = 0`` and odd maps diagonal, ``K = 1..6``, ``n = 2..4``."""
    parts: list[sp.Expr] = []
    for k in DEPTHS:
        for n in WIDTHS:
            stored, diagonal = explicit_count(k, n)
            parts.append(sp.Integer(stored) - count_formula(k, n))
            parts.append(sp.S.Zero if diagonal else sp.Symbol(f"not_diagonal_K{k}_n{n}"))
    return stack(*parts)
