"""The registry of claims and negative controls run by ``python -m proofs``.

A :class:`Claim` pairs an id and a one-line statement with the section of the method note it
backs and a ``check`` that returns the reduced residual: identically zero when a claim holds,
a demonstrably non-zero number when a control fails as it must.

Example::

    >>> from isoproof.proofs.registry import claims
    >>> [c.id for c in claims() if c.kind == "control"][:1]
    ['control.elementwise_tanh']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from . import (
    controls,
    diagonalisation,
    equivariance,
    nested_class,
    neurodegeneration,
    neurogenesis,
    reparameterisation,
    sparsification,
)
from ._symbolic import Residual

__all__ = ["SECTIONS", "Claim", "Kind", "claims", "get"]

Kind = Literal["claim", "control"]

#: Sections of ``docs/method.md`` that the claims back.
SECTIONS: tuple[str, ...] = (
    "§1 isotropic activations",
    "§2 generalised perceptron",
    "§3 diagonalisation",
    "§3 sparsification",
    "§4 neurodegeneration",
    "§5 neurogenesis",
)

S1, S2, S3, S3_SPARSE, S4, S5 = SECTIONS


@dataclass(frozen=True)
class Claim:
    """One checked statement: ``check()`` returns its residual (a SymPy expression or matrix)."""

    id: str
    statement: str
    section: str
    kind: Kind
    check: Callable[[], Residual]


def _claim(id: str, statement: str, section: str, check: Callable[[], Residual]) -> Claim:
    return Claim(id, statement, section, "claim", check)


def _control(id: str, statement: str, section: str, check: Callable[[], Residual]) -> Claim:
    return Claim(id, statement, section, "control", check)


_CLAIMS: tuple[Claim, ...] = (
    _claim(
        "equivariance.rotation",
        "f(Qz) = Q f(z) and Q^T Q = I for Cayley rotations, n = 2..4, intrinsic length o > 0",
        S1,
        equivariance.rotation,
    ),
    _claim(
        "equivariance.rotation_no_length",
        "f(Qz) = Q f(z) for Cayley rotations, n = 2..4, without intrinsic length (o = 0)",
        S1,
        equivariance.rotation_without_length,
    ),
    _claim(
        "equivariance.reflection",
        "f(Hz) = H f(z) and H^T H = I for Householder reflections, n = 2..4, o > 0",
        S1,
        equivariance.reflection,
    ),
    _claim(
        "equivariance.reflection_no_length",
        "f(Hz) = H f(z) for Householder reflections, n = 2..4, o = 0",
        S1,
        equivariance.reflection_without_length,
    ),
    _claim(
        "equivariance.norm",
        "|Qz|^2 + o = |z|^2 + o for Cayley and Householder Q, n = 2..4",
        S1,
        equivariance.norm_invariance,
    ),
    _claim(
        "equivariance.any_n",
        "any n: Q^T Q = I_n gives |Qz|^2 = |z|^2 and f(Qz) = Q f(z) (matrix expressions)",
        S1,
        equivariance.any_size,
    ),
    _claim(
        "reparameterisation.plain",
        "W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1), Cayley and Householder Q, n = 2..4",
        S1,
        reparameterisation.plain,
    ),
    _claim(
        "reparameterisation.rotation",
        "with o and psi: W <- Q^T W, b <- Q^T b, psi <- Q^T psi, V <- V Q keeps the output"
        " (Cayley, n = 2..4)",
        S2,
        reparameterisation.rotation,
    ),
    _claim(
        "reparameterisation.reflection",
        "with o and psi: the same reparameterisation by a Householder reflection, n = 2..4",
        S2,
        reparameterisation.reflection,
    ),
    _claim(
        "diagonalisation.factors",
        "W = R L Q^T gives R^T W = L Q^T and R^T W Q = L (symbolic SVD factors)",
        S3,
        diagonalisation.factor_identity,
    ),
    _claim(
        "diagonalisation.left",
        "left diagonalisation (W <- L Q^T, b, psi <- R^T b, R^T psi, W_next <- W_next R) is exact",
        S3,
        diagonalisation.left,
    ),
    _claim(
        "diagonalisation.full",
        "full diagonalisation (W_l <- L, Q^T into layer l-1, R^T b_l, R^T psi_l, R out) is exact",
        S3,
        diagonalisation.full,
    ),
    _claim(
        "sparsification.count",
        "sum over l of stored entries = floor(K/2) n^2 + ceil(K/2) n for K = 2m, 2m+1",
        S3_SPARSE,
        sparsification.symbolic_count,
    ),
    _claim(
        "sparsification.explicit",
        "alternating full diagonalisation stores floor(K/2) n^2 + ceil(K/2) n entries,"
        " K = 1..6, n = 2..4",
        S3_SPARSE,
        sparsification.explicit,
    ),
    _claim(
        "sparsification.ratio",
        "stored / (K n^2) -> 1/2 as n, K -> oo (both parities of K, both orders)",
        S3_SPARSE,
        sparsification.ratio_limit,
    ),
    _claim(
        "neurodegeneration.exact",
        "removing a neuron with sigma = 0, psi* = 0, o <- o + b*^2, psi <- psi + W* b*"
        " keeps the output (n = 2..4)",
        S4,
        neurodegeneration.exact,
    ),
    _claim(
        "neurodegeneration.several",
        "removing k such neurons at once with o <- o + |b*|^2, psi <- psi + W* b* is exact",
        S4,
        neurodegeneration.exact_several,
    ),
    _claim(
        "neurodegeneration.any_width",
        "block decomposition: the removal is exact for any kept width and symbolic k",
        S4,
        neurodegeneration.any_width,
    ),
    _claim(
        "neurodegeneration.first_order",
        "with sigma > 0 the squared length changes by 2 u b* sigma + O(sigma^2), u = q . a",
        S4,
        neurodegeneration.first_order,
    ),
    _claim(
        "neurogenesis.exact",
        "a neuron with zero row, bias and psi entry and any outgoing column keeps the output"
        " (n = 2..4)",
        S5,
        neurogenesis.exact,
    ),
    _claim(
        "neurogenesis.any_width",
        "block decomposition: adding a zero neuron is exact for any width",
        S5,
        neurogenesis.any_width,
    ),
    _claim(
        "nested_class.growth",
        "a width-n member (o, psi) equals a width-(n+1) member; grow-then-remove is the identity",
        S2,
        nested_class.growth,
    ),
    _claim(
        "nested_class.degeneration",
        "a width-n member with a silent neuron (sigma = 0, psi* = 0) equals a width-(n-1) member",
        S2,
        nested_class.degeneration,
    ),
    _claim(
        "nested_class.plain_member",
        "the plain isotropic MLP is the member with every o = 0 and psi = 0",
        S2,
        nested_class.plain_member,
    ),
    _control(
        "control.elementwise_tanh",
        "elementwise tanh is not rotation-equivariant: tanh.(Qz) != Q tanh.(z)",
        S1,
        controls.elementwise_tanh,
    ),
    _control(
        "control.degeneration_without_o",
        "degeneration without o <- o + b*^2 is not exact",
        S4,
        controls.degeneration_without_length,
    ),
    _control(
        "control.degeneration_without_psi",
        "degeneration without psi <- psi + W* b* is not exact",
        S4,
        controls.degeneration_without_psi,
    ),
    _control(
        "control.degeneration_own_psi",
        "degeneration of a neuron with a non-zero own psi entry is not exact",
        S4,
        controls.degeneration_own_psi,
    ),
    _control(
        "control.degeneration_nonzero_sigma",
        "degeneration of a neuron with sigma > 0 is not exact",
        S4,
        controls.degeneration_nonzero_sigma,
    ),
    _control(
        "control.non_orthogonal_q",
        "a non-orthogonal Q (diag(2, 1), a shear) breaks reparameterisation",
        S1,
        controls.non_orthogonal,
    ),
)


def claims() -> tuple[Claim, ...]:
    """Every registered claim and control, in report order (ids are unique)."""
    return _CLAIMS


def get(claim_id: str) -> Claim:
    """The claim with id ``claim_id``; ``KeyError`` listing the known ids otherwise."""
    for claim in claims():
        if claim.id == claim_id:
            return claim
    known = ", ".join(c.id for c in claims())
    raise KeyError(f"unknown claim id {claim_id!r}; known ids: {known}")
