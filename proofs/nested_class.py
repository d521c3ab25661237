"""§2 generalised perceptron: the class with intrinsic lengths and psi terms is nested.

Let ``P(n)`` be the generalised isotropic perceptrons (§2) whose hidden layer ``l`` has width
``n``. Then, with the same network function ``F``:

- growth (§5): every member of ``P(n)`` equals a member of ``P(n + 1)`` (zero row, bias and psi
  entry; any outgoing column); growing and then removing the new neuron (``b* = 0``) returns
  the original parameters;
- degeneration (§4): every member of ``P(n)`` whose last neuron has ``sigma = 0`` and a zero
  psi entry equals a member of ``P(n - 1)`` (``o <- o + b*^2``, ``psi_{l+1} <- psi + W* b*``);
- the plain isotropic MLP (every ``o_l = 0``, ``psi_l = 0``) is not closed under
  degeneration by itself (the update makes ``o = b*^2 > 0``), which is why the class carries
  ``o`` and ``psi``.

Checked on whole networks of widths ``[2, 2, n, 2]`` (two activations, psi on both later
layers, every entry symbolic), ``n = 2, 3, 4``, resizing the second hidden layer.

Example::

    >>> from isoproof.proofs import nested_class
    >>> nested_class.degeneration(broken="without_o").is_zero_matrix
    False
"""

from __future__ import annotations

from typing import cast

import sympy as sp

from ._symbolic import (
    Perceptron,
    Residual,
    forward,
    matrix,
    reduce,
    stack,
    trace_residual,
    vector,
)
from .neurodegeneration import degenerate, silence
from .neurogenesis import grow

__all__ = ["SIZES", "degeneration", "growth", "network"]

#: Widths of the resized hidden layer.
SIZES: tuple[int, ...] = (2, 3, 4)

_LAYER = 1  # the resized hidden layer: output of W_1, which has a psi term


def network(widths: tuple[int, ...]) -> tuple[sp.Matrix, Perceptron]:
    """``(x, net)``: a generalised perceptron of the given widths, every entry symbolic.

    Layer ``l`` has ``W_l``, ``b_l``, ``psi_l`` (for ``l >= 1``) and ``o_l > 0`` (hidden only).
    """
    depth = len(widths) - 1
    return vector("x", widths[0]), Perceptron(
        weights=tuple(matrix(f"W{l}_", widths[l + 1], widths[l]) for l in range(depth)),
        biases=tuple(vector(f"b{l}_", widths[l + 1]) for l in range(depth)),
        psis=(None, *[vector(f"psi{l}_", widths[l + 1]) for l in range(1, depth)]),
        lengths=tuple(sp.Symbol(f"o{l}", positive=True) for l in range(depth - 1)),
    )


def growth(broken: str | None = None) -> sp.Matrix:
    """``P(n) -> P(n + 1)`` keeps ``F`` (``n = 2, 3, 4``); grow-then-remove is the identity."""
    parts: list[sp.Matrix] = []
    for n in SIZES[:1] if broken else SIZES:
        x, net = network((2, 2, n, 2))
        grown = grow(net, _LAYER, vector("w_new", 2), broken)
        parts.append(trace_residual(forward(x, net), forward(x, grown)))
        back = degenerate(grown, _LAYER, 1)
        parts.append(
            stack(
                *[
                    reduce(cast(Residual, new) - cast(Residual, old))
                    for new, old in zip(
                        (*back.weights, *back.biases, *back.psis[1:], *back.lengths),
                        (*net.weights, *net.biases, *net.psis[1:], *net.lengths),
                        strict=True,
                    )
                ]
            )
        )
    return stack(*parts)


def degeneration(broken: str | None = None) -> sp.Matrix:
    """``P(n) -> P(n - 1)`` keeps ``F`` when the removed neuron has ``sigma = 0``, ``psi* = 0``."""
    parts: list[sp.Matrix] = []
    for n in SIZES[:1] if broken else SIZES:
        x, net = network((2, 2, n, 2))
        net = silence(net, _LAYER, 1)
        new = degenerate(net, _LAYER, 1, broken)
        parts.append(trace_residual(forward(x, net), forward(x, new)))
    return stack(*parts)
