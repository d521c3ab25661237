"""§2.1 collapse: the parallel precomputation reproduces the generalised perceptron exactly.

isoproof's own construction (``docs/method.md`` §2.1). With ``K_l = [M_l | U_l]``::

    M_0 = W_0,  U_0 = [b_0],  M_{l+1} = W_{l+1} M_l,
    U_{l+1} = [W_{l+1} U_l + psi_{l+1} e^T | b_{l+1}]
    v_l = [c_{l,0} x; c_{l,0}; c_{l,1}; ...; c_{l,l-1}; 1],   c_{l+1} = [g_l c_l, g_l]
    z_l = K_l v_l,    N_l^2 = o_l + |Q_l^T K_l v_l|^2       (any orthogonal Q_l)

(``e`` the last column; ``psis[l]`` of :class:`~proofs._symbolic.Perceptron` is the vector added
to ``z_l``.) The claim: for ``L = 2`` (``[2, 3, 2]``) and ``L = 3`` (``[2, 3, 3, 2]``) with every
weight, bias, psi entry and ``o_l`` an independent symbol, ``g`` undefined and ``Q_l`` a Cayley
rotation, the collapsed trace equals :func:`~proofs._symbolic.forward` layer by layer (two-step
argument: the radicands ``N_l^2``, then the output). ``broken="psi"`` drops the psi term of
``U_l`` (the negative control: the same check, which must then come out not proved).

Example::

    >>> from isoproof.proofs import collapse
    >>> collapse.exact().is_zero_matrix
    True
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import (
    Perceptron,
    Profile,
    Trace,
    cayley,
    forward,
    g,
    matrix,
    radial_length,
    stack,
    trace_residual,
    vector,
)

__all__ = ["collapsed_forward", "exact", "factors", "network"]


def network(widths: list[int]) -> Perceptron:
    """A whole network with symbolic ``W_l``, ``b_l``, ``psi_l`` (``l >= 1``) and ``o_l > 0``."""
    depth = len(widths) - 1
    return Perceptron(
        weights=tuple(matrix(f"W{l}_", widths[l + 1], widths[l]) for l in range(depth)),
        biases=tuple(vector(f"b{l}_", widths[l + 1]) for l in range(depth)),
        psis=(None, *(vector(f"psi{l}_", widths[l + 1]) for l in range(1, depth))),
        lengths=tuple(sp.Symbol(f"o{l}", positive=True) for l in range(depth - 1)),
    )


def factors(net: Perceptron, broken: str | None = None) -> list[tuple[sp.Matrix, sp.Matrix]]:
    """``[(M_l, U_l)]`` for every layer (``broken="psi"``: without the psi term)."""
    m, u = sp.Matrix(net.weights[0]), sp.Matrix(net.biases[0])
    out = [(m, u)]
    for l in range(1, len(net.weights)):
        m, u = sp.Matrix(net.weights[l] * m), sp.Matrix(net.weights[l] * u)
        psi = net.psis[l]
        if psi is not None and broken != "psi":
            u[:, -1] = u[:, -1] + psi
        u = u.row_join(net.biases[l])
        out.append((m, u))
    return out


def _coefficients(x: sp.MatrixBase, coeffs: list[sp.Expr]) -> sp.Matrix:
    """``v = [c_0 x; c_0; ...; c_{l-1}; 1]`` (``[x; 1]`` at layer 0)."""
    if not coeffs:
        return sp.Matrix(x).col_join(sp.Matrix([1]))
    return (coeffs[0] * sp.Matrix(x)).col_join(sp.Matrix([*coeffs, 1]))


def collapsed_forward(
    x: sp.MatrixBase,
    net: Perceptron,
    bases: list[sp.MatrixBase | None],
    *,
    broken: str | None = None,
    profile: Profile = g,
) -> Trace:
    """The collapsed recursion: norms read in the basis ``Q_l`` (``None``: the identity)."""
    *hidden, (m_out, u_out) = factors(net, broken)
    coeffs: list[sp.Expr] = []
    radicands, gains = [], []
    for l, (m, u) in enumerate(hidden):
        y = m.row_join(u) * _coefficients(x, coeffs)
        if bases[l] is not None:
            y = bases[l].T * y
        length = radial_length(y, net.lengths[l])
        radicands.append(length**2)
        gain = profile(length)
        gains.append(gain)
        coeffs = [gain * c for c in coeffs] + [gain]
    output = m_out.row_join(u_out) * _coefficients(x, coeffs)
    return Trace(output, tuple(radicands), tuple(gains))


def exact(broken: str | None = None) -> sp.Matrix:
    """Residual of collapsed vs forward for ``[2, 3, 2]`` and ``[2, 3, 3, 2]`` (zero iff exact).

    ``broken="psi"`` drops the psi term of ``U_l`` (the negative control, same proof path).
    """
    parts = []
    for widths in ([2, 3, 2], [2, 3, 3, 2]):
        net = network(widths)
        x = vector("x", widths[0])
        bases = [cayley(3, f"t{l}_") for l in range(len(widths) - 2)]
        after = collapsed_forward(x, net, bases, broken=broken)
        parts.append(trace_residual(forward(x, net), after))
    return stack(*parts)
