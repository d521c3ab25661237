"""Matrix expressions of symbolic size: the engine of the any-width proofs.

A network whose widths are symbols ``n, m, k, ...`` is built from SymPy :class:`MatrixSymbol`
objects (and :class:`BlockMatrix` objects with symbolic block sizes, collapsed by
:func:`sympy.block_collapse`). :func:`scalarise` turns such an expression into an ordinary
commutative SymPy expression on which :func:`proofs._symbolic.reduce` decides zero:

1. expand into a sum of *words* (products of matrix symbols and their transposes) with
   commutative scalar coefficients (which may contain gains ``g(...)``);
2. apply the one hypothesis allowed, orthogonality: for an :class:`Orthogonal` symbol ``Q``
   (and only for one), adjacent ``Q^T Q`` and ``Q Q^T`` cancel to the identity;
3. replace every word by a symbol ``[word]``; a ``1 x 1`` word equals its transpose, so the
   lexicographically smaller of the two spellings names it.

Every step is an identity of matrix algebra (distributivity, ``(AB)^T = B^T A^T``, the stated
hypothesis, ``s^T = s`` for scalars), so an expression that scalarises to zero *is* the zero
matrix for every size and every value: a claim can fail to be proven, never be proven falsely.
Distinct words are not assumed independent for a *refutation*: a control only needs the
claim's own proof to fail.

Example::

    >>> import sympy as sp
    >>> n = sp.Symbol("n", integer=True, positive=True)
    >>> q, z = orthogonal("Q", n), sp.MatrixSymbol("z", n, 1)
    >>> scalarise((q * z).T * (q * z)) == scalarise(z.T * z)
    True
    >>> p = sp.MatrixSymbol("P", n, n)  # no hypothesis: nothing cancels
    >>> scalarise((p * z).T * (p * z)) == scalarise(z.T * z)
    False
"""

from __future__ import annotations

from collections import defaultdict

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

__all__ = ["Orthogonal", "is_matrix_expression", "orthogonal", "scalarise"]

#: One letter of a word: the matrix symbol and whether it is transposed.
Letter = tuple[sp.MatrixSymbol, bool]
Word = tuple[Letter, ...]
Poly = dict[Word, sp.Expr]


class Orthogonal(sp.MatrixSymbol):
    """A square matrix symbol with the explicit hypothesis ``Q^T Q = Q Q^T = I``."""


def orthogonal(name: str, n: sp.Expr) -> Orthogonal:
    """An ``n x n`` :class:`Orthogonal` symbol (the hypothesis of the claims that use it)."""
    return Orthogonal(name, n, n)


def is_matrix_expression(value: object) -> bool:
    """``True`` for a SymPy matrix *expression* (symbolic size), not an explicit matrix."""
    return isinstance(value, MatrixExpr) and not isinstance(value, sp.MatrixBase)


def _cancel(word: Word) -> Word:
    """Cancel adjacent ``Q^T Q`` / ``Q Q^T`` of :class:`Orthogonal` symbols (a stack pass)."""
    out: list[Letter] = []
    for letter in word:
        if out and isinstance(letter[0], Orthogonal):
            top = out[-1]
            if top[0] == letter[0] and top[1] != letter[1]:
                out.pop()
                continue
        out.append(letter)
    return tuple(out)


def _add(into: Poly, word: Word, coeff: sp.Expr) -> None:
    into[word] = into.get(word, sp.S.Zero) + coeff


def _words(expr: sp.Basic) -> Poly:
    """Expand a matrix expression into ``{word: scalar coefficient}``."""
    if isinstance(expr, sp.MatrixSymbol):
        return {((expr, False),): sp.S.One}
    if isinstance(expr, sp.ZeroMatrix):
        return {}
    if isinstance(expr, sp.Identity):
        return {(): sp.S.One}
    if isinstance(expr, sp.BlockMatrix):
        if expr.blockshape != (1, 1):
            raise TypeError(f"expected a collapsed 1 x 1 block matrix, got {expr.blockshape}")
        return _words(expr.blocks[0, 0])
    if isinstance(expr, sp.Transpose):
        return {
            tuple((s, not t) for s, t in reversed(word)): c for word, c in _words(expr.arg).items()
        }
    if isinstance(expr, sp.MatAdd):
        total: Poly = {}
        for arg in expr.args:
            for word, c in _words(arg).items():
                _add(total, word, c)
        return total
    if isinstance(expr, sp.MatMul):
        result: Poly = {(): sp.S.One}
        for arg in expr.args:
            if not isinstance(arg, MatrixExpr):
                result = {w: c * arg for w, c in result.items()}
                continue
            factor = _words(arg)
            product: Poly = defaultdict(lambda: sp.S.Zero)
            for w1, c1 in result.items():
                for w2, c2 in factor.items():
                    product[_cancel(w1 + w2)] += c1 * c2
            result = dict(product)
        return result
    raise TypeError(f"unsupported matrix expression {type(expr).__name__}: {expr}")


def _spelling(word: Word) -> str:
    return "*".join(s.name + ("'" if t else "") for s, t in word)


def _is_scalar(word: Word) -> bool:
    first, last = word[0], word[-1]
    rows = first[0].cols if first[1] else first[0].rows
    cols = last[0].rows if last[1] else last[0].cols
    return rows == 1 and cols == 1


def _word_symbol(word: Word) -> sp.Expr:
    if not word:
        return sp.S.One
    name = _spelling(word)
    if _is_scalar(word):  # s = s^T for a 1 x 1 word: one name for both spellings
        name = min(name, _spelling(tuple((s, not t) for s, t in reversed(word))))
    return sp.Symbol(f"[{name}]", real=True)


def scalarise(expr: sp.Basic) -> sp.Expr:
    """``sum_w c_w [w]``: the expression as a commutative SymPy expression (see module doc).

    Raises:
        ValueError: two different matrix symbols share a name (their words would be confused).
    """
    if isinstance(expr, sp.BlockMatrix | MatrixExpr):
        expr = sp.block_collapse(expr)
    words = _words(expr)
    by_name: dict[str, sp.MatrixSymbol] = {}
    for word in words:
        for symbol, _ in word:
            if by_name.setdefault(symbol.name, symbol) != symbol:
                raise ValueError(f"expected one matrix symbol per name, got two {symbol.name}")
    return sp.Add(*[c * _word_symbol(w) for w, c in words.items()])
