"""Shared SymPy builders: symbolic arrays, exact orthogonal matrices, the isotropic perceptron.

Every proof in :mod:`proofs` is built from this module, so all of them share one definition of
the maths (§1 isotropic activations, §2 generalised perceptron)::

    N(z; o) = sqrt(o + |z|^2),    f(z) = g(N) z,
    z_0 = W_0 x + b_0     (+ psi_0 g_in when the network is a slice starting mid-network),
    z_l = W_l a_{l-1} + b_l + psi_l g_{l-1},    a_l = g_l z_l,    g_l = g(N(z_l; o_l)).

``g`` is an undefined :class:`sympy.Function` (the radial profile ``g(r) = s(r) / r``), so an
identity proven here holds for every profile. Orthogonal matrices are exact: the Cayley transform
of a symbolic skew matrix and the Householder reflection of a symbolic vector have rational
entries, so ``Q^T Q - I`` is the zero matrix after cancellation.

Zero tests. A residual is brought to one fraction with :func:`sympy.together` (structural, so
equal denominators are shared), and its numerator is expanded in a sparse polynomial ring over
QQ whose generators are the symbols and the opaque atoms (``g(...)``, square roots). The
numerator is the zero polynomial iff the residual is identically zero; the ring is an exact
(and much faster) replacement for ``expand``/``cancel`` on large expressions.

Two-step argument for identities under ``g`` (:func:`match_gains`). For two forward passes
compared layer by layer, step one proves the argument identity ``N_l'^2 - N_l^2 = 0`` (with the
gains of earlier layers already identified); only then is ``g(N_l')`` replaced by ``g(N_l)``,
and step two proves the output residual with those substitutions. A layer whose argument
identity fails is never substituted, so a false claim cannot be "proven" by the substitution.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from functools import cache

import sympy as sp
from sympy.core.function import AppliedUndef
from sympy.polys.rings import PolyElement, PolyRing, ring

__all__ = [
    "Perceptron",
    "Profile",
    "Trace",
    "cayley",
    "forward",
    "g",
    "householder",
    "is_zero",
    "isotropic",
    "match_gains",
    "matrix",
    "nonzero_number",
    "numeric",
    "radial_length",
    "reduce",
    "skew",
    "sq_norm",
    "stack",
    "tanh_profile",
    "trace_residual",
    "vector",
]

#: The generic radial profile ``g(N) = s(N) / N`` with ``s`` unknown.
g = sp.Function("g")

#: A radial profile: maps the length ``N`` to the scalar gain ``g(N)``.
Profile = Callable[[sp.Expr], sp.Expr]

Residual = sp.Expr | sp.MatrixBase


def tanh_profile(length: sp.Expr) -> sp.Expr:
    """The paper's profile ``g(N) = tanh(N) / N`` ("isotropic tanh")."""
    return sp.tanh(length) / length


def vector(name: str, n: int) -> sp.Matrix:
    """Column vector ``(name0, ..., name{n-1})`` of independent real symbols."""
    return sp.Matrix([sp.Symbol(f"{name}{i}", real=True) for i in range(n)])


def matrix(name: str, rows: int, cols: int) -> sp.Matrix:
    """``rows x cols`` matrix of independent real symbols ``name{i}_{j}``."""
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}{i}_{j}", real=True))


def skew(name: str, n: int) -> sp.Matrix:
    """Generic skew-symmetric ``A = -A^T`` (``n x n``) with ``n(n-1)/2`` free entries."""
    a = sp.zeros(n, n)
    for i in range(n):
        for j in range(i + 1, n):
            t = sp.Symbol(f"{name}{i}_{j}", real=True)
            a[i, j], a[j, i] = t, -t
    return a


@cache
def cayley(n: int, name: str = "t") -> sp.ImmutableMatrix:
    """Generic rotation ``Q = (I - A)^{-1} (I + A)`` for a symbolic skew ``A``.

    ``det(I - A) >= 1`` for real skew ``A``, so ``Q`` is defined for every value of the symbols,
    and every rotation without eigenvalue -1 has this form. Entries are ``P_ij / det(I - A)``
    with ``P = adj(I - A) (I + A)``: polynomials over one shared denominator.
    """
    a = skew(name, n)
    eye = sp.eye(n)
    m = eye - a
    numerators = (m.adjugate() * (eye + a)).applyfunc(sp.expand)
    return sp.ImmutableMatrix(numerators / sp.expand(m.det()))


@cache
def householder(n: int, name: str = "v") -> sp.ImmutableMatrix:
    """Generic reflection ``H = I - 2 v v^T / (v^T v)`` for a symbolic vector ``v != 0``."""
    v = vector(name, n)
    return sp.ImmutableMatrix(sp.eye(n) - 2 * v * v.T / sq_norm(v))


def sq_norm(v: sp.MatrixBase) -> sp.Expr:
    """``|v|^2 = sum_i v_i^2`` (left unexpanded; zero tests expand in a polynomial ring)."""
    return sp.Add(*[e**2 for e in v])


def radial_length(z: sp.MatrixBase, o: sp.Expr) -> sp.Expr:
    """``N(z; o) = sqrt(o + |z|^2)`` (§1, intrinsic length ``o``; ``o = 0`` for none)."""
    return sp.sqrt(o + sq_norm(z))


def isotropic(z: sp.MatrixBase, o: sp.Expr, profile: Profile = g) -> tuple[sp.Matrix, sp.Expr]:
    """Isotropic activation ``f(z) = g(N(z; o)) z``; returns ``(f(z), g(N))``."""
    gain = profile(radial_length(z, o))
    return sp.Matrix(z) * gain, gain


@dataclass(frozen=True)
class Perceptron:
    """Parameters of a generalised isotropic perceptron (§2).

    For every weight layer ``l``: ``weights[l]``, ``biases[l]`` and ``psis[l]`` (``None`` when the
    layer has no psi term); ``lengths[l] = o_l`` for the activation after every weight layer but
    the last (the output map has no activation).
    """

    weights: tuple[sp.MatrixBase, ...]
    biases: tuple[sp.MatrixBase, ...]
    psis: tuple[sp.MatrixBase | None, ...]
    lengths: tuple[sp.Expr, ...]

    def with_layers(self, **changes: dict[int, object]) -> Perceptron:
        """Copy with some layers replaced, e.g. ``net.with_layers(weights={1: w})``."""
        values = {f.name: list(getattr(self, f.name)) for f in fields(self)}
        for name, layer_changes in changes.items():
            for index, value in layer_changes.items():
                values[name][index] = value
        return Perceptron(**{name: tuple(v) for name, v in values.items()})


@dataclass(frozen=True)
class Trace:
    """A forward pass: the output ``z_{L-1}``, and ``N_l^2`` and ``g_l`` for each activation."""

    output: sp.Matrix
    radicands: tuple[sp.Expr, ...]
    gains: tuple[sp.Expr, ...]


def forward(
    x: sp.MatrixBase, net: Perceptron, g_in: sp.Expr | None = None, profile: Profile = g
) -> Trace:
    """Symbolic forward pass of a generalised isotropic perceptron (§2).

    ``g_in`` is the gain of the activation before ``x`` when ``net`` is a slice of a larger
    network (then ``psis[0]`` is used); leave it ``None`` for a whole network.
    """
    depth = len(net.weights)
    a: sp.MatrixBase = x
    gain = g_in
    z = sp.Matrix(x)
    radicands: list[sp.Expr] = []
    gains: list[sp.Expr] = []
    for l in range(depth):
        z = net.weights[l] * a + net.biases[l]
        psi = net.psis[l]
        if psi is not None and gain is not None:
            z = z + psi * gain
        if l < depth - 1:
            o = net.lengths[l]
            radicands.append(o + sq_norm(z))
            a, gain = isotropic(z, o, profile)
            gains.append(gain)
    return Trace(sp.Matrix(z), tuple(radicands), tuple(gains))


def _generators(expr: sp.Expr, found: dict[sp.Expr, None]) -> None:
    """Collect the generators of ``expr`` as a rational function: symbols and opaque atoms."""
    if expr.is_Rational:
        return
    if expr.is_Add or expr.is_Mul:
        for arg in expr.args:
            _generators(arg, found)
    elif expr.is_Pow and expr.exp.is_Integer:
        _generators(expr.base, found)
    else:
        found[expr] = None


class _Fraction:
    """Exact rational function ``num / prod_k den_k^e_k`` over a sparse polynomial ring.

    Denominator factors are kept apart and never multiplied out or cancelled: sums take the
    largest exponent of each factor, so shared denominators (the Cayley ``det(I - A)``) stay
    shared. No gcd is ever computed, which keeps the zero test fast; ``num == 0`` iff zero.
    """

    __slots__ = ("den", "num")

    def __init__(self, num: PolyElement, den: dict[tuple, tuple[PolyElement, int]]) -> None:
        self.num = num
        self.den = den

    def __add__(self, other: _Fraction) -> _Fraction:
        den = dict(self.den)
        for key, (poly, e) in other.den.items():
            if key not in den or den[key][1] < e:
                den[key] = (poly, e)
        num = self._scaled(den) + other._scaled(den)
        return _Fraction(num, den)

    def _scaled(self, den: dict[tuple, tuple[PolyElement, int]]) -> PolyElement:
        num = self.num
        for key, (poly, e) in den.items():
            missing = e - self.den.get(key, (poly, 0))[1]
            if missing:
                num = num * poly**missing
        return num

    def __mul__(self, other: _Fraction) -> _Fraction:
        den = dict(self.den)
        for key, (poly, e) in other.den.items():
            den[key] = (poly, den.get(key, (poly, 0))[1] + e)
        return _Fraction(self.num * other.num, den)

    def __pow__(self, k: int) -> _Fraction:
        if k >= 0:
            return _Fraction(self.num**k, {key: (p, e * k) for key, (p, e) in self.den.items()})
        if not self.num:
            raise ZeroDivisionError("residual divides by an identically zero expression")
        inverse_num = self.num.ring.one
        for poly, e in self.den.values():
            inverse_num = inverse_num * poly**e
        key = tuple(sorted(self.num.items()))
        return _Fraction(inverse_num, {key: (self.num, 1)}) ** (-k)


def _to_fraction(expr: sp.Expr, ring_: PolyRing, atoms: dict[sp.Expr, PolyElement]) -> _Fraction:
    if expr.is_Rational:
        return _Fraction(ring_.ground_new(sp.QQ(expr.p, expr.q)), {})
    if expr.is_Add or expr.is_Mul:
        parts = [_to_fraction(arg, ring_, atoms) for arg in expr.args]
        result = parts[0]
        for part in parts[1:]:
            result = result + part if expr.is_Add else result * part
        return result
    if expr.is_Pow and expr.exp.is_Integer:
        return _to_fraction(expr.base, ring_, atoms) ** int(expr.exp)
    return _Fraction(atoms[expr], {})


def _numerator(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr, bool]:
    """``(numerator, denominator, residual is identically zero)`` of a rational expression."""
    found: dict[sp.Expr, None] = {}
    _generators(expr, found)
    if not found:
        return expr, sp.S.One, expr == 0
    atoms = list(found)
    ring_, *gens = ring([sp.Dummy() for _ in atoms], sp.QQ)
    fraction = _to_fraction(expr, ring_, dict(zip(atoms, gens, strict=True)))
    if not fraction.num:
        return sp.S.Zero, sp.S.One, True
    back = dict(zip(ring_.symbols, atoms, strict=True))
    den = sp.Mul(*[poly.as_expr() ** e for poly, e in fraction.den.values()])
    return fraction.num.as_expr().xreplace(back), den.xreplace(back), False


def reduce(expr: Residual) -> Residual:
    """Exact reduction: ``0`` if the residual is identically zero, else ``numerator/denominator``.

    Works entrywise on matrices. The zero test is exact (see the module docstring).
    """
    if isinstance(expr, sp.MatrixBase):
        return sp.Matrix(expr.shape[0], expr.shape[1], [reduce(e) for e in expr])
    expr = sp.sympify(expr)
    if expr == 0:
        return sp.S.Zero
    num, den, zero = _numerator(expr)
    return sp.S.Zero if zero else num / den


def stack(*parts: Residual) -> sp.Matrix:
    """Stack scalars and matrices into one column of residual entries."""
    entries: list[sp.Expr] = []
    for part in parts:
        if isinstance(part, sp.MatrixBase):
            entries.extend(part)
        else:
            entries.append(sp.sympify(part))
    return sp.Matrix(entries)


def is_zero(residual: Residual, equals_limit: int = 400) -> bool:
    """``True`` iff every entry is identically zero.

    An entry is zero if it is ``0``, if :func:`reduce` proves it zero, or (for entries of at
    most ``equals_limit`` operations) if ``entry.equals(0) is True``; ``None`` counts as not zero.
    """
    entries = list(residual) if isinstance(residual, sp.MatrixBase) else [residual]
    for entry in entries:
        entry = sp.sympify(entry)
        if entry == 0 or reduce(entry) == 0:
            continue
        if sp.count_ops(entry) > equals_limit or entry.equals(0) is not True:
            return False
    return True


def match_gains(before: Trace, after: Trace) -> tuple[sp.Matrix, dict[sp.Expr, sp.Expr]]:
    """Step one of the two-step argument, layer by layer.

    For each activation ``l`` (in order) prove ``N_l'^2 - N_l^2 = 0`` after replacing the gains
    of earlier layers, then record ``g_l' -> g_l``. Stops substituting at the first layer whose
    argument identity fails. Returns the stacked argument residuals and the substitution.
    """
    subs: dict[sp.Expr, sp.Expr] = {}
    residuals: list[sp.Expr] = []
    matching = True
    for r_after, r_before, g_after, g_before in zip(
        after.radicands, before.radicands, after.gains, before.gains, strict=True
    ):
        residual = reduce(r_after.xreplace(subs) - r_before)
        residuals.append(residual)
        matching = matching and residual == 0
        if matching:
            subs[g_after] = g_before
    return sp.Matrix(residuals), subs


def trace_residual(before: Trace, after: Trace) -> sp.Matrix:
    """Two-step residual of ``after.output - before.output``: argument identities, then output."""
    norms, subs = match_gains(before, after)
    return stack(norms, reduce(after.output.xreplace(subs) - before.output))


def numeric(expr: Residual, digits: int = 50) -> Residual:
    """High-precision value of a closed residual (entrywise for matrices)."""
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(lambda e: sp.N(e, digits))
    return sp.N(expr, digits)


def nonzero_number(residual: Residual, floor: float = 1e-6) -> bool:
    """``True`` iff some entry is a closed number with ``|entry| > floor`` (a proof of non-zero).

    Entries are evaluated to 50 significant digits, so the verdict is not a rounding artefact.
    """
    entries: Iterable[sp.Expr] = (
        list(residual) if isinstance(residual, sp.MatrixBase) else [residual]
    )
    for entry in entries:
        entry = sp.sympify(entry)
        if entry.free_symbols or entry.atoms(AppliedUndef):
            continue
        if abs(sp.N(entry, 50)) > floor:
            return True
    return False
