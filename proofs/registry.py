"""The registry of claims and negative controls run by ``python -m proofs``.

A :class:`Claim` pairs an id and a one-line statement with the section of the method note it
backs and a ``check`` that returns the reduced residual: identically zero when a claim holds,
not proved when a control (the claim's own check with one thing broken, :func:`broken`)
fails as it must. ``generality`` says for which sizes a claim is proven (``any n``: symbolic
sizes; else the concrete sizes) and ``binds`` names the library code it is about.

Adding a family (e.g. ``proofs/collapse.py``): give each check a ``broken: str | None = None``
keyword, register the claim with :func:`_claim` and each control with
``_control(id, statement, section, broken(module.check, "what"))``;
``tests/test_proofs.py`` checks that every control is such a partial of a claim's check.

Example::

    >>> from isoproof.proofs.registry import claims
    >>> [c.id for c in claims() if c.kind == "control"][:1]
    ['control.equivariance.any_n.no_hypothesis']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from . import (
    collapse,
    convolution,
    diagonalisation,
    engine,
    equivariance,
    nested_class,
    neurodegeneration,
    neurogenesis,
    profiles,
    reparameterisation,
    sparsification,
    training,
)
from ._symbolic import Residual

__all__ = ["SECTIONS", "Claim", "Kind", "broken", "claims", "get", "markdown_table"]

Kind = Literal["claim", "control"]

#: Sections of ``docs/method.md`` that the claims back.
SECTIONS: tuple[str, ...] = (
    "§1 isotropic activations",
    "§2 generalised perceptron",
    "§3 diagonalisation",
    "§3 sparsification",
    "§4 neurodegeneration",
    "§5 neurogenesis",
    "optimiser state",
    "prover",
)

S1, S2, S3, S3_SPARSE, S4, S5, OPTIM, PROVER = SECTIONS


@dataclass(frozen=True)
class Claim:
    """One checked statement: ``check()`` returns its residual (a SymPy expression or matrix)."""

    id: str
    statement: str
    section: str
    kind: Kind
    check: Callable[[], Residual]
    #: ``"any n"`` (symbolic sizes) or the concrete sizes checked, e.g. ``"n = 2..4"``.
    generality: str = ""
    #: The library code the claim is about (``module.function``).
    binds: str = ""


def _claim(
    id: str,
    statement: str,
    section: str,
    check: Callable[[], Residual],
    generality: str = "",
    binds: str = "",
) -> Claim:
    return Claim(id, statement, section, "claim", check, generality, binds)


def broken(check: Callable[..., Residual], what: str) -> Callable[[], Residual]:
    """``check(broken=what)``: a claim's own check with one thing broken (a control's check)."""
    return partial(check, broken=what)


def _control(id: str, statement: str, section: str, check: Callable[[], Residual]) -> Claim:
    """A control: ``check`` must be :func:`broken` applied to a registered claim's check."""
    return Claim(id, statement, section, "control", check)


_EQ = "isoproof.activations.IsotropicActivation"
_SURGERY = "isoproof.ops._surgery.Surgery.change_basis"
_PRUNE = "isoproof.ops.neurodegeneration.remove_weakest"
_GROW = "isoproof.ops.neurogenesis.grow"

_CLAIMS: tuple[Claim, ...] = (
    # ------------------------------------------------------------------ §1 equivariance
    _claim(
        "equivariance.any_n",
        "Q^T Q = I gives f(Qz) = g(N(Qz; o)) Qz = Q f(z), any n, o > 0 and o = 0",
        S1,
        equivariance.any_width,
        "any n",
        _EQ,
    ),
    _claim(
        "equivariance.rotation",
        "f(Qz) = Q f(z) and Q^T Q = I for Cayley rotations, intrinsic length o > 0",
        S1,
        equivariance.rotation,
        "n = 2..4",
        _EQ,
    ),
    _claim(
        "equivariance.rotation_no_length",
        "f(Qz) = Q f(z) for Cayley rotations without intrinsic length (o = 0)",
        S1,
        equivariance.rotation_without_length,
        "n = 2..4",
        _EQ,
    ),
    _claim(
        "equivariance.reflection",
        "f(Hz) = H f(z) and H^T H = I for Householder reflections, o > 0",
        S1,
        equivariance.reflection,
        "n = 2..4",
        _EQ,
    ),
    _claim(
        "equivariance.reflection_no_length",
        "f(Hz) = H f(z) for Householder reflections, o = 0",
        S1,
        equivariance.reflection_without_length,
        "n = 2..4",
        _EQ,
    ),
    _claim(
        "equivariance.norm",
        "|Qz|^2 + o = |z|^2 + o for Cayley and Householder Q",
        S1,
        equivariance.norm_invariance,
        "n = 2..4",
        _EQ,
    ),
    _claim(
        "profiles.lipschitz",
        "J = g I + g'/N z z^T has eigenvalues g and (1-t) g + t s' (t in [0, 1]), so"
        " Lip(f) <= max(sup|g|, sup|s'|); the receipt constants of tanh, softsign, log1p,"
        " shifted_relu (tanh's sup|g'|: the bound 2 sqrt(3)/9)",
        S1,
        profiles.constants,
        "n = 3 (J), r > 0",
        "isoproof.radial.Radial",
    ),
    # ------------------------------------------------------------------ reparameterisation
    _claim(
        "reparameterisation.any_n",
        "W <- Q^T W, b <- Q^T b, psi <- Q^T psi, V <- V Q keeps the output, with and without"
        " o / psi, any widths",
        S2,
        reparameterisation.any_width,
        "any n",
        _SURGERY,
    ),
    _claim(
        "reparameterisation.plain",
        "W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1), Cayley and Householder Q",
        S1,
        reparameterisation.plain,
        "n = 2..4",
        _SURGERY,
    ),
    _claim(
        "reparameterisation.rotation",
        "with o and psi: W <- Q^T W, b <- Q^T b, psi <- Q^T psi, V <- V Q keeps the output"
        " (Cayley Q)",
        S2,
        reparameterisation.rotation,
        "n = 2..4",
        _SURGERY,
    ),
    _claim(
        "reparameterisation.reflection",
        "with o and psi: the same for Q = H C (Householder times a cyclic permutation, Q != Q^T)",
        S2,
        reparameterisation.reflection,
        "n = 2..4",
        _SURGERY,
    ),
    # ------------------------------------------------------------------ §3 diagonalisation
    _claim(
        "diagonalisation.left_any",
        "left diagonalisation (W <- L Q^T, b, psi <- R^T b, R^T psi, W_next <- W_next R) is"
        " exact for any m x n weight",
        S3,
        diagonalisation.left_any,
        "any n",
        "isoproof.ops.diagonalisation.left_diagonalise",
    ),
    _claim(
        "diagonalisation.full_any",
        "full diagonalisation (W_l <- L, Q^T into layer l-1, R^T b_l, R^T psi_l, R out) is"
        " exact for any m x n weight",
        S3,
        diagonalisation.full_any,
        "any n",
        "isoproof.ops.diagonalisation.full_diagonalise",
    ),
    _claim(
        "diagonalisation.left",
        "left diagonalisation is exact, Cayley R, Q, every entry symbolic",
        S3,
        diagonalisation.left,
        "2x2 3x2 2x3 3x3 4x2 2x4",
        "isoproof.ops.diagonalisation.left_diagonalise",
    ),
    _claim(
        "diagonalisation.full",
        "full diagonalisation is exact, Cayley R, Q, every entry symbolic",
        S3,
        diagonalisation.full,
        "2x2 3x2 2x3 3x3 4x2",
        "isoproof.ops.diagonalisation.full_diagonalise",
    ),
    _claim(
        "sparsification.count",
        "sum over l of stored entries = floor(K/2) n^2 + ceil(K/2) n for K = 2m, 2m+1",
        S3_SPARSE,
        sparsification.symbolic_count,
        "any n, K",
        "isoproof.ops.diagonalisation.sparsify",
    ),
    _claim(
        "sparsification.ratio",
        "stored / (K n^2) -> 1/2 as n, K -> oo (both parities of K, both orders)",
        S3_SPARSE,
        sparsification.ratio_limit,
        "limit",
        "isoproof.ops.diagonalisation.sparsify",
    ),
    # ------------------------------------------------------------------ §4 neurodegeneration
    _claim(
        "neurodegeneration.any_width",
        "removing k neurons with sigma = 0, psi* = 0 and o <- o + |b*|^2, psi <- psi + W* b*"
        " keeps the output, any kept width m and any k (split derived from block matrices)",
        S4,
        neurodegeneration.any_width,
        "any n",
        _PRUNE,
    ),
    _claim(
        "neurodegeneration.exact",
        "removing one such neuron keeps the output, every entry symbolic",
        S4,
        neurodegeneration.exact,
        "n = 2..4",
        _PRUNE,
    ),
    _claim(
        "neurodegeneration.several",
        "removing k such neurons at once is exact, every entry symbolic",
        S4,
        neurodegeneration.exact_several,
        "n = 3..4, k = 2..n-1",
        _PRUNE,
    ),
    _claim(
        "neurodegeneration.first_order",
        "with sigma > 0 the squared length changes by 2 u b* sigma + sigma^2 u^2, u = q . a",
        S4,
        neurodegeneration.first_order,
        "block scalars; n = 3",
        _PRUNE,
    ),
    _claim(
        "neurodegeneration.output_error",
        "with sigma > 0 the output changes by sigma [g'(N) u b*/N (V z + phi + W* b*)"
        " + g(N) W* u] + O(sigma^2)",
        S4,
        neurodegeneration.output_error,
        "n = 2..3",
        _PRUNE,
    ),
    _claim(
        "neurodegeneration.gather_psi",
        "a Householder reflection of the sigma = 0 block maps their own psi p to -+|p| e_1:"
        " all but one become removable",
        S4,
        training.gather_psi,
        "d = 2..4 silent neurons",
        "isoproof.ops.neurodegeneration.gather_own_psi",
    ),
    # ------------------------------------------------------------------ §5 neurogenesis
    _claim(
        "neurogenesis.any_width",
        "j neurons with zero rows, biases and psi entries and any outgoing columns keep the"
        " output, any width n and any j",
        S5,
        neurogenesis.any_width,
        "any n",
        _GROW,
    ),
    _claim(
        "neurogenesis.exact",
        "one such neuron keeps the output, every entry symbolic",
        S5,
        neurogenesis.exact,
        "n = 2..4",
        _GROW,
    ),
    _claim(
        "neurogenesis.scaffold_gradient",
        "the gradient reaching a new neuron's row, bias and psi entry is g(N) w a^T, g(N) w,"
        " g(N) g_prev w: non-zero iff its outgoing column w is",
        S5,
        training.scaffold_gradient,
        "n = 2..3",
        _GROW,
    ),
    _claim(
        "nested_class.growth",
        "a width-n member (o, psi) equals a width-(n+1) member; grow-then-remove is the identity",
        S2,
        nested_class.growth,
        "n = 2..4",
        _GROW,
    ),
    _claim(
        "nested_class.degeneration",
        "a width-n member with a silent neuron (sigma = 0, psi* = 0) equals a width-(n-1) member",
        S2,
        nested_class.degeneration,
        "n = 2..4",
        _PRUNE,
    ),
    # ------------------------------------------------------------------ optimiser state
    _claim(
        "optimiser.first_moment",
        "if gradients map as G' = A G B^T (premise: the chain rule), m <- beta m + (1 - beta) G"
        " carries m' = A m B^T exactly",
        OPTIM,
        training.first_moment,
        "any n",
        "isoproof.optim.apply_linear",
    ),
    _claim(
        "optimiser.second_moment",
        "(A G)∘(A G) = (A∘A)(G∘G) + 2 sum_{j<k} A_ij A_ik G_j G_k: the squared map is exact"
        " when each row of A has at most one non-zero entry, else off by these cross terms",
        OPTIM,
        training.second_moment,
        "n = 2..3",
        "isoproof.optim.apply_linear",
    ),
    # ------------------------------------------------------------------ §2.1 collapse
    _claim(
        "collapse.exact",
        "the collapsed recursion (one stacked product, norms in a rotated basis) reproduces the"
        " forward, with symbolic W, b, psi, o and any g",
        S2,
        collapse.exact,
        "L = 2, 3 ([2, 3, 2], [2, 3, 3, 2])",
        "isoproof.collapse.collapse",
    ),
    # ------------------------------------------------------------------ the prover itself
    _claim(
        "prover.soundness",
        "the zero test, the reduction and the gain matching refuse fixed false identities",
        PROVER,
        engine.soundness,
        "fixed inputs",
        "proofs._symbolic",
    ),
    # ------------------------------------------------------------------ convolutions
    _claim(
        "convolution.equivariance",
        "channel-wise f(Qz) = Q f(z) and g unchanged at every position; average pooling commutes "
        "with Q",
        S1,
        convolution.pooled_equivariance,
        "3 channels, 2 positions",
        "isoproof.conv.IsotropicConvNet",
    ),
    _claim(
        "convolution.reparameterisation",
        "1-D conv, padding 1: K_t <- Q^T K_t, b <- Q^T b, psi_t <- Q^T psi_t, V_t <- V_t Q keeps "
        "every output position",
        S1,
        convolution.reparameterisation,
        "2 channels, 2 taps, 3 positions",
        _SURGERY,
    ),
    _claim(
        "convolution.removal",
        "removing a channel with zero taps and own psi kernel, o += b*^2, phi_t += V_t[:, c*] b*, "
        "is exact at every position, borders included",
        S4,
        convolution.removal,
        "3 channels, 2 taps, 3 positions",
        _PRUNE,
    ),
    _claim(
        "convolution.growth",
        "a channel with zero taps, bias and psi entries and any outgoing taps is exact",
        S5,
        convolution.growth,
        "2 channels, 2 taps, 3 positions",
        _GROW,
    ),
)

_CONTROLS: tuple[Claim, ...] = (
    _control(
        "control.collapse.exact.psi",
        "the collapsed recursion without the psi term of U is not exact",
        S2,
        broken(collapse.exact, "psi"),
    ),
    _control(
        "control.equivariance.any_n.no_hypothesis",
        "without Q^T Q = I, f(Pz) = P f(z) is not proved",
        S1,
        broken(equivariance.any_width, "no_hypothesis"),
    ),
    _control(
        "control.equivariance.elementwise_tanh",
        "elementwise tanh is not rotation-equivariant: tanh.(Qz) != Q tanh.(z)",
        S1,
        broken(equivariance.rotation, "elementwise"),
    ),
    _control(
        "control.reparameterisation.any_n.no_hypothesis",
        "a Q without Q^T Q = I does not reparameterise",
        S2,
        broken(reparameterisation.any_width, "no_hypothesis"),
    ),
    _control(
        "control.reparameterisation.any_n.psi_not_rotated",
        "keeping psi (not Q^T psi) breaks the reparameterisation",
        S2,
        broken(reparameterisation.any_width, "psi_not_rotated"),
    ),
    _control(
        "control.reparameterisation.rotation.v_not_rotated",
        "keeping V (not V Q) breaks the reparameterisation",
        S2,
        broken(reparameterisation.rotation, "v_not_rotated"),
    ),
    _control(
        "control.diagonalisation.left_any.bias_not_rotated",
        "left diagonalisation without b <- R^T b is not exact",
        S3,
        broken(diagonalisation.left_any, "bias_not_rotated"),
    ),
    _control(
        "control.diagonalisation.left_any.next_not_rotated",
        "left diagonalisation without W_next <- W_next R is not exact",
        S3,
        broken(diagonalisation.left_any, "next_not_rotated"),
    ),
    _control(
        "control.diagonalisation.full_any.previous_not_rotated",
        "full diagonalisation without Q^T into layer l-1 is not exact",
        S3,
        broken(diagonalisation.full_any, "previous_not_rotated"),
    ),
    _control(
        "control.sparsification.count.every_layer",
        "counting every map as diagonal does not give the formula",
        S3_SPARSE,
        broken(sparsification.symbolic_count, "every_layer"),
    ),
    _control(
        "control.neurodegeneration.any_width.without_o",
        "degeneration without o <- o + |b*|^2 is not exact",
        S4,
        broken(neurodegeneration.any_width, "without_o"),
    ),
    _control(
        "control.neurodegeneration.any_width.without_psi",
        "degeneration without psi <- psi + W* b* is not exact",
        S4,
        broken(neurodegeneration.any_width, "without_psi"),
    ),
    _control(
        "control.neurodegeneration.any_width.psi_sign",
        "degeneration with psi <- psi - W* b* is not exact",
        S4,
        broken(neurodegeneration.any_width, "psi_sign"),
    ),
    _control(
        "control.neurodegeneration.any_width.own_psi",
        "degeneration of neurons with non-zero own psi entries is not exact",
        S4,
        broken(neurodegeneration.any_width, "own_psi"),
    ),
    _control(
        "control.neurodegeneration.any_width.sigma",
        "degeneration of neurons with sigma > 0 is not exact",
        S4,
        broken(neurodegeneration.any_width, "sigma"),
    ),
    _control(
        "control.neurodegeneration.exact.o_not_squared",
        "degeneration with o <- o + b* (not b*^2) is not exact",
        S4,
        broken(neurodegeneration.exact, "o_not_squared"),
    ),
    _control(
        "control.neurodegeneration.output_error.without_gain_term",
        "the first-order output error without its g'(N) term is wrong",
        S4,
        broken(neurodegeneration.output_error, "without_gain_term"),
    ),
    _control(
        "control.neurodegeneration.gather_psi.no_shift",
        "the reflection with v = p (no |p| e_1 shift) does not gather psi",
        S4,
        broken(training.gather_psi, "no_shift"),
    ),
    _control(
        "control.neurogenesis.any_width.bias",
        "a new neuron with a non-zero bias is not exact",
        S5,
        broken(neurogenesis.any_width, "bias"),
    ),
    _control(
        "control.neurogenesis.any_width.row",
        "a new neuron with a non-zero incoming row is not exact",
        S5,
        broken(neurogenesis.any_width, "row"),
    ),
    _control(
        "control.neurogenesis.scaffold_gradient.without_column",
        "the scaffold gradient does not vanish for a non-zero column",
        S5,
        broken(training.scaffold_gradient, "without_column"),
    ),
    _control(
        "control.nested_class.growth.bias",
        "growth with a non-zero bias leaves the class member's function",
        S2,
        broken(nested_class.growth, "bias"),
    ),
    _control(
        "control.optimiser.second_moment.rotation_exact",
        "the squared map is not exact for a rotation (cross terms dropped)",
        OPTIM,
        broken(training.second_moment, "rotation_exact"),
    ),
    _control(
        "control.optimiser.first_moment.transposed",
        "transporting m by A^T instead of A is not exact",
        OPTIM,
        broken(training.first_moment, "transposed"),
    ),
    _control(
        "control.profiles.lipschitz.too_small",
        "a Lipschitz constant of 1/2 for tanh is not proved",
        S1,
        broken(profiles.constants, "too_small"),
    ),
    _control(
        "control.equivariance.rotation_no_length.scaled",
        "2 Q (not orthogonal) is not an equivariance of f",
        S1,
        broken(equivariance.rotation_without_length, "scaled"),
    ),
    _control(
        "control.equivariance.reflection.scaled",
        "2 H (not orthogonal) is not an equivariance of f",
        S1,
        broken(equivariance.reflection, "scaled"),
    ),
    _control(
        "control.equivariance.reflection_no_length.scaled",
        "2 H (not orthogonal) is not an equivariance of f, o = 0",
        S1,
        broken(equivariance.reflection_without_length, "scaled"),
    ),
    _control(
        "control.equivariance.norm.scaled",
        "2 Q does not keep |z|^2",
        S1,
        broken(equivariance.norm_invariance, "scaled"),
    ),
    _control(
        "control.reparameterisation.plain.v_not_rotated",
        "keeping W2 (not W2 Q) breaks the plain reparameterisation",
        S1,
        broken(reparameterisation.plain, "v_not_rotated"),
    ),
    _control(
        "control.reparameterisation.reflection.transposed",
        "rotating out by Q^T instead of Q is not exact for Q = H C",
        S2,
        broken(reparameterisation.reflection, "transposed"),
    ),
    _control(
        "control.diagonalisation.left.next_not_rotated",
        "concrete left diagonalisation without W_next <- W_next R is not exact",
        S3,
        broken(diagonalisation.left, "next_not_rotated"),
    ),
    _control(
        "control.diagonalisation.full.previous_not_rotated",
        "concrete full diagonalisation without Q^T into layer l-1 is not exact",
        S3,
        broken(diagonalisation.full, "previous_not_rotated"),
    ),
    _control(
        "control.sparsification.ratio.every_layer",
        "stored = K n (every map diagonal) does not give the ratio 1/2",
        S3_SPARSE,
        broken(sparsification.ratio_limit, "every_layer"),
    ),
    _control(
        "control.neurodegeneration.several.without_o",
        "removing k neurons without the o update is not exact",
        S4,
        broken(neurodegeneration.exact_several, "without_o"),
    ),
    _control(
        "control.neurodegeneration.first_order.half_slope",
        "the squared length's slope is not u b*",
        S4,
        broken(neurodegeneration.first_order, "half_slope"),
    ),
    _control(
        "control.neurogenesis.exact.bias",
        "a concrete new neuron with a non-zero bias is not exact",
        S5,
        broken(neurogenesis.exact, "bias"),
    ),
    _control(
        "control.nested_class.degeneration.without_psi",
        "P(n) -> P(n - 1) without the psi update leaves the function",
        S2,
        broken(nested_class.degeneration, "without_psi"),
    ),
    _control(
        "control.prover.soundness.zero_test",
        "a zero test that always answers zero fails the prover's own checks",
        PROVER,
        broken(engine.soundness, "zero_test"),
    ),
    _control(
        "control.convolution.max_pooling",
        "max pooling per channel does not commute with channel rotations",
        S1,
        broken(convolution.pooled_equivariance, "max_pool"),
    ),
    _control(
        "control.convolution.reparameterisation.psi_not_rotated",
        "a channel rotation that leaves the psi kernel unrotated is not exact",
        S1,
        broken(convolution.reparameterisation, "psi_not_rotated"),
    ),
    _control(
        "control.convolution.removal.no_psi_kernel",
        "channel removal without the psi-kernel update phi_t += V_t[:, c*] b* is not exact",
        S4,
        broken(convolution.removal, "psi"),
    ),
    _control(
        "control.convolution.removal.no_o",
        "channel removal without o <- o + b*^2 is not exact",
        S4,
        broken(convolution.removal, "o"),
    ),
    _control(
        "control.convolution.growth.bias",
        "a grown channel with a non-zero bias is not exact",
        S5,
        broken(convolution.growth, "bias"),
    ),
)


def claims() -> tuple[Claim, ...]:
    """Every registered claim and control, in report order (ids are unique)."""
    return _CLAIMS + _CONTROLS


def get(claim_id: str) -> Claim:
    """The claim with id ``claim_id``; ``KeyError`` listing the known ids otherwise."""
    for claim in claims():
        if claim.id == claim_id:
            return claim
    known = ", ".join(c.id for c in claims())
    raise KeyError(f"unknown claim id {claim_id!r}; known ids: {known}")


def markdown_table() -> str:
    """The claim table of ``proofs/README.md``: id, generality, controls, code bound to.

    ``tests/test_proofs.py`` checks that the README holds exactly this table.
    """
    rows = [
        "| claim | statement | generality | controls (must not be proved) | bound to |",
        "|---|---|---|---|---|",
    ]
    checks = {c.check: c.id for c in _CLAIMS}
    controls: dict[str, list[str]] = {c.id: [] for c in _CLAIMS}
    for control in _CONTROLS:
        func = getattr(control.check, "func", None)
        if func in checks:
            controls[checks[func]].append(f"`{control.check.keywords['broken']}`")
    for c in _CLAIMS:
        statement = c.statement.replace("|", "\\|")
        rows.append(
            f"| `{c.id}` | {statement} | {c.generality} | {', '.join(controls[c.id])} "
            f"| `{c.binds}` |"
        )
    return "\n".join(rows) + "\n"
