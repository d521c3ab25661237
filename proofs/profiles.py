"""§1 radial profiles: the Lipschitz inequalities behind the receipts' error bounds.

The receipts (``isoproof/ops/_bounds.py``) use ``|f(z) - f(z')| <= Lip(f) |z - z'|`` with
``Lip(f) = max(sup |g|, sup |s'|)`` and ``|g(z) - g(z')| <= sup |g'| |z - z'|``. Proven here:

1. *Jacobian lemma* (any ``n``): ``f(z) = g(N) z``, ``N = sqrt(o + |z|^2)``, has Jacobian
   ``J = g I + (g'(N) / N) z z^T``, so ``J v = g v`` for ``v`` orthogonal to ``z`` and
   ``J z = lambda z`` with ``lambda = (1 - t) g + t s'(N)``, ``t = |z|^2 / N^2 in [0, 1]``
   (``s = N g``). ``J`` is symmetric, so ``||J|| <= max(|g|, |s'|)`` and, on the segment
   between ``z`` and ``z'``, ``Lip(f) <= max(sup |g|, sup |s'|)``. Checked with every entry
   symbolic at ``n = 3`` (eigenvector equations) and as the scalar identity for ``lambda``.
2. *Constants* of the shipped profiles on ``r > 0`` (:data:`CONSTANTS`), each inequality by a
   certificate: ``h(0) = 0`` (a limit) and ``h'(r)`` equal to an expression SymPy's
   assumptions declare non-negative (so ``h >= 0``), or ``h`` itself such an expression.
   ``tanh``: ``sup |g'| <= 2 sqrt(3) / 9`` is a proven bound, not the supremum (about
   0.3434, which is only evaluated numerically, by the bridge test).

Control (``broken=``): the certificate of ``g <= 1/2`` for tanh is not proved.

Example::

    >>> from isoproof.proofs import profiles
    >>> profiles.CONSTANTS["log1p"]["gain_lipschitz"]
    1/2
"""

from __future__ import annotations

import sympy as sp

from ._symbolic import isotropic, radial_length, reduce, stack, vector

__all__ = ["CONSTANTS", "constants", "jacobian_lemma"]

_r = sp.Symbol("r", positive=True)
_R = sp.Symbol("R", positive=True)  # the shifted ReLU's shift
_u = sp.Symbol("u", positive=True)  # r = R + u on the shifted ReLU's active side
_t = sp.tanh(_r)
#: ``1 / cosh(r)^2 = 1 - tanh(r)^2``: the form whose sign SymPy's assumptions know.
_SECH2 = 1 / sp.cosh(_r) ** 2

#: ``sup |s|``, ``Lip(f)``, ``sup |g'|`` (a bound for tanh) and ``sup g`` per profile
#: (``R`` is the shifted ReLU's shift).
CONSTANTS: dict[str, dict[str, sp.Expr]] = {
    "tanh": {"bound": sp.S.One, "lipschitz": sp.S.One,
             "gain_lipschitz": 2 * sp.sqrt(3) / 9, "gain_bound": sp.S.One},
    "softsign": {"bound": sp.S.One, "lipschitz": sp.S.One,
                 "gain_lipschitz": sp.S.One, "gain_bound": sp.S.One},
    "log1p": {"bound": sp.oo, "lipschitz": sp.S.One,
              "gain_lipschitz": sp.S.Half, "gain_bound": sp.S.One},
    "shifted_relu": {"bound": sp.oo, "lipschitz": sp.S.One,
                     "gain_lipschitz": 1 / _R, "gain_bound": sp.S.One},
}  # fmt: skip


def _nonnegative(expr: sp.Expr) -> sp.Expr:
    """``0`` if SymPy's assumptions prove ``expr >= 0``, else a symbol naming the failure."""
    return sp.S.Zero if sp.factor(expr).is_nonnegative else sp.Symbol(f"unproved[{expr} >= 0]")


def _same(value: sp.Expr, expected: sp.Expr) -> sp.Expr:
    """``0`` iff ``value`` is ``expected`` (also for ``oo``), else a symbol naming both."""
    return sp.S.Zero if value == expected else sp.Symbol(f"[{value} != {expected}]")


def _monotone(h: sp.Expr, certificate: sp.Expr) -> sp.Matrix:
    """``h >= 0`` on ``r > 0``: ``h(0+) = 0``, ``h' = certificate``, ``certificate >= 0``.

    ``certificate`` may use :data:`_SECH2`; the derivative identity is checked with it
    replaced by ``1 - tanh^2`` (an identity) so both sides are in the atom ``tanh(r)``.
    """
    derivative = sp.diff(h, _r) - certificate.xreplace({_SECH2: 1 - _t**2})
    return stack(sp.limit(h, _r, 0, "+"), reduce(derivative), _nonnegative(certificate))


def _sech2_identity() -> sp.Expr:
    """``1 / cosh^2 - (1 - tanh^2) = 0`` (in exponentials)."""
    return sp.simplify((_SECH2 - (1 - _t**2)).rewrite(sp.exp))


def _tanh(broken: str | None) -> sp.Matrix:
    c = CONSTANTS["tanh"]["gain_lipschitz"]
    half = sp.S.Half if broken == "too_small" else sp.S.One
    return stack(
        _sech2_identity(),
        _nonnegative(_SECH2),  # s' = 1 - tanh^2 >= 0
        _nonnegative(_t**2),  # 1 - s' = tanh^2 >= 0
        _monotone(half * _r - _t, half - _SECH2 if half != 1 else _t**2),  # g <= 1 (lip, sup g)
        _nonnegative(_t),  # g >= 0, s >= 0
        # -c <= g' <= 0 with r^2 g' = r (1 - t^2) - t
        _monotone(_t - _r * (1 - _t**2), 2 * _r * _t * _SECH2),
        _monotone(c * _r**2 + _r * (1 - _t**2) - _t, 2 * _r * (_t - 1 / sp.sqrt(3)) ** 2
                  * (_t + 2 / sp.sqrt(3))),
        sp.limit(_t, _r, sp.oo) - CONSTANTS["tanh"]["bound"],
        sp.limit(_t / _r, _r, 0, "+") - CONSTANTS["tanh"]["gain_bound"],
    )  # fmt: skip


def _softsign() -> sp.Matrix:
    s = _r / (1 + _r)
    g, ds = s / _r, sp.diff(s, _r)
    return stack(
        _nonnegative(1 - ds), _nonnegative(ds), _nonnegative(1 - g), _nonnegative(g),
        _nonnegative(1 - s), sp.limit(s, _r, sp.oo) - 1,
        _nonnegative(1 + sp.diff(g, _r)), _nonnegative(-sp.diff(g, _r)),
        sp.limit(sp.diff(g, _r), _r, 0, "+") + CONSTANTS["softsign"]["gain_lipschitz"],
        sp.limit(g, _r, 0, "+") - CONSTANTS["softsign"]["gain_bound"],
    )  # fmt: skip


def _log1p() -> sp.Matrix:
    s = sp.log(1 + _r)
    g, ds = s / _r, sp.diff(s, _r)
    c = CONSTANTS["log1p"]["gain_lipschitz"]
    # r^2 g' = r / (1 + r) - log(1 + r), in [-r^2 / 2, 0]
    numerator = _r / (1 + _r) - s
    return stack(
        _nonnegative(1 - ds), _nonnegative(ds), _nonnegative(g),
        _monotone(_r - s, _r / (1 + _r)),  # g <= 1
        _monotone(-numerator, _r / (1 + _r) ** 2),  # g' <= 0
        _monotone(c * _r**2 + numerator, _r**2 * (_r + 2) / (1 + _r) ** 2),  # g' >= -1/2
        _same(sp.limit(s, _r, sp.oo), CONSTANTS["log1p"]["bound"]),  # unbounded
        sp.limit(g, _r, 0, "+") - CONSTANTS["log1p"]["gain_bound"],
    )  # fmt: skip


def _shifted_relu() -> sp.Matrix:
    r = _R + _u  # the active side r > R; for r <= R, s = g = s' = g' = 0
    s = r - _R
    g, ds = s / r, sp.diff(s, _u)
    dg = sp.diff(g, _u)
    return stack(
        _nonnegative(1 - ds), _nonnegative(ds), _nonnegative(1 - g), _nonnegative(g),
        _nonnegative(dg), _nonnegative(CONSTANTS["shifted_relu"]["gain_lipschitz"] - dg),
        sp.limit(sp.diff(g, _u), _u, 0, "+") - CONSTANTS["shifted_relu"]["gain_lipschitz"],
        sp.limit(g, _u, sp.oo) - CONSTANTS["shifted_relu"]["gain_bound"],
    )  # fmt: skip


def jacobian_lemma(n: int = 3) -> sp.Matrix:
    """``J v = g v`` (``v`` orthogonal to ``z``) and ``J z = ((1 - t) g + t s'(N)) z``."""
    z = vector("z", n)
    o = sp.Symbol("o", positive=True)
    f, gain = isotropic(z, o)
    jac = f.jacobian(z)
    length = radial_length(z, o)
    x = sp.Dummy("x")
    g_prime = sp.diff(gain.func(x), x).subs(x, length)
    v = sp.Matrix([z[1], -z[0], *([0] * (n - 2))])
    # lambda = g + g'(N) |z|^2 / N, and lambda = (1 - t) g + t s'(N) with t = |z|^2 / N^2,
    # s'(N) = g + N g' (the scalar identity, with symbols for N, g, g', |z|^2)
    big_n, g0, g1, r2 = sp.symbols("N g g1 r2", positive=True)
    t = r2 / big_n**2
    return stack(
        reduce(jac * v - gain * v),
        reduce(jac * z - (gain + g_prime * (length**2 - o) / length) * z),
        reduce((1 - t) * g0 + t * (g0 + big_n * g1) - (g0 + g1 * r2 / big_n)),
    )


def constants(broken: str | None = None) -> sp.Matrix:
    """The Jacobian lemma and every inequality behind :data:`CONSTANTS` (see module doc)."""
    return stack(jacobian_lemma(), _tanh(broken), _softsign(), _log1p(), _shifted_relu())
