"""§1 isotropic activations / §2 generalised perceptron: reparameterisation by ``Q in O(n)``.

A hidden layer's basis change is absorbed by its neighbouring affine maps. Plain form (§1)::

    W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1)

Generalised perceptron (§2): for the slice ``z = W a + b + psi g_prev``, ``a' = g(N(z; o)) z``,
``y = V a' + c + phi g(N(z; o))``, the rotation ``W <- Q^T W``, ``b <- Q^T b``,
``psi <- Q^T psi``, ``V <- V Q`` (``c``, ``phi``, ``o`` unchanged) leaves ``y`` identical,
because the new pre-activation is ``Q^T z``, ``|Q^T z|^2 = |z|^2`` (argument identity) and
``V Q (g Q^T z) = V g z``. Every entry (``W``, ``b``, ``psi``, ``V``, ``c``, ``phi``, ``a``,
``g_prev``, ``o`` and the parameters of ``Q``) is an independent symbol.

Any width (:func:`any_width`): the same slice with matrix symbols of symbolic widths and
``Q`` an :func:`~proofs._matrices.orthogonal` symbol. Concrete: Cayley ``Q``, and a reflection
times a cyclic permutation ``Q = H C`` (``Q != Q^T``, so ``Q`` and ``Q^T`` are told apart),
``n = 2..4``.
Controls (``broken=``): psi not rotated, ``V`` not rotated, ``Q`` without the hypothesis.

Example::

    >>> from isoproof.proofs import reparameterisation
    >>> reparameterisation.plain().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._matrices import orthogonal
from ._symbolic import cayley, forward, householder, layer_slice, stack, trace_residual

__all__ = [
    "SIZES",
    "any_width",
    "plain",
    "reflection",
    "reparameterisation_residual",
    "rotation",
]

#: Hidden widths checked with every entry symbolic.
SIZES: tuple[int, ...] = (2, 3, 4)


def reparameterisation_residual(
    q: sp.MatrixBase, generalised: bool = True, broken: str | None = None
) -> sp.Matrix:
    """Two-step residual of the reparameterisation by ``Q`` (``Q^T`` into, ``Q`` out of, layer).

    Step one proves ``N(Q^T z; o)^2 - N(z; o)^2 = 0``; step two the output identity. ``q`` of
    symbolic size gives the any-width slice. ``broken``: ``"psi_not_rotated"`` keeps ``psi``,
    ``"v_not_rotated"`` keeps ``V`` (controls).
    """
    a, g_prev, net = layer_slice(q.rows, generalised=generalised)
    psi = net.psis[0]
    if psi is not None and broken != "psi_not_rotated":
        psi = q.T * psi
    rotated = net.with_layers(
        weights={
            0: q.T * net.weights[0],
            1: net.weights[1] if broken == "v_not_rotated" else net.weights[1] * q,
        },
        biases={0: q.T * net.biases[0]},
        psis={0: psi},
    )
    return trace_residual(forward(a, net, g_prev), forward(a, rotated, g_prev))


def rotation(broken: str | None = None) -> sp.Matrix:
    """Generalised perceptron (o, psi), Cayley ``Q``, hidden widths ``n = 2, 3, 4``."""
    return stack(*[reparameterisation_residual(cayley(n), broken=broken) for n in SIZES])


def _cycle(n: int) -> sp.Matrix:
    """The cyclic permutation ``e_i -> e_{i+1}``: orthogonal and not symmetric for ``n >= 3``."""
    return sp.Matrix(n, n, lambda i, j: 1 if i == (j + 1) % n else 0)


def reflection(broken: str | None = None) -> sp.Matrix:
    """Generalised perceptron, ``Q = H C`` (Householder ``H`` times a cyclic permutation ``C``:
    an orthogonal ``Q`` with ``Q != Q^T``), ``n = 2, 3, 4``.

    ``broken="transposed"`` rotates out by ``Q^T`` instead of ``Q`` (``n = 3``; a control that
    a symmetric ``Q`` could not fail).
    """
    if broken == "transposed":
        return _transposed(householder(3) * _cycle(3))
    return stack(*[reparameterisation_residual(householder(n) * _cycle(n)) for n in SIZES])


def plain(broken: str | None = None) -> sp.Matrix:
    """``W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1)``, Cayley and Householder, n = 2, 3, 4.

    ``broken="v_not_rotated"`` (a control) at ``n = 2``.
    """
    return stack(
        *[
            reparameterisation_residual(q, generalised=False, broken=broken)
            for n in (SIZES[:1] if broken else SIZES)
            for q in (cayley(n), householder(n))
        ]
    )


def any_width(broken: str | None = None) -> sp.Matrix:
    """Any widths: generalised and plain slices, ``Q`` orthogonal of symbolic size ``n``.

    ``broken``: as :func:`reparameterisation_residual`, or ``"no_hypothesis"`` (``Q`` an
    arbitrary matrix symbol).
    """
    n = sp.Symbol("n", integer=True, positive=True)
    q = sp.MatrixSymbol("Q", n, n) if broken == "no_hypothesis" else orthogonal("Q", n)
    return stack(
        reparameterisation_residual(q, True, broken),
        reparameterisation_residual(q, False, broken),
    )


def _transposed(q: sp.MatrixBase) -> sp.Matrix:
    """``Q^T`` into the layer and ``Q^T`` (not ``Q``) out of it."""
    a, g_prev, net = layer_slice(q.rows)
    psi = net.psis[0]
    assert psi is not None
    wrong = net.with_layers(
        weights={0: q.T * net.weights[0], 1: net.weights[1] * q.T},
        biases={0: q.T * net.biases[0]},
        psis={0: q.T * psi},
    )
    return trace_residual(forward(a, net, g_prev), forward(a, wrong, g_prev))
