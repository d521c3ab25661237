"""SymPy expressions of the proven formulas, for tests that bridge proofs and the torch library.

One source: everything here is built by :mod:`proofs._symbolic` (the activation by
:func:`~proofs._symbolic.isotropic`, the network by :func:`~proofs._symbolic.forward`, the
length by :func:`~proofs._symbolic.radial_length`), the very builders every proof uses, and the
degeneration proofs call :func:`degenerated_length` and :func:`degenerated_psi` below. A bridge
test lambdifies these expressions and compares them with the library's tensors.

- :data:`PROFILES` / :func:`gain_profile`: the shipped radial profiles as gains
  ``g(N) = s(N) / N`` (``tanh``, ``softsign``, ``log1p``, ``shifted_relu``).
- :func:`activation_expression`: ``f(z) = g(N) z``, ``N = sqrt(o + |z|^2)`` (§1).
- :func:`forward_expression`: the generalised perceptron's output (§2):
  ``z_l = W_l a_{l-1} + b_l + psi_l g_{l-1}`` (``psi_0`` absent), ``a_l = g(N(z_l; o_l)) z_l``.
- :func:`degeneration_update`: removing ``k`` neurons with biases ``b*`` and outgoing columns
  ``W*`` sets ``o <- o + sum_j b*_j^2`` and ``psi <- psi + W* b*`` (§4 neurodegeneration).

Example::

    >>> import sympy as sp
    >>> from isoproof.proofs.expressions import activation_expression
    >>> z, o, f = activation_expression(2)
    >>> value = f.subs({z[0]: 3, z[1]: 4, o: 0})
    >>> sp.simplify(value - sp.Matrix([3, 4]) * sp.tanh(5) / 5) == sp.zeros(2, 1)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import sympy as sp

from ._matrices import is_matrix_expression
from ._symbolic import (
    Perceptron,
    Profile,
    forward,
    isotropic,
    matrix,
    sq_norm,
    tanh_profile,
    vector,
)

__all__ = [
    "PROFILES",
    "activation_expression",
    "degenerated_length",
    "degenerated_psi",
    "degeneration_update",
    "forward_expression",
    "gain_profile",
]

#: Radial profiles ``s`` of the library (``isoproof.radial``), as functions of ``N`` and the
#: shifted ReLU's shift ``R``; the gain is ``s(N) / N``.
PROFILES: dict[str, Callable[[sp.Expr, sp.Expr], sp.Expr]] = {
    "tanh": lambda r, shift: sp.tanh(r),
    "softsign": lambda r, shift: r / (1 + r),
    "log1p": lambda r, shift: sp.log(1 + r),
    "shifted_relu": lambda r, shift: sp.Max(r - shift, 0),
}


def gain_profile(radial: str = "tanh", shift: float = 1.0) -> Profile:
    """The gain ``g(N) = s(N) / N`` of a shipped profile (``tanh``: :func:`tanh_profile`)."""
    if radial not in PROFILES:
        raise ValueError(f"expected a radial profile in {sorted(PROFILES)}, got {radial!r}")
    if radial == "tanh":
        return tanh_profile
    s = PROFILES[radial]
    return lambda length: s(length, sp.nsimplify(shift)) / length


def activation_expression(
    n: int, radial: str = "tanh"
) -> tuple[tuple[sp.Symbol, ...], sp.Symbol, sp.Matrix]:
    """``(z, o, f)`` with ``f = g(N) z``, ``N = sqrt(o + |z|^2)``, ``z`` of width ``n``.

    ``z_i`` are real symbols ``z0 ... z{n-1}``; ``o`` is a positive symbol, added to the squared
    norm as in the note's v2 form (substitute ``o = 0`` for no intrinsic length). Built by
    :func:`proofs._symbolic.isotropic`.
    """
    if n < 1:
        raise ValueError(f"width must be at least 1, got {n}")
    z = vector("z", n)
    o = sp.Symbol("o", positive=True)
    f, _ = isotropic(z, o, gain_profile(radial))
    return tuple(z), o, f


def forward_expression(
    widths: tuple[int, ...], radial: str = "tanh", psi: bool = True
) -> tuple[sp.Matrix, Perceptron, sp.Matrix]:
    """``(x, net, y)``: the symbolic network of these widths and its output (``forward``).

    Layer ``l`` has ``W_l`` (symbols ``W{l}_i_j``), ``b_l``, ``psi_l`` for ``l >= 1`` (when
    ``psi``; the library's ``model.psi[l - 1]``) and ``o_l > 0`` after every hidden layer.
    """
    depth = len(widths) - 1
    x = vector("x", widths[0])
    net = Perceptron(
        weights=tuple(matrix(f"W{l}_", widths[l + 1], widths[l]) for l in range(depth)),
        biases=tuple(vector(f"b{l}_", widths[l + 1]) for l in range(depth)),
        psis=(None, *[vector(f"psi{l}_", widths[l + 1]) if psi else None for l in range(1, depth)]),
        lengths=tuple(sp.Symbol(f"o{l}", positive=True) for l in range(depth - 1)),
    )
    return x, net, forward(x, net, profile=gain_profile(radial)).output


def degenerated_length(o: sp.Expr, b_star: sp.MatrixBase) -> sp.Expr:
    """``o + |b*|^2``: the removed neurons' constant pre-activations join the intrinsic length."""
    return o + sq_norm(b_star)


def degenerated_psi(psi: sp.MatrixBase, w_star: sp.MatrixBase, b_star: sp.MatrixBase) -> sp.Matrix:
    """``psi + W* b*``: the removed neurons' output ``g b*`` reaches the next layer via psi."""
    if is_matrix_expression(w_star):
        return cast(sp.Matrix, psi + w_star * b_star)
    return sp.Matrix(psi) + sp.Matrix(w_star) * sp.Matrix(b_star)


def degeneration_update(
    k: int = 1, width_next: int = 2
) -> tuple[dict[str, sp.Symbol | sp.Matrix], sp.Expr, sp.Matrix]:
    """``(symbols, o_new, psi_new)`` for removing ``k`` neurons feeding ``width_next`` outputs.

    ``symbols`` holds ``"o"`` (positive), ``"b_star"`` (``k x 1``), ``"W_star"``
    (``width_next x k``, the removed columns of the next weight) and ``"psi"``
    (``width_next x 1``, the next layer's psi). ``o_new = o + sum_j b*_j^2`` and
    ``psi_new = psi + W* b*``.
    """
    if k < 1 or width_next < 1:
        raise ValueError(f"need k >= 1 and width_next >= 1, got k={k}, width_next={width_next}")
    o = sp.Symbol("o", positive=True)
    b_star = sp.Matrix([sp.Symbol(f"b_star{j}", real=True) for j in range(k)])
    w_star = sp.Matrix(width_next, k, lambda i, j: sp.Symbol(f"W_star{i}_{j}", real=True))
    psi = sp.Matrix([sp.Symbol(f"psi{i}", real=True) for i in range(width_next)])
    symbols: dict[str, sp.Symbol | sp.Matrix] = {
        "o": o,
        "b_star": b_star,
        "W_star": w_star,
        "psi": psi,
    }
    return symbols, degenerated_length(o, b_star), degenerated_psi(psi, w_star, b_star)
