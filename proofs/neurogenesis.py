"""§5 neurogenesis: adding a neuron with zero incoming row, bias and psi entry is exact.

Append a zero row to ``W_l``, a zero entry to ``b_l`` and to ``psi_l``, and an arbitrary column
``w`` to ``W_{l+1}``. The new pre-activation is ``0 a + 0 + 0 g_{l-1} = 0``, so::

    N'^2 = o + |z|^2 + 0^2 = N^2                        (argument identity)
    W_{l+1}' a_l' = W_{l+1} (g z) + w (g 0) = W_{l+1} a_l

and every later layer is unchanged, for any ``w`` (the paper uses ``0.01 N(0, 1)``; zero would
be a saddle). Proven by block decomposition (a symbol ``H = |z|^2`` for the existing block, any
width) and with every entry symbolic at widths ``n = 2, 3, 4`` in the generalised perceptron.

Example::

    >>> from isoproof.proofs import neurogenesis
    >>> neurogenesis.exact().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import (
    Perceptron,
    Trace,
    forward,
    g,
    layer_slice,
    stack,
    trace_residual,
    vector,
)

__all__ = ["SIZES", "any_width", "exact", "grow"]

#: Widths (before growth) checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)


def grow(net: Perceptron, layer: int, column: sp.MatrixBase) -> Perceptron:
    """Append a neuron to hidden layer ``layer``: zero row, bias and psi entry; ``column`` out."""
    if not 0 <= layer < len(net.weights) - 1:
        raise ValueError(f"layer {layer} is not followed by an activation")
    w, v = net.weights[layer], net.weights[layer + 1]
    psi = net.psis[layer]
    return net.with_layers(
        weights={layer: w.col_join(sp.zeros(1, w.cols)), layer + 1: v.row_join(column)},
        biases={layer: net.biases[layer].col_join(sp.zeros(1, 1))},
        psis={layer: None if psi is None else psi.col_join(sp.zeros(1, 1))},
    )


def _exact_residual(n: int) -> sp.Matrix:
    a, g_prev, net = layer_slice(n)
    grown = grow(net, 0, vector("w_new", net.weights[1].rows))
    return trace_residual(forward(a, net, g_prev), forward(a, grown, g_prev))


def exact() -> sp.Matrix:
    """Growth ``n -> n + 1`` for ``n = 2, 3, 4``, arbitrary symbolic outgoing column: exact."""
    return stack(*[_exact_residual(n) for n in SIZES])


def any_width() -> sp.Matrix:
    """Block decomposition: ``H = |z|^2`` and ``Y_i = (W_{l+1} z)_i`` stand for any width."""
    o = sp.Symbol("o", positive=True)
    h = sp.Symbol("H", nonnegative=True)
    y, c, phi, w = sp.symbols("Y c phi w", real=True)
    new_pre_activation = sp.S.Zero  # zero row . a + zero bias + zero psi entry * g_prev

    before_sq = o + h
    g_before = g(sp.sqrt(before_sq))
    before = g_before * y + c + phi * g_before

    after_sq = o + h + new_pre_activation**2
    g_after = g(sp.sqrt(after_sq))
    after = g_after * y + w * (g_after * new_pre_activation) + c + phi * g_after
    return trace_residual(
        Trace(sp.Matrix([before]), (before_sq,), (g_before,)),
        Trace(sp.Matrix([after]), (after_sq,), (g_after,)),
    )
