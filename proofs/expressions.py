"""SymPy expressions of the proven formulas, for tests that bridge proofs and the torch library.

A bridge test lambdifies these expressions and compares them with the library's tensors, so
the library is checked against exactly the formulas the proofs use (the degeneration proofs
call :func:`degenerated_length` and :func:`degenerated_psi` below).

- :func:`activation_expression`: isotropic tanh ``f(z) = tanh(N) / N * z``,
  ``N = sqrt(o + sum_i z_i^2)`` (§1 isotropic activations).
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

from typing import cast

import sympy as sp

from ._matrices import is_matrix_expression
from ._symbolic import sq_norm

__all__ = [
    "activation_expression",
    "degenerated_length",
    "degenerated_psi",
    "degeneration_update",
]


def activation_expression(n: int) -> tuple[tuple[sp.Symbol, ...], sp.Symbol, sp.Matrix]:
    """``(z, o, f)`` with ``f = tanh(N) / N * z``, ``N = sqrt(o + |z|^2)``, ``z`` of width ``n``.

    ``z_i`` are real symbols ``z0 ... z{n-1}``; ``o`` is a positive symbol, added to the squared
    norm as in the note's v2 form (substitute ``o = 0`` for no intrinsic length).
    """
    if n < 1:
        raise ValueError(f"width must be at least 1, got {n}")
    z = tuple(sp.Symbol(f"z{i}", real=True) for i in range(n))
    o = sp.Symbol("o", positive=True)
    length = sp.sqrt(o + sp.Add(*[zi**2 for zi in z]))
    return z, o, sp.Matrix(z) * (sp.tanh(length) / length)


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
