"""§3 sparsification: alternating full diagonalisation halves the hidden-to-hidden weights.

A network with ``K`` hidden-to-hidden maps ``W_1 .. W_K`` of width ``n`` is fully diagonalised
at ``l = 1, 3, 5, ...`` (only alternate layers can be diagonal at once). Map ``l`` then stores
``c(l) = n`` entries if ``l`` is odd (``diag(sigma)``) and ``n^2`` if it is even, so::

    C(K, n) = sum_{l=1}^{K} c(l) = floor(K/2) n^2 + ceil(K/2) n,
    C(K, n) / (K n^2) -> 1/2       (n -> oo, then K -> oo; also in the other order).

Proven with symbolic ``n`` and ``m`` for ``K = 2m`` and ``K = 2m + 1`` (the sum taken pairwise,
``c(2j - 1) + c(2j)``, with ``c(l) = n^2 + (n - n^2) (l mod 2)`` evaluated by SymPy); that
the alternating diagonalisation keeps the function is the full diagonalisation claim. Biases,
psi, ``o`` and the first and last maps are not counted. Control (``broken=``): counting every
map as diagonal.

Example::

    >>> from isoproof.proofs import sparsification
    >>> sparsification.count_formula(5, 3)  # 2 * 3**2 + 3 * 3
    27
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import reduce, stack

__all__ = [
    "count_formula",
    "ratio_limit",
    "symbolic_count",
]


def count_formula(k: sp.Expr | int, n: sp.Expr | int) -> sp.Expr:
    """``floor(K/2) n^2 + ceil(K/2) n``: hidden-to-hidden entries after sparsification."""
    k, n = sp.sympify(k), sp.sympify(n)
    return sp.floor(k / 2) * n**2 + sp.ceiling(k / 2) * n


def _per_layer(l: sp.Expr, n: sp.Expr, broken: str | None = None) -> sp.Expr:
    """``c(l) = n^2 + (n - n^2) (l mod 2)``: ``n`` for diagonal (odd) maps, ``n^2`` otherwise.

    ``broken="every_layer"`` (a control) counts every map as diagonal, which adjacent full
    diagonalisations cannot achieve.
    """
    if broken == "every_layer":
        return n
    return n**2 + (n - n**2) * sp.Mod(l, 2)


def symbolic_count(broken: str | None = None) -> sp.Matrix:
    """``sum_l c(l) - C(K, n) = 0`` for ``K = 2m`` and ``K = 2m + 1``, symbolic ``m, n``."""
    m = sp.Symbol("m", integer=True, positive=True)
    n = sp.Symbol("n", integer=True, positive=True)
    j = sp.Symbol("j", integer=True, positive=True)
    pairs = sp.summation(_per_layer(2 * j - 1, n, broken) + _per_layer(2 * j, n, broken), (j, 1, m))
    even = pairs - count_formula(2 * m, n)
    odd = pairs + _per_layer(2 * m + 1, n, broken) - count_formula(2 * m + 1, n)
    return stack(reduce(even), reduce(odd))


def ratio_limit(broken: str | None = None) -> sp.Matrix:
    """``C(K, n) / (K n^2) -> 1/2`` for ``K = 2m`` and ``K = 2m + 1``, both orders of limits.

    ``broken="every_layer"`` takes ``C = K n`` (every map diagonal; a control).
    """
    m = sp.Symbol("m", integer=True, positive=True)
    n = sp.Symbol("n", integer=True, positive=True)
    parts: list[sp.Expr] = []
    for k in (2 * m, 2 * m + 1):
        stored = k * n if broken == "every_layer" else count_formula(k, n)
        ratio = stored / (k * n**2)
        parts.append(sp.limit(sp.limit(ratio, n, sp.oo), m, sp.oo) - sp.Rational(1, 2))
        parts.append(sp.limit(sp.limit(ratio, m, sp.oo), n, sp.oo) - sp.Rational(1, 2))
    return stack(*[reduce(p) for p in parts])
