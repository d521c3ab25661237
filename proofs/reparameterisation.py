"""§1 isotropic activations / §2 generalised perceptron: reparameterisation by ``Q in O(n)``.

A hidden layer's basis change is absorbed by its neighbouring affine maps. Plain form (§1)::

    W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1)

Generalised perceptron (§2): for the slice ``z = W a + b + psi g_prev``, ``a' = g(N(z; o)) z``,
``y = V a' + c + phi g(N(z; o))``, the rotation ``W <- Q^T W``, ``b <- Q^T b``,
``psi <- Q^T psi``, ``V <- V Q`` (``c``, ``phi``, ``o`` unchanged) leaves ``y`` identical,
because the new pre-activation is ``Q^T z``, ``|Q^T z|^2 = |z|^2`` (argument identity) and
``V Q (g Q^T z) = V g z``. Every entry (``W``, ``b``, ``psi``, ``V``, ``c``, ``phi``, ``a``,
``g_prev``, ``o`` and the parameters of ``Q``) is an independent symbol.

Example::

    >>> from isoproof.proofs import reparameterisation
    >>> reparameterisation.plain().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import cayley, forward, householder, layer_slice, stack, trace_residual

__all__ = ["SIZES", "plain", "reflection", "reparameterisation_residual", "rotation"]

#: Hidden widths checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)


def reparameterisation_residual(q: sp.MatrixBase, generalised: bool = True) -> sp.Matrix:
    """Two-step residual of the reparameterisation by ``Q`` (``Q^T`` into, ``Q`` out of, layer).

    Step one proves ``N(Q^T z; o)^2 - N(z; o)^2 = 0``; step two the output identity.
    """
    a, g_prev, net = layer_slice(q.rows, generalised=generalised)
    psi = net.psis[0]
    rotated = net.with_layers(
        weights={0: q.T * net.weights[0], 1: net.weights[1] * q},
        biases={0: q.T * net.biases[0]},
        psis={0: None if psi is None else q.T * psi},
    )
    return trace_residual(forward(a, net, g_prev), forward(a, rotated, g_prev))


def rotation() -> sp.Matrix:
    """Generalised perceptron (o, psi), Cayley ``Q``, hidden widths ``n = 2, 3, 4``."""
    return stack(*[reparameterisation_residual(cayley(n)) for n in SIZES])


def reflection() -> sp.Matrix:
    """Generalised perceptron (o, psi), Householder ``Q``, hidden widths ``n = 2, 3, 4``."""
    return stack(*[reparameterisation_residual(householder(n)) for n in SIZES])


def plain() -> sp.Matrix:
    """``W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1)``, Cayley and Householder, n = 2, 3, 4."""
    return stack(
        *[
            reparameterisation_residual(q, generalised=False)
            for n in SIZES
            for q in (cayley(n), householder(n))
        ]
    )
