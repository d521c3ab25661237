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

Any width: :func:`vector`, :func:`matrix` and :func:`layer_slice` with a symbolic size give
:class:`sympy.MatrixSymbol` objects, and :func:`forward` then runs on matrix expressions (block
matrices are collapsed blockwise); :func:`sq_norm` and the output are scalarised by
:func:`proofs._matrices.scalarise`, where orthogonality is the only hypothesis (a rewrite).

Zero tests (:func:`reduce`, :func:`is_zero`). A residual is evaluated bottom-up as an exact
rational function over a sparse polynomial ring over ZZ whose generators are the symbols and the
opaque atoms (``g(...)``, square roots, ``Sum``): numerators are expanded in the ring, and
denominator factors are kept apart and shared, never cancelled (no gcd is computed). The residual
is identically zero iff its numerator is the zero polynomial. Treating atoms as independent
generators can only miss a zero (it never invents one), so a claim can fail to be proven but
cannot be proven falsely. There is no heuristic or numerical fallback. This replaces
``cancel``/``expand`` on Expr trees, which take
minutes on the ``n = 4`` Cayley expressions; the ring takes well under a second.

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
from typing import cast, overload

import sympy as sp
from sympy.polys.rings import PolyElement, PolyRing, ring

from ._matrices import is_matrix_expression, scalarise

__all__ = [
    "Perceptron",
    "Profile",
    "Residual",
    "Trace",
    "activation_trace",
    "cayley",
    "entries",
    "forward",
    "g",
    "householder",
    "is_zero",
    "isotropic",
    "layer_slice",
    "match_gains",
    "matrix",
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

#: What a check returns: an expression or a matrix of them, identically zero iff it holds.
Residual = sp.Expr | sp.MatrixBase


def tanh_profile(length: sp.Expr) -> sp.Expr:
    """The paper's profile ``g(N) = tanh(N) / N`` ("isotropic tanh")."""
    return sp.tanh(length) / length


Size = int | sp.Expr


def _symbolic_size(*sizes: Size) -> bool:
    return any(not isinstance(s, int) and not sp.sympify(s).is_Integer for s in sizes)


def vector(name: str, n: Size) -> sp.Matrix:
    """Column vector ``(name0, ..., name{n-1})`` of independent real symbols.

    For a symbolic size ``n`` (any width), the ``n x 1`` :class:`sympy.MatrixSymbol` ``name``.
    """
    if _symbolic_size(n):
        return cast(sp.Matrix, sp.MatrixSymbol(name, n, 1))
    return sp.Matrix([sp.Symbol(f"{name}{i}", real=True) for i in range(int(n))])


def matrix(name: str, rows: Size, cols: Size) -> sp.Matrix:
    """``rows x cols`` matrix of independent real symbols ``name{i}_{j}``.

    For a symbolic size, the ``rows x cols`` :class:`sympy.MatrixSymbol` ``name``.
    """
    if _symbolic_size(rows, cols):
        return cast(sp.Matrix, sp.MatrixSymbol(name, rows, cols))
    return sp.Matrix(int(rows), int(cols), lambda i, j: sp.Symbol(f"{name}{i}_{j}", real=True))


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


def sq_norm(v: sp.MatrixBase | sp.MatrixExpr) -> sp.Expr:
    """``|v|^2 = sum_i v_i^2`` (left unexpanded; zero tests expand in a polynomial ring).

    For a matrix expression of symbolic size, ``v^T v`` as a scalarised word sum
    (:func:`proofs._matrices.scalarise`).
    """
    if is_matrix_expression(v):
        return scalarise(cast(sp.MatrixExpr, v).T * v)
    return sp.Add(*[e**2 for e in v])


def radial_length(z: sp.MatrixBase, o: sp.Expr) -> sp.Expr:
    """``N(z; o) = sqrt(o + |z|^2)`` (§1, intrinsic length ``o``; ``o = 0`` for none)."""
    return sp.sqrt(o + sq_norm(z))


def isotropic(z: sp.MatrixBase, o: sp.Expr, profile: Profile = g) -> tuple[sp.Matrix, sp.Expr]:
    """Isotropic activation ``f(z) = g(N(z; o)) z``; returns ``(f(z), g(N))``.

    The gain is built from :func:`radial_length` (the one definition of ``N``); a matrix
    expression ``z`` of symbolic size gives the matrix expression ``g(N) z``.
    """
    gain = profile(radial_length(z, o))
    return _scale(z, gain), gain


def _scale(z: sp.MatrixBase | sp.MatrixExpr, gain: sp.Expr) -> sp.Matrix:
    if is_matrix_expression(z):
        return cast(sp.Matrix, sp.block_collapse(gain * z))
    return sp.Matrix(z) * gain


def _affine(
    w: sp.MatrixBase, a: sp.MatrixBase, b: sp.MatrixBase, psi: sp.MatrixBase | None, gain
) -> sp.Matrix:
    """``W a + b (+ psi g)``; with block matrices of symbolic sizes, collapsed blockwise."""
    if not is_matrix_expression(w):
        z = w * a + b
        return z + psi * gain if psi is not None and gain is not None else z
    if isinstance(w, sp.BlockMatrix) and not isinstance(a, sp.BlockMatrix):
        a = sp.BlockMatrix([[a]])
    z = w * a + b
    if psi is not None and gain is not None:
        z = z + gain * psi
    return cast(sp.Matrix, sp.block_collapse(z))


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


def activation_trace(
    z: sp.MatrixBase, o: sp.Expr, left: sp.MatrixBase | None = None, profile: Profile = g
) -> Trace:
    """``left f(z)`` (``f(z)`` without ``left``) as a one-activation :class:`Trace`.

    ``N^2`` is the square of the very length that builds the gain, as in :func:`forward`.
    """
    length = radial_length(z, o)
    gain = profile(length)
    out = _scale(z, gain)
    if left is not None:
        out = (
            cast(sp.Matrix, sp.block_collapse(left * out))
            if is_matrix_expression(z)
            else left * out
        )
    output = sp.Matrix([scalarise(out)]) if is_matrix_expression(out) else sp.Matrix(out)
    return Trace(output, (length**2,), (gain,))


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
    z = x
    radicands: list[sp.Expr] = []
    gains: list[sp.Expr] = []
    for l in range(depth):
        z = _affine(net.weights[l], a, net.biases[l], net.psis[l], gain)
        if l < depth - 1:
            # N^2 is read off the very length that builds the gain (never rebuilt separately),
            # so an argument identity proven on it is an identity of the gain's argument.
            length = radial_length(z, net.lengths[l])
            radicands.append(length**2)
            gain = profile(length)
            a = _scale(z, gain)
            gains.append(gain)
    output = sp.Matrix([scalarise(z)]) if is_matrix_expression(z) else sp.Matrix(z)
    return Trace(output, tuple(radicands), tuple(gains))


def layer_slice(
    width: Size, in_width: Size = 2, out_width: Size = 2, generalised: bool = True
) -> tuple[sp.Matrix, sp.Expr | None, Perceptron]:
    """``(a, g_prev, net)``: the slice ``a -> z -> g(N(z; o)) z -> y`` around a hidden layer.

    ``z = W a + b + psi g_prev`` (``W``: ``width x in_width``), ``y = V a' + c + phi g`` with
    every entry an independent symbol and ``o > 0``. With ``generalised=False`` the slice is
    the plain isotropic layer: ``o = 0``, no psi terms, ``g_prev = None``. A symbolic ``width``
    (any width) makes every weight and vector a :class:`sympy.MatrixSymbol` of symbolic size.
    """
    if _symbolic_size(width) and not _symbolic_size(in_width, out_width):
        in_width, out_width = (
            sp.Symbol("p", integer=True, positive=True),
            sp.Symbol("r", integer=True, positive=True),
        )
    a = vector("a", in_width)
    o = sp.Symbol("o", positive=True) if generalised else sp.S.Zero
    net = Perceptron(
        weights=(matrix("W", width, in_width), matrix("V", out_width, width)),
        biases=(vector("b", width), vector("c", out_width)),
        psis=(vector("psi", width), vector("phi", out_width)) if generalised else (None, None),
        lengths=(o,),
    )
    return a, sp.Symbol("g_prev", real=True) if generalised else None, net


#: Non-zero numerators with more terms than this are abbreviated in residuals.
_SHOWN_TERMS = 32


def _generators(expr: sp.Basic, found: dict[sp.Basic, None]) -> None:
    """Collect the generators of ``expr`` as a rational function: symbols and opaque atoms."""
    if isinstance(expr, sp.Rational):
        return
    if isinstance(expr, sp.Add | sp.Mul):
        for arg in expr.args:
            _generators(arg, found)
    elif isinstance(expr, sp.Pow) and isinstance(expr.exp, sp.Integer):
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


def _to_fraction(expr: sp.Basic, ring_: PolyRing, atoms: dict[sp.Basic, PolyElement]) -> _Fraction:
    """Evaluate ``expr`` bottom-up as a :class:`_Fraction`; opaque atoms map to generators."""
    if isinstance(expr, sp.Rational):
        num = _Fraction(ring_.ground_new(expr.p), {})
        return num if expr.q == 1 else num * _Fraction(ring_.ground_new(expr.q), {}) ** -1
    if isinstance(expr, sp.Add | sp.Mul):
        parts = [_to_fraction(arg, ring_, atoms) for arg in expr.args]
        result = parts[0]
        for part in parts[1:]:
            result = result + part if isinstance(expr, sp.Add) else result * part
        return result
    if isinstance(expr, sp.Pow) and isinstance(expr.exp, sp.Integer):
        return _to_fraction(expr.base, ring_, atoms) ** int(expr.exp)
    return _Fraction(atoms[expr], {})


def _numerator(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr, bool]:
    """``(numerator, denominator, residual is identically zero)`` of a rational expression."""
    found: dict[sp.Basic, None] = {}
    _generators(expr, found)
    if not found:
        return expr, sp.S.One, expr == 0
    atoms = list(found)
    ring_, *gens = ring([sp.Dummy() for _ in atoms], sp.ZZ)
    fraction = _to_fraction(expr, ring_, dict(zip(atoms, gens, strict=True)))
    if not fraction.num:
        return sp.S.Zero, sp.S.One, True
    back = dict(zip(ring_.symbols, atoms, strict=True))
    num = fraction.num
    if len(num) > _SHOWN_TERMS:
        # A large non-zero numerator is abbreviated: converting it back to an expression is
        # slow, and a residual that is not zero only needs to show that it is not.
        leading = ring_.from_terms(num.terms()[:3])
        rest = sp.Symbol(f"_plus_{len(num) - 3}_more_terms")
        return cast(sp.Expr, leading.as_expr().xreplace(back)) + rest, sp.S.One, False
    den = sp.Mul(*[poly.as_expr() ** e for poly, e in fraction.den.values()])
    return cast(sp.Expr, num.as_expr().xreplace(back)), cast(sp.Expr, den.xreplace(back)), False


def entries(residual: Residual) -> list[sp.Expr]:
    """The entries of a residual: a matrix's entries in row-major order, or ``[expr]``."""
    if isinstance(residual, sp.MatrixBase):
        return [sp.sympify(e) for e in cast(Iterable[sp.Expr], residual)]
    return [sp.sympify(residual)]


@overload
def reduce(expr: sp.MatrixBase) -> sp.Matrix: ...
@overload
def reduce(expr: sp.Expr) -> sp.Expr: ...
def reduce(expr: Residual) -> Residual:
    """Exact reduction: ``0`` if the residual is identically zero, else ``numerator/denominator``.

    Works entrywise on matrices. The zero test is exact (see the module docstring).
    """
    if isinstance(expr, sp.MatrixBase):
        return sp.Matrix(expr.shape[0], expr.shape[1], [reduce(e) for e in entries(expr)])
    expr = sp.sympify(expr)
    if expr == 0:
        return sp.S.Zero
    num, den, zero = _numerator(expr)
    return sp.S.Zero if zero else num / den


def stack(*parts: Residual) -> sp.Matrix:
    """Stack scalars and matrices into one column of residual entries."""
    return sp.Matrix([e for part in parts for e in entries(part)])


def is_zero(residual: Residual) -> bool:
    """``True`` iff every entry is identically zero: ``0``, or :func:`reduce` proves it zero.

    No numerical or heuristic fallback (``Expr.equals`` may decide by evaluation): an entry
    that :func:`reduce` cannot bring to 0 counts as not zero.
    """
    return all(entry == 0 or reduce(entry) == 0 for entry in entries(residual))


def match_gains(before: Trace, after: Trace) -> tuple[sp.Matrix, dict[sp.Expr, sp.Expr]]:
    """Step one of the two-step argument, layer by layer.

    For each activation ``l`` (in order) prove ``N_l'^2 - N_l^2 = 0`` after replacing the gains
    of earlier layers, then record ``g_l' -> g_l``. Stops substituting at the first layer whose
    argument identity fails. Returns the stacked argument residuals and the substitution. Meant
    for the generic profile :data:`g`, whose gains are single atoms ``g(sqrt(N^2))``.
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
