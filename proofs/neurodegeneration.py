"""§4 neurodegeneration: removing neurons whose incoming row is zero is exact.

After left diagonalisation of layer ``l`` the removed neurons have pre-activation
``h = sigma (q . a_{l-1}) + b* + psi* g_{l-1}``. With ``sigma = 0`` and ``psi* = 0`` it is the
constant ``b*``. Remove their rows of ``W_l``, entries of ``b_l`` and ``psi_l``, and their
columns ``W*`` of ``W_{l+1}``, and set (:mod:`proofs.expressions`)::

    o_l <- o_l + |b*|^2,        psi_{l+1} <- psi_{l+1} + W* b*.

Proof (block decomposition, any width, any number ``k`` of removed neurons): with
``H = |z_kept|^2`` the old squared length is ``o + H + sum_j b*_j^2`` and the new one
``(o + sum_j b*_j^2) + H`` (argument identity), so ``g`` is unchanged; the next layer receives
``W_kept g z_kept + W* g b* + c + phi g`` before and ``W_kept g z_kept + c + (phi + W* b*) g``
after: the same vector. Also verified with every entry symbolic for widths ``n = 2, 3, 4``.

With ``sigma > 0`` the removal is not exact; the squared length changes by
``D = (sigma u + b*)^2 - b*^2 = 2 sigma u b* + sigma^2 u^2`` (``u = q . a_{l-1}``), so
``D = 2 u b* sigma + O(sigma^2)``: first order in ``sigma``, with slope ``2 u b*``.

Example::

    >>> from isoproof.proofs import neurodegeneration
    >>> neurodegeneration.any_width().is_zero_matrix
    True
"""

from __future__ import annotations

from typing import cast

import sympy as sp

from ._symbolic import (
    Perceptron,
    Trace,
    forward,
    g,
    layer_slice,
    reduce,
    stack,
    trace_residual,
    vector,
)
from .expressions import degenerated_length, degenerated_psi

__all__ = [
    "SIZES",
    "any_width",
    "degenerate",
    "exact",
    "exact_several",
    "first_order",
    "silence",
]

#: Widths (before removal) checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)


def degenerate(net: Perceptron, layer: int, k: int) -> Perceptron:
    """Remove the last ``k`` neurons of hidden layer ``layer`` (the §4 update rule).

    Drops their rows of ``W_layer``, entries of ``b_layer`` and ``psi_layer`` and columns ``W*``
    of ``W_{layer+1}``; sets ``o_layer <- o_layer + |b*|^2`` and
    ``psi_{layer+1} <- psi_{layer+1} + W* b*`` (a missing ``psi_{layer+1}`` counts as 0). Exact
    only when the removed rows and psi entries are zero, which the caller arranges.
    """
    if not 0 <= layer < len(net.weights) - 1:
        raise ValueError(f"layer {layer} is not followed by an activation")
    w, v = net.weights[layer], net.weights[layer + 1]
    b, psi, phi = net.biases[layer], net.psis[layer], net.psis[layer + 1]
    kept = w.rows - k
    b_star, w_star = b[kept:, :], v[:, kept:]
    return net.with_layers(
        weights={layer: w[:kept, :], layer + 1: v[:, :kept]},
        biases={layer: b[:kept, :]},
        psis={
            layer: None if psi is None else psi[:kept, :],
            layer + 1: degenerated_psi(sp.zeros(v.rows, 1) if phi is None else phi, w_star, b_star),
        },
        lengths={layer: degenerated_length(net.lengths[layer], b_star)},
    )


def silence(net: Perceptron, layer: int, k: int) -> Perceptron:
    """Zero the incoming rows (``sigma = 0``) and psi entries of the last ``k`` neurons."""
    w = sp.Matrix(net.weights[layer])
    w[w.rows - k :, :] = sp.zeros(k, w.cols)
    psi = net.psis[layer]
    if psi is not None:
        psi = sp.Matrix(psi)
        psi[psi.rows - k :, :] = sp.zeros(k, 1)
    return net.with_layers(weights={layer: w}, psis={layer: psi})


def _silenced(n: int, k: int) -> tuple[sp.Matrix, sp.Expr | None, Perceptron]:
    """A psi slice of width ``n`` whose last ``k`` neurons have zero rows and zero psi entries."""
    a, g_prev, net = layer_slice(n)
    return a, g_prev, silence(net, 0, k)


def _exact_residual(n: int, k: int) -> sp.Matrix:
    a, g_prev, net = _silenced(n, k)
    return trace_residual(forward(a, net, g_prev), forward(a, degenerate(net, 0, k), g_prev))


def exact() -> sp.Matrix:
    """One neuron with ``sigma = 0``, ``psi* = 0`` removed from widths ``n = 2, 3, 4``: exact."""
    return stack(*[_exact_residual(n, 1) for n in SIZES])


def exact_several() -> sp.Matrix:
    """``k`` neurons removed after one diagonalisation (``n = 3, 4``; ``k = 2 .. n - 1``)."""
    return stack(*[_exact_residual(n, k) for n in SIZES for k in range(2, n)])


def any_width() -> sp.Matrix:
    """Block decomposition: any kept width, any symbolic number ``k`` of removed neurons.

    Kept block: ``H = |z_kept|^2`` and ``Y_i = (W_kept z_kept)_i``; removed block: ``b*_j``,
    ``W*_{ij}`` for ``j = 1 .. k`` as indexed symbols. One output coordinate ``i`` is
    generic (coordinates do not interact).
    """
    k = sp.Symbol("k", integer=True, positive=True)
    j = sp.Symbol("j", integer=True, positive=True)
    b_star = cast(sp.IndexedBase, sp.IndexedBase("b_star", real=True))
    w_star = cast(sp.IndexedBase, sp.IndexedBase("W_star", real=True))
    o = sp.Symbol("o", positive=True)
    h = sp.Symbol("H", nonnegative=True)
    y, c, phi = sp.symbols("Y c phi", real=True)
    b_j, w_j = cast(sp.Expr, b_star[j]), cast(sp.Expr, w_star[j])
    removed_sq = sp.Sum(b_j**2, (j, 1, k))
    removed_out = sp.Sum(w_j * b_j, (j, 1, k))

    before_sq = o + h + removed_sq
    g_before = g(sp.sqrt(before_sq))
    before = g_before * y + g_before * removed_out + c + phi * g_before

    after_sq = (o + removed_sq) + h
    g_after = g(sp.sqrt(after_sq))
    after = g_after * y + c + (phi + removed_out) * g_after
    return trace_residual(
        Trace(sp.Matrix([before]), (before_sq,), (g_before,)),
        Trace(sp.Matrix([after]), (after_sq,), (g_after,)),
    )


def _first_order_residual(difference: sp.Expr, sigma: sp.Symbol, u: sp.Expr, b: sp.Expr):
    """Residuals of ``D = 2 u b sigma + sigma^2 u^2``, ``D'(0) = 2 u b``, series, remainder."""
    slope = 2 * u * b
    series = sp.series(difference, sigma, 0, 2).removeO()
    remainder = sp.limit(sp.expand(difference - slope * sigma) / sigma**2, sigma, 0)
    return stack(
        reduce(difference - (slope * sigma + sigma**2 * u**2)),
        reduce(sp.diff(difference, sigma).subs(sigma, 0) - slope),
        reduce(series - slope * sigma),
        reduce(remainder - u**2),
    )


def first_order() -> sp.Matrix:
    """Removing a neuron with ``sigma > 0``: ``N_exact^2 - N_new^2 = 2 u b* sigma + O(sigma^2)``.

    Block form with symbols ``H, u, b*`` and concretely on a width-3 psi slice whose removed
    row is ``sigma q^T`` (``u = q . a``), using the forward passes' squared lengths.
    """
    sigma = sp.Symbol("sigma", positive=True)
    u, b = sp.symbols("u b_star", real=True)
    o = sp.Symbol("o", positive=True)
    h = sp.Symbol("H", nonnegative=True)
    block = (o + h + (sigma * u + b) ** 2) - ((o + b**2) + h)

    n = 3
    a, g_prev, net = _silenced(n, 1)
    q = vector("q", a.rows)
    w = sp.Matrix(net.weights[0])
    w[n - 1, :] = sigma * q.T
    net = net.with_layers(weights={0: w})
    exact_sq = forward(a, net, g_prev).radicands[0]
    new_sq = forward(a, degenerate(net, 0, 1), g_prev).radicands[0]
    concrete = sp.expand(exact_sq - new_sq)
    return stack(
        _first_order_residual(block, sigma, u, b),
        _first_order_residual(concrete, sigma, (q.T * a)[0, 0], net.biases[0][n - 1]),
    )
