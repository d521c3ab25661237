"""§5 neurogenesis: adding a neuron with zero incoming row, bias and psi entry is exact.

Append a zero row to ``W_l``, a zero entry to ``b_l`` and to ``psi_l``, and an arbitrary column
``w`` to ``W_{l+1}``. The new pre-activation is ``0 a + 0 + 0 g_{l-1} = 0``, so::

    N'^2 = o + |z|^2 + 0^2 = N^2                        (argument identity)
    W_{l+1}' a_l' = W_{l+1} (g z) + w (g 0) = W_{l+1} a_l

and every later layer is unchanged, for any ``w`` (the paper uses ``0.01 N(0, 1)``; zero would
be a saddle). Proven for any width ``n`` and any number ``j`` of new neurons on block matrices
of symbolic sizes (:func:`any_width`: :func:`grow` appends the blocks, :func:`forward` derives
the split), and with every entry symbolic at widths ``n = 2, 3, 4``. Controls (``broken=``):
a non-zero new bias, a non-zero new row.

Example::

    >>> from isoproof.proofs import neurogenesis
    >>> neurogenesis.exact().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._matrices import is_matrix_expression
from ._symbolic import (
    Perceptron,
    forward,
    layer_slice,
    matrix,
    stack,
    trace_residual,
    vector,
)

__all__ = ["SIZES", "any_width", "exact", "grow"]

#: Widths (before growth) checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)


def _zeros(rows: sp.Expr, cols: sp.Expr) -> sp.MatrixBase:
    symbolic = not (sp.sympify(rows).is_Integer and sp.sympify(cols).is_Integer)
    return sp.ZeroMatrix(rows, cols) if symbolic else sp.zeros(int(rows), int(cols))


def _join_rows(top: sp.MatrixBase, bottom: sp.MatrixBase) -> sp.MatrixBase:
    if is_matrix_expression(top):
        return sp.BlockMatrix([[top], [bottom]])
    return top.col_join(bottom)


def grow(
    net: Perceptron, layer: int, column: sp.MatrixBase, broken: str | None = None
) -> Perceptron:
    """Append ``column.cols`` neurons to hidden layer ``layer``: zero rows, biases, psi entries.

    ``column`` (``W_{layer+1}``'s new columns) is arbitrary. Symbolic sizes append blocks.
    ``broken`` (controls): ``"bias"`` gives the new neurons a free bias, ``"row"`` a free row.
    """
    if not 0 <= layer < len(net.weights) - 1:
        raise ValueError(f"layer {layer} is not followed by an activation")
    w, v = net.weights[layer], net.weights[layer + 1]
    j = column.cols
    psi = net.psis[layer]
    row = matrix("w_row", j, w.cols) if broken == "row" else _zeros(j, w.cols)
    bias = vector("b_new", j) if broken == "bias" else _zeros(j, 1)
    joined = sp.BlockMatrix([[v, column]]) if is_matrix_expression(v) else v.row_join(column)
    return net.with_layers(
        weights={layer: _join_rows(w, row), layer + 1: joined},
        biases={layer: _join_rows(net.biases[layer], bias)},
        psis={layer: None if psi is None else _join_rows(psi, _zeros(j, 1))},
    )


def _exact_residual(n: int, broken: str | None = None) -> sp.Matrix:
    a, g_prev, net = layer_slice(n)
    grown = grow(net, 0, matrix("w_new", net.weights[1].rows, 1), broken)
    return trace_residual(forward(a, net, g_prev), forward(a, grown, g_prev))


def exact(broken: str | None = None) -> sp.Matrix:
    """Growth ``n -> n + 1`` for ``n = 2, 3, 4``, arbitrary symbolic outgoing column: exact."""
    return stack(*[_exact_residual(n, broken) for n in (SIZES[:1] if broken else SIZES)])


def any_width(broken: str | None = None) -> sp.Matrix:
    """Growth ``n -> n + j`` for symbolic ``n`` and ``j``, with and without psi terms."""
    n, j = sp.symbols("n j", integer=True, positive=True)
    parts = []
    for generalised in (True, False):
        a, g_prev, net = layer_slice(n, generalised=generalised)
        grown = grow(net, 0, sp.MatrixSymbol("w_new", net.weights[1].rows, j), broken)
        parts.append(trace_residual(forward(a, net, g_prev), forward(a, grown, g_prev)))
    return stack(*parts)
