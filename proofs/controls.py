"""Negative controls: near-misses of the claims that must be shown FALSE.

Each check returns a residual with at least one closed numeric entry whose absolute value,
evaluated to 50 significant digits, exceeds ``1e-6``: a proof that the identity fails, not a
failure to simplify. The numbers come from substituting fixed non-zero rationals for every
symbol and using the paper's profile ``g(N) = tanh(N) / N``; where a symbolic argument residual
explains the failure (``N'^2 - N^2 != 0``) it is reported first.

- elementwise tanh is not rotation-equivariant (§1): ``tanh.(Qz) != Q tanh.(z)``;
- degeneration without ``o <- o + b*^2`` (§4): ``N'^2 - N^2 = -b*^2``;
- degeneration without ``psi <- psi + W* b*`` (§4): the output loses ``W* g b*``;
- degeneration of a neuron whose own psi entry is non-zero (§4): its pre-activation
  ``psi* g_{l-1}`` is input-dependent, so no constant can replace it;
- degeneration of a neuron with ``sigma > 0`` (§4): the first-order term ``2 u b* sigma``;
- reparameterisation by a non-orthogonal ``Q`` (§1): ``Q^{-1}`` in, ``Q`` out, with
  ``Q = diag(2, 1)`` and a shear; ``|Q^{-1} z|^2 != |z|^2``.

Example::

    >>> from isoproof.proofs import controls
    >>> from isoproof.proofs._symbolic import nonzero_number
    >>> nonzero_number(controls.elementwise_tanh())
    True
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import (
    Perceptron,
    cayley,
    forward,
    layer_slice,
    numeric,
    reduce,
    stack,
    tanh_profile,
    vector,
)
from .neurodegeneration import degenerate, silence

__all__ = [
    "degeneration_nonzero_sigma",
    "degeneration_own_psi",
    "degeneration_without_length",
    "degeneration_without_psi",
    "elementwise_tanh",
    "non_orthogonal",
    "rational_values",
]

_WIDTH = 3


def rational_values(symbols: set[sp.Basic]) -> dict[sp.Basic, sp.Expr]:
    """Fixed, non-zero rationals for ``symbols`` (sorted by name); positive where required."""
    values: dict[sp.Basic, sp.Expr] = {}
    for i, symbol in enumerate(sorted(symbols, key=str)):
        value = sp.Rational((i * 37) % 17 - 8, 9) or sp.Rational(1, 3)
        values[symbol] = abs(value) if symbol.is_positive or symbol.is_nonnegative else value
    return values


def _closed(expr: sp.MatrixBase, symbols: set[sp.Basic]) -> sp.Matrix:
    """``expr`` at :func:`rational_values`, to 50 digits."""
    return numeric(expr.xreplace(rational_values(symbols)))


def elementwise_tanh() -> sp.Matrix:
    """``tanh.(Qz) - Q tanh.(z)`` for a Cayley rotation (``n = 3``) at rational ``Q``, ``z``."""
    q = cayley(_WIDTH)
    z = vector("z", _WIDTH)
    residual = (q * z).applyfunc(sp.tanh) - q * z.applyfunc(sp.tanh)
    return _closed(residual, residual.free_symbols)


def _degeneration_control(before: Perceptron, after: Perceptron) -> sp.Matrix:
    """Symbolic argument residual, then the output difference at rationals (tanh profile)."""
    a = vector("a", before.weights[0].cols)
    g_prev = sp.Symbol("g_prev", real=True)
    old = forward(a, before, g_prev, tanh_profile)
    new = forward(a, after, g_prev, tanh_profile)
    difference = new.output - old.output
    symbols = difference.free_symbols | old.output.free_symbols
    return stack(reduce(new.radicands[0] - old.radicands[0]), _closed(difference, symbols))


def degeneration_without_length() -> sp.Matrix:
    """Remove a ``sigma = 0``, ``psi* = 0`` neuron with the psi update but without the o update."""
    _, _, net = layer_slice(_WIDTH)
    net = silence(net, 0, 1)
    return _degeneration_control(
        net, degenerate(net, 0, 1).with_layers(lengths={0: net.lengths[0]})
    )


def degeneration_without_psi() -> sp.Matrix:
    """Remove a ``sigma = 0``, ``psi* = 0`` neuron with the o update but without the psi update."""
    _, _, net = layer_slice(_WIDTH)
    net = silence(net, 0, 1)
    return _degeneration_control(net, degenerate(net, 0, 1).with_layers(psis={1: net.psis[1]}))


def degeneration_own_psi() -> sp.Matrix:
    """Remove a ``sigma = 0`` neuron whose own psi entry ``psi*`` is non-zero, both updates."""
    _, _, net = layer_slice(_WIDTH)
    row_only = silence(net, 0, 1).with_layers(psis={0: net.psis[0]})
    return _degeneration_control(row_only, degenerate(row_only, 0, 1))


def degeneration_nonzero_sigma() -> sp.Matrix:
    """Remove a neuron with incoming row ``sigma q^T``, ``sigma > 0``, both updates."""
    _, _, net = layer_slice(_WIDTH)
    net = silence(net, 0, 1)
    w = sp.Matrix(net.weights[0])
    w[_WIDTH - 1, :] = sp.Symbol("sigma", positive=True) * vector("q", w.cols).T
    net = net.with_layers(weights={0: w})
    return _degeneration_control(net, degenerate(net, 0, 1))


def non_orthogonal() -> sp.Matrix:
    """``W2 Q f(Q^{-1} (W1 a + b1))`` vs ``W2 f(W1 a + b1)``, ``Q = diag(2, 1)`` and a shear."""
    parts: list[sp.MatrixBase] = []
    for q in (sp.diag(2, 1), sp.Matrix([[1, 1], [0, 1]])):
        a, _, net = layer_slice(2, generalised=False)
        inverse = q.inv()
        changed = net.with_layers(
            weights={0: inverse * net.weights[0], 1: net.weights[1] * q},
            biases={0: inverse * net.biases[0]},
        )
        old = forward(a, net, profile=tanh_profile)
        new = forward(a, changed, profile=tanh_profile)
        difference = new.output - old.output
        parts += [
            reduce(new.radicands[0] - old.radicands[0]),
            _closed(difference, difference.free_symbols | old.output.free_symbols),
        ]
    return stack(*parts)
