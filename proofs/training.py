"""Training-side claims: the scaffold gradient, psi gathering, optimiser-state transport.

- *Scaffold gradient* (§5): a neuron added with zero row ``rho``, bias ``beta`` and psi entry
  ``chi`` and outgoing column ``w`` receives, at ``rho = beta = chi = 0``,
  ``dy/d rho_j = g(N) w a_j``, ``dy/d beta = g(N) w``, ``dy/d chi = g(N) g_prev w`` (its own
  contribution to ``N^2`` is ``h^2`` with ``h = 0``, so ``g`` does not move to first order):
  the gradient is non-zero iff ``w`` is (``g > 0``, ``a != 0``), which is why the paper
  initialises ``w`` small but non-zero. Checked with every entry symbolic, ``n = 2, 3``.
- *psi gathering* (§4, ``gather_own_psi``): the ``d`` neurons with ``sigma = 0`` may be rotated
  among themselves (their rows stay zero); the Householder ``H = I - 2 v v^T / v^T v`` with
  ``v = p + e s e_1``, ``s = |p|``, ``e = +-1``, maps their own psi ``p`` to ``-e s e_1``, so
  ``d - 1`` of them have ``psi* = 0`` and are removable (``neurodegeneration``). Proven modulo
  ``s^2 = |p|^2`` (polynomial remainder) for ``d = 2, 3, 4``; ``v^T v = 2 s (s + e p_0) > 0``
  when ``e = sign(p_0)`` and ``p != 0``, as the library chooses.
- *First moment* (``isoproof.optim.apply_linear``): if an exact change of basis maps the
  gradients as ``G' = A G B^T`` (the chain rule for ``W' = A W B^T`` with orthogonal ``A``,
  ``B``; taken as the premise, not proven here), then ``m' = A m B^T`` is carried exactly by
  ``m <- beta m + (1 - beta) G``, for any sizes (matrix expressions).
- *Second moment*: ``apply_linear`` maps ``v`` by ``(A∘A) v (B∘B)^T``. For one gradient
  ``(A G)∘(A G) = (A∘A)(G∘G) + 2 sum_{j<k} A_ij A_ik G_j G_k``: exact iff every row of ``A``
  has at most one non-zero entry (permutations, sign flips, embeddings), an approximation for
  rotations. Checked at ``n = 2, 3`` (dense Cayley ``A`` and a sparse pattern).

Example::

    >>> from isoproof.proofs import training
    >>> training.first_moment().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._matrices import scalarise
from ._symbolic import (
    Trace,
    cayley,
    forward,
    layer_slice,
    matrix,
    reduce,
    stack,
    trace_residual,
    vector,
)
from .neurogenesis import grow

__all__ = ["first_moment", "gather_psi", "scaffold_gradient", "second_moment"]


def _scaffold_residual(n: int, broken: str | None) -> sp.Matrix:
    a, g_prev, net = layer_slice(n)
    assert g_prev is not None
    w = vector("w", net.weights[1].rows)
    grown = grow(net, 0, w)
    rho, beta, chi = matrix("rho", 1, a.rows), sp.Symbol("beta"), sp.Symbol("chi")
    weights, biases, psi = (
        sp.Matrix(x) for x in (grown.weights[0], grown.biases[0], grown.psis[0])
    )
    weights[n, :], biases[n, 0], psi[n, 0] = rho, beta, chi
    live = forward(
        a, grown.with_layers(weights={0: weights}, biases={0: biases}, psis={0: psi}), g_prev
    )
    params = [*rho, beta, chi]
    at_zero = dict.fromkeys(params, 0)
    gradient = sp.Matrix.hstack(*[live.output.diff(e) for e in params]).subs(at_zero)
    old = forward(a, net, g_prev)
    column = sp.ones(w.rows, 1) if broken == "without_column" else w
    expected = old.gains[0] * column * sp.Matrix([[*a, 1, g_prev]])
    after = Trace(
        gradient,
        tuple(r.subs(at_zero) for r in live.radicands),
        tuple(x.subs(at_zero) for x in live.gains),
    )
    return trace_residual(Trace(expected, old.radicands, old.gains), after)


def scaffold_gradient(broken: str | None = None) -> sp.Matrix:
    """The gradient reaching a new neuron is ``g w [a^T, 1, g_prev]``, ``n = 2, 3``.

    ``broken="without_column"`` compares with the formula without ``w`` (a control).
    """
    return stack(*[_scaffold_residual(n, broken) for n in (2, 3)])


def _gather_residual(d: int, sign: int, broken: str | None) -> sp.Matrix:
    p = vector("p", d)
    s = sp.Symbol("s", positive=True)
    e1 = sp.zeros(d, 1)
    e1[0] = 1
    v = p if broken == "no_shift" else p + sign * s * e1
    house = sp.eye(d) - 2 * v * v.T / (v.T * v)[0, 0]
    relation = s**2 - (p.T * p)[0, 0]
    parts = []
    for entry in house * p + sign * s * e1:
        numerator = sp.numer(sp.together(entry))
        parts.append(reduce(sp.rem(sp.expand(numerator), relation, s)))
    return stack(reduce(house.T * house - sp.eye(d)), *parts)


def gather_psi(broken: str | None = None) -> sp.Matrix:
    """``H p = -e |p| e_1`` and ``H^T H = I`` for ``d = 2, 3, 4``, both signs ``e``.

    ``broken="no_shift"`` uses ``v = p`` (a control).
    """
    return stack(*[_gather_residual(d, e, broken) for d in (2, 3, 4) for e in (1, -1)])


def first_moment(broken: str | None = None) -> sp.Matrix:
    """``A (beta m + (1 - beta) G) B^T = beta m' + (1 - beta) G'`` for any sizes.

    ``broken="transposed"`` transports the old moment by ``A^T`` (a control).
    """
    n, p = sp.symbols("n p", integer=True, positive=True)
    a, b = sp.MatrixSymbol("A", n, n), sp.MatrixSymbol("B", p, p)
    m, grad = sp.MatrixSymbol("m", n, p), sp.MatrixSymbol("G", n, p)
    beta = sp.Symbol("beta", positive=True)
    moved = (a.T if broken == "transposed" else a) * m * b.T
    new = beta * moved + (1 - beta) * (a * grad * b.T)
    exact = a * (beta * m + (1 - beta) * grad) * b.T
    vec_m, vec_g = sp.MatrixSymbol("m_b", n, 1), sp.MatrixSymbol("G_b", n, 1)
    vec_new = beta * (a.T if broken == "transposed" else a) * vec_m + (1 - beta) * a * vec_g
    return stack(
        reduce(scalarise(new - exact)),
        reduce(scalarise(vec_new - a * (beta * vec_m + (1 - beta) * vec_g))),
    )


def _squared_map_residual(a: sp.MatrixBase, cross: bool) -> sp.Matrix:
    grad = vector("G", a.cols)
    moved = a * grad
    squared = a.applyfunc(lambda x: x**2) * grad.applyfunc(lambda x: x**2)
    terms = sp.Matrix(
        [
            2 * sp.Add(*[a[i, j] * a[i, k] * grad[j] * grad[k]
                         for j in range(a.cols) for k in range(j + 1, a.cols)])
            for i in range(a.rows)
        ]
    )  # fmt: skip
    return reduce(moved.applyfunc(lambda x: x**2) - squared - (terms if cross else 0 * terms))


def second_moment(broken: str | None = None) -> sp.Matrix:
    """The squared map's error is exactly the cross terms; none for one entry per row.

    ``broken="rotation_exact"`` drops the cross terms for a rotation (a control).
    """
    x = vector("x", 3)
    sparse = sp.Matrix([[0, x[0], 0], [x[1], 0, 0], [0, 0, 0], [0, 0, x[2]]])
    return stack(
        *[_squared_map_residual(cayley(n), broken != "rotation_exact") for n in (2, 3)],
        _squared_map_residual(sparse, False),
    )
