"""§4 neurodegeneration: removing neurons whose incoming row is zero is exact.

After left diagonalisation of layer ``l`` the removed neurons have pre-activation
``h = sigma (q . a_{l-1}) + b* + psi* g_{l-1}``. With ``sigma = 0`` and ``psi* = 0`` it is the
constant ``b*``. Remove their rows of ``W_l``, entries of ``b_l`` and ``psi_l``, and their
columns ``W*`` of ``W_{l+1}``, and set (:mod:`proofs.expressions`)::

    o_l <- o_l + |b*|^2,        psi_{l+1} <- psi_{l+1} + W* b*.

Proof (block matrices of symbolic sizes, any width, any number ``k`` of removed neurons,
derived from the network by :func:`forward`): with ``H = |z_kept|^2`` the old squared length
is ``o + H + |b*|^2`` and the new one ``(o + |b*|^2) + H`` (argument identity), so ``g`` is
unchanged; the next layer receives
``W_kept g z_kept + W* g b* + c + phi g`` before and ``W_kept g z_kept + c + (phi + W* b*) g``
after: the same vector. Also verified with every entry symbolic for widths ``n = 2, 3, 4``.

With ``sigma > 0`` the removal is not exact; the squared length changes by
``D = (sigma u + b*)^2 - b*^2 = 2 sigma u b* + sigma^2 u^2`` (``u = q . a_{l-1}``), so
``D = 2 u b* sigma + O(sigma^2)``: first order in ``sigma``, with slope ``2 u b*``, and the
output by ``sigma (g'(N) (u b* / N) (V z + phi + W* b*) + g(N) W* u) + O(sigma^2)``
(:func:`output_error`). Controls (``broken=``): each update dropped, ``b*`` for ``b*^2``,
the psi update's sign flipped, a non-zero own psi entry, ``sigma > 0``.

Example::

    >>> from isoproof.proofs import neurodegeneration
    >>> neurodegeneration.any_width().is_zero_matrix
    True
    >>> neurodegeneration.any_width(broken="without_o").is_zero_matrix
    False
"""

from __future__ import annotations

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
    "BROKEN_UPDATES",
    "SIZES",
    "any_width",
    "block_slice",
    "degenerate",
    "exact",
    "exact_several",
    "first_order",
    "output_error",
    "silence",
]

#: Widths (before removal) checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)


def _rows(x: sp.MatrixBase, kept: int) -> tuple[sp.MatrixBase, sp.MatrixBase]:
    """``(kept rows, removed rows)`` of a matrix or of a ``2 x 1`` block matrix."""
    if isinstance(x, sp.BlockMatrix):
        return x.blocks[0, 0], x.blocks[1, 0]
    return x[:kept, :], x[kept:, :]


def _cols(x: sp.MatrixBase, kept: int) -> tuple[sp.MatrixBase, sp.MatrixBase]:
    """``(kept columns, removed columns)`` of a matrix or of a ``1 x 2`` block matrix."""
    if isinstance(x, sp.BlockMatrix):
        return x.blocks[0, 0], x.blocks[0, 1]
    return x[:, :kept], x[:, kept:]


#: Ways :func:`degenerate` can be broken on purpose (controls).
BROKEN_UPDATES = ("without_o", "without_psi", "o_not_squared", "psi_sign")


def degenerate(net: Perceptron, layer: int, k: int, broken: str | None = None) -> Perceptron:
    """Remove the last ``k`` neurons of hidden layer ``layer`` (the §4 update rule).

    Drops their rows of ``W_layer``, entries of ``b_layer`` and ``psi_layer`` and columns ``W*``
    of ``W_{layer+1}``; sets ``o_layer <- o_layer + |b*|^2`` and
    ``psi_{layer+1} <- psi_{layer+1} + W* b*`` (a missing ``psi_{layer+1}`` counts as 0). Exact
    only when the removed rows and psi entries are zero, which the caller arranges. A network
    of block matrices (symbolic sizes) is split at its blocks. ``broken`` (controls): one of
    :data:`BROKEN_UPDATES`.
    """
    if not 0 <= layer < len(net.weights) - 1:
        raise ValueError(f"layer {layer} is not followed by an activation")
    w, v = net.weights[layer], net.weights[layer + 1]
    b, psi, phi = net.biases[layer], net.psis[layer], net.psis[layer + 1]
    kept = 0 if isinstance(w, sp.BlockMatrix) else w.rows - k
    (b_kept, b_star), (v_kept, w_star) = _rows(b, kept), _cols(v, kept)
    phi = sp.zeros(v.rows, 1) if phi is None else phi
    length = degenerated_length(net.lengths[layer], b_star)
    if broken == "without_o":
        length = net.lengths[layer]
    elif broken == "o_not_squared":
        length = net.lengths[layer] + sp.Add(*b_star)
    new_phi = degenerated_psi(phi, w_star, b_star)
    if broken == "without_psi":
        new_phi = phi
    elif broken == "psi_sign":
        new_phi = degenerated_psi(phi, -w_star, b_star)
    return net.with_layers(
        weights={layer: _rows(w, kept)[0], layer + 1: v_kept},
        biases={layer: b_kept},
        psis={layer: None if psi is None else _rows(psi, kept)[0], layer + 1: new_phi},
        lengths={layer: length},
    )


def silence(net: Perceptron, layer: int, k: int, broken: str | None = None) -> Perceptron:
    """Zero the incoming rows (``sigma = 0``) and psi entries of the last ``k`` neurons.

    ``broken`` (controls): ``"sigma"`` keeps the rows (``sigma > 0``), ``"own_psi"`` keeps
    the psi entries.
    """
    w = sp.Matrix(net.weights[layer])
    if broken != "sigma":
        w[w.rows - k :, :] = sp.zeros(k, w.cols)
    psi = net.psis[layer]
    if psi is not None and broken != "own_psi":
        psi = sp.Matrix(psi)
        psi[psi.rows - k :, :] = sp.zeros(k, 1)
    return net.with_layers(weights={layer: w}, psis={layer: psi})


def _silenced(
    n: int, k: int, broken: str | None = None
) -> tuple[sp.Matrix, sp.Expr | None, Perceptron]:
    """A psi slice of width ``n`` whose last ``k`` neurons have zero rows and zero psi entries."""
    a, g_prev, net = layer_slice(n)
    return a, g_prev, silence(net, 0, k, broken)


def _exact_residual(n: int, k: int, broken: str | None = None) -> sp.Matrix:
    a, g_prev, net = _silenced(n, k, broken)
    update = broken if broken in BROKEN_UPDATES else None
    return trace_residual(
        forward(a, net, g_prev), forward(a, degenerate(net, 0, k, update), g_prev)
    )


def exact(broken: str | None = None) -> sp.Matrix:
    """One neuron with ``sigma = 0``, ``psi* = 0`` removed from widths ``n = 2, 3, 4``: exact.

    ``broken``: one of :data:`BROKEN_UPDATES`, ``"sigma"`` or ``"own_psi"`` (controls).
    """
    return stack(*[_exact_residual(n, 1, broken) for n in SIZES])


def exact_several(broken: str | None = None) -> sp.Matrix:
    """``k`` neurons removed after one diagonalisation (``n = 3, 4``; ``k = 2 .. n - 1``).

    ``broken``: as :func:`exact`, at ``n = 3``, ``k = 2`` only.
    """
    cases = [(3, 2)] if broken else [(n, k) for n in SIZES for k in range(2, n)]
    return stack(*[_exact_residual(n, k, broken) for n, k in cases])


def block_slice(broken: str | None = None) -> tuple[sp.MatrixBase, sp.Symbol, Perceptron]:
    """The psi slice with a hidden layer of ``m`` kept and ``k`` silent neurons (any sizes).

    ``W = [W_1; 0]``, ``b = [b_1; b*]``, ``psi = [psi_1; 0]``, ``V = [V_1, W*]`` with block
    sizes ``m``, ``k`` and input / output widths ``p``, ``r`` all symbolic. ``broken``:
    ``"sigma"`` makes the silent rows a free ``k x p`` block, ``"own_psi"`` their psi entries.
    """
    m, k, p, r = sp.symbols("m k p r", integer=True, positive=True)
    rows = sp.MatrixSymbol("W_sigma", k, p) if broken == "sigma" else sp.ZeroMatrix(k, p)
    own = sp.MatrixSymbol("psi_star", k, 1) if broken == "own_psi" else sp.ZeroMatrix(k, 1)
    net = Perceptron(
        weights=(
            sp.BlockMatrix([[sp.MatrixSymbol("W", m, p)], [rows]]),
            sp.BlockMatrix([[sp.MatrixSymbol("V", r, m), sp.MatrixSymbol("W_star", r, k)]]),
        ),
        biases=(
            sp.BlockMatrix([[sp.MatrixSymbol("b", m, 1)], [sp.MatrixSymbol("b_star", k, 1)]]),
            sp.MatrixSymbol("c", r, 1),
        ),
        psis=(
            sp.BlockMatrix([[sp.MatrixSymbol("psi", m, 1)], [own]]),
            sp.MatrixSymbol("phi", r, 1),
        ),
        lengths=(sp.Symbol("o", positive=True),),
    )
    return sp.MatrixSymbol("a", p, 1), sp.Symbol("g_prev", real=True), net


def any_width(broken: str | None = None) -> sp.Matrix:
    """Any kept width ``m`` and any number ``k`` of removed neurons (block matrices).

    The split of ``N^2`` and of the next layer's input into kept and removed parts is derived
    by :func:`forward` from :func:`block_slice` (``sympy.block_collapse``), not typed in.
    ``broken``: as :func:`exact` except ``"o_not_squared"``.
    """
    a, g_prev, net = block_slice(broken)
    update = broken if broken in BROKEN_UPDATES else None
    return trace_residual(
        forward(a, net, g_prev), forward(a, degenerate(net, 0, 0, update), g_prev)
    )


def _first_order_residual(
    difference: sp.Expr, sigma: sp.Symbol, u: sp.Expr, b: sp.Expr, broken: str | None = None
) -> sp.Matrix:
    """Residuals of ``D = 2 u b sigma + sigma^2 u^2``, ``D'(0) = 2 u b``, series, remainder."""
    slope = (1 if broken == "half_slope" else 2) * u * b
    series = sp.series(difference, sigma, 0, 2).removeO()
    remainder = sp.limit(sp.expand(difference - slope * sigma) / sigma**2, sigma, 0)
    return stack(
        reduce(difference - (slope * sigma + sigma**2 * u**2)),
        reduce(sp.diff(difference, sigma).subs(sigma, 0) - slope),
        reduce(series - slope * sigma),
        reduce(remainder - u**2),
    )


def first_order(broken: str | None = None) -> sp.Matrix:
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
        _first_order_residual(block, sigma, u, b, broken),
        _first_order_residual(concrete, sigma, (q.T * a)[0, 0], net.biases[0][n - 1], broken),
    )


def _output_error_residual(n: int, broken: str | None) -> sp.Matrix:
    a, g_prev, net = _silenced(n, 1)
    sigma = sp.Symbol("sigma", positive=True)
    q = vector("q", a.rows)
    w = sp.Matrix(net.weights[0])
    w[n - 1, :] = sigma * q.T
    net = net.with_layers(weights={0: w})
    before, after = forward(a, net, g_prev), forward(a, degenerate(net, 0, 1), g_prev)
    at_zero = {sigma: 0}
    gain, length = before.gains[0].subs(at_zero), sp.sqrt(before.radicands[0].subs(at_zero))
    x = sp.Dummy("x")
    g_prime = sp.diff(g(x), x).subs(x, length)
    u, b_star = (q.T * a)[0, 0], net.biases[0][n - 1]
    v, w_star, phi = net.weights[1][:, : n - 1], net.weights[1][:, n - 1], net.psis[1]
    z_kept = (w * a + net.biases[0] + net.psis[0] * g_prev)[: n - 1, :]
    slope = gain * w_star * u
    if broken != "without_gain_term":
        slope += g_prime * u * b_star / length * (v * z_kept + phi + w_star * b_star)
    zeroth = trace_residual(
        Trace(before.output.subs(at_zero), tuple(r.subs(at_zero) for r in before.radicands),
              tuple(x.subs(at_zero) for x in before.gains)),
        after,
    )  # fmt: skip
    return stack(zeroth, reduce(before.output.diff(sigma).subs(at_zero) - slope))


def output_error(broken: str | None = None) -> sp.Matrix:
    """``y_sigma - y_removed = sigma D + O(sigma^2)``, ``n = 2, 3`` (see module doc).

    ``D = g'(N) (u b* / N) (V z + phi + W* b*) + g(N) W* u`` with ``u = q . a`` and ``N``,
    ``z`` those of the network at ``sigma = 0``; the zeroth order is the exact claim.
    ``broken="without_gain_term"`` drops the ``g'`` term (a control).
    """
    return stack(*[_output_error_residual(n, broken) for n in (2, 3)])
