"""Error bounds carried by the receipts of inexact operations.

A perturbation ``delta`` of hidden layer ``h``'s pre-activation ``z_h`` changes the output by at
most ``C_h |delta|``, with the downstream Lipschitz constant::

    C_h = prod_{j=h}^{L-2} P_j ( ||W_{j+1}||_op * Lip(f) + ||psi_j||_op * Lip(g) )    (C_{L-1} = 1)

because ``z_{j+1} = W_{j+1} pool(f(z_j)) + b_{j+1} + psi_j pool(g(z_j))``,
``|f(z) - f(z')| <= Lip(f) |z - z'|`` and ``|g(z) - g(z')| <= Lip(g) |z - z'|`` (constants from
:class:`~isoproof.radial.Radial`; on a conv layer this holds at every position, hence for the
whole field in the Frobenius norm), and ``P_j`` is the operator norm of the spatial map between
(``model.pool_norm``: ``p^(-d/2)`` for a ``p``-wide average pooling, 1 for an MLP).

Operator norms (:func:`operator_norm`): a dense map's spectral norm, bounded from above by
:func:`spectral_bound` (``min(||W||_F, sqrt(||W||_1 ||W||_inf))``, O(size); the exact norm inside
:func:`exact_bounds`). For a convolution
``y = sum_t S_t K_t x`` (``K_t = K[:, :, t]`` the channel matrix of tap ``t``, ``S_t`` the
shift-and-subsample of that tap, which reads each input position at most once, so
``||S_t|| <= 1`` whatever the stride, padding or dilation), two guaranteed bounds hold and the
smaller is used::

    ||conv|| <= sum_t ||K_t||_2          (triangle inequality)
    ||conv|| <= sqrt(T) ||K_mat||_2      (each output position reads a patch through
                                          K_mat = [C_out, C_in * T]; every input entry lies in
                                          at most T patches)

The bound is global (valid for every input with the stated input norm), not a local estimate;
``tests/test_conv.py`` checks it against a brute-force worst case (power iteration on the
convolution's adjoint).

What the bound assumes: the input ``x`` has ``|x| <= A_0`` (a field's Frobenius norm per sample),
where ``A_0`` is ``input_norm`` if given, else the largest sample norm of ``probe``, else 1 (the
bound is then per unit input norm). Within that ball it holds for every input (it is not an
estimate on the probe): the input of a deeper layer is bounded by ``sup |s|`` per position for
bounded profiles and, for unbounded ones in an MLP, by propagating ``A_0`` forward
(:func:`hidden_input_bound`; a convolutional net with an unbounded profile gets ``inf``).
``tests/test_bounds.py`` checks it against a brute-force worst case on small nets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from .._validate import check_float
from ..exceptions import IsoproofError
from ..network import IsotropicNet
from ._surgery import Surgery, check_probe

__all__ = [
    "downstream_lipschitz",
    "exact_bounds",
    "hidden_input_bound",
    "input_norm_bound",
    "operator_norm",
    "spectral_bound",
]


_EXACT: ContextVar[bool] = ContextVar("isoproof_exact_bounds", default=False)


@contextmanager
def exact_bounds() -> Iterator[None]:
    """Within the block, receipts' bounds use exact spectral norms (one ``svdvals`` per
    downstream map) instead of the cheap guaranteed upper bounds of :func:`spectral_bound`.

    Example::

        >>> m = torch.randn(50, 40, dtype=torch.float64)
        >>> with exact_bounds():
        ...     exact = spectral_bound(m)
        >>> exact <= spectral_bound(m)
        True
    """
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


def spectral_bound(m: torch.Tensor) -> float:
    """A guaranteed upper bound on ``||m||_2`` of a matrix: by default
    ``min(||m||_F, sqrt(||m||_1 ||m||_inf))`` (both always >= the spectral norm, O(size) to
    compute), the exact spectral norm inside :func:`exact_bounds`. Never below the truth: a
    float32 ``m`` (a map the operation does not otherwise touch, read without a float64 copy)
    is reduced in float32 and each sum enlarged by its worst-case rounding error
    (:func:`_float32_bound`)."""
    if _EXACT.get():
        return float(torch.linalg.matrix_norm(m.to(torch.float64), ord=2))
    if m.numel() == 0:
        return 0.0
    if m.dtype == torch.float32:
        bound = _float32_bound(m)
        if bound is not None:
            return bound
    m = m.to(torch.float64)
    a = m.abs()
    frobenius = float(torch.linalg.matrix_norm(m))
    holder = math.sqrt(float(a.sum(dim=0).max()) * float(a.sum(dim=1).max()))
    # the float64 sums round too: enlarged by their worst case, so never below the true norm
    return min(frobenius, holder) * (1 + 4 * (max(m.shape) + 2) * 2.0**-53)


def _float32_bound(m: torch.Tensor) -> float | None:
    """:func:`spectral_bound` of a float32 matrix from float32 sums (5x cheaper than a float64
    copy), or ``None`` (a sum or a square overflowed, or the sums are too long for a tight
    rounding bound: the caller takes the float64 route).

    A computed sum ``s'`` of ``n`` non-negative terms, in any order, is within
    ``gamma_(n-1) s`` of the exact ``s`` (``gamma_k = k u / (1 - k u)``, ``u = 2^-24``), so
    ``s <= s' / (1 - 2 n u)``, which also covers the rounding of a square and a square root and
    the float64 arithmetic that follows. Squares that underflow lose at most ``2^-126`` each:
    ``numel * 2^-125`` is added to ``||m||_F^2``.
    """
    rows, cols = m.shape
    n = max(rows, cols) + 2
    if n * 2.0**-24 > 0.01:
        return None
    grow = 1.0 / (1.0 - 2.0 * n * 2.0**-24)
    a = m.abs()
    col, row = float(a.sum(dim=0).max()), float(a.sum(dim=1).max())
    norms = torch.linalg.vector_norm(m, dim=1).to(torch.float64)
    frobenius = math.sqrt(float((norms * norms).sum()) * grow + m.numel() * 2.0**-125)
    holder = math.sqrt(col * row) * grow
    return min(frobenius, holder) if math.isfinite(frobenius + holder) else None


def operator_norm(t: torch.Tensor, conv: bool) -> float:
    """Guaranteed upper bound on the operator norm of a map held as ``t`` (axis 0 output, axis 1
    input; ``conv``: the trailing axes are kernel taps, else they flatten into the input)."""
    if not conv or t.dim() <= 2:
        return spectral_bound(t.reshape(t.shape[0], -1))
    taps = t.reshape(t.shape[0], t.shape[1], -1)
    per_tap = sum(spectral_bound(taps[..., k]) for k in range(taps.shape[-1]))
    whole = math.sqrt(taps.shape[-1]) * spectral_bound(taps.reshape(t.shape[0], -1))
    return min(per_tap, whole)


def downstream_lipschitz(s: Surgery, model: IsotropicNet, h: int) -> float:
    """``C_h`` of the module docstring, from the workspace's current weights."""
    lip_f, lip_g = model.radial.lipschitz, model.radial.gain_lipschitz  # type: ignore[attr-defined]
    c = 1.0
    for j in range(h, s.num_layers - 1):
        conv = j + 1 < model.num_conv
        w = s.memo(  # maps a sweep leaves unchanged are not bounded twice
            ("operator_norm", j + 1, conv, _EXACT.get()),
            j + 1,
            lambda j=j, conv=conv: operator_norm(s.W.peek(j + 1), conv),
        )
        if model.psi_mode == "none":
            p = 0.0
        elif s.psi[j].dim() <= 1:
            p = float(s.psi[j].norm())
        else:
            p = operator_norm(s.psi[j].unsqueeze(1), conv)
        c *= model.pool_norm(j) * (w * lip_f + p * lip_g)
    return c


def input_norm_bound(
    model: IsotropicNet, probe: torch.Tensor | None, input_norm: float | None
) -> float:
    """``A_0``: ``input_norm`` (finite, > 0, and no smaller than any probe sample) if given, else
    the largest sample norm of ``probe``, else 1.

    Raises:
        IsoproofError: ``input_norm`` is not a finite float > 0, or a probe sample is longer.
        NonFiniteError: the probe holds NaN/Inf.
    """
    largest = None
    if probe is not None:
        check_probe(model, probe)
        largest = float(model.sample_norms(probe.detach().to(torch.float64)).max())
    if input_norm is None:
        return largest if largest is not None else 1.0
    a0 = check_float(input_norm, "input_norm", lo=0.0, strict=True)
    if largest is not None and largest > a0 * (1 + 1e-12):
        raise IsoproofError(
            f"expected probe samples with |x| <= input_norm = {a0:g} (the bound covers only "
            f"those), got one of norm {largest:.6g}"
        )
    return a0


def hidden_input_bound(
    model: IsotropicNet,
    h: int,
    probe: torch.Tensor | None,
    input_norm: float | None,
    s: Surgery | None = None,
) -> float:
    """A bound on ``|a_{h-1}|``, the input of ``maps[h]`` (``a_{-1} = x``; a field's Frobenius
    norm per sample), for every ``|x| <= A_0`` (:func:`input_norm_bound`).

    Bounded profiles: ``|a| = s(N) |z| / N <= sup |s|`` per position, times
    ``sqrt(positions)`` on a conv field (average pooling keeps a per-position norm
    ``<= sup |s|``). Unbounded ones (``s`` increasing, ``s(N) <= N``) in an MLP:
    ``|z_j| <= ||W_j|| A_{j-1} + |b_j| + |psi_{j-1}| sup g``, so
    ``A_j = s(max(sqrt(o_j + |z_j|^2), eps))``; in a convolutional net ``inf`` (no finite bound
    is derived). Weights come from the workspace ``s`` if given, else from the model.
    """
    a = input_norm_bound(model, probe, input_norm)
    if h == 0:
        return a
    bound = model.radial.bound  # type: ignore[attr-defined]
    if math.isfinite(bound):
        positions = model.positions(h - 1)
        return float(bound) if positions == 1 else float(bound) * math.sqrt(positions)
    if model.num_conv:
        return math.inf
    with torch.no_grad():
        for j in range(h):
            W = s.W[j] if s is not None else model.maps[j].weight.to(torch.float64)
            b = s.b[j] if s is not None else model.maps[j].bias.to(torch.float64)
            z = operator_norm(W.to(torch.float64), False) * a + float(b.norm())
            if j >= 1 and model.psi_mode != "none":
                psi = s.psi[j - 1] if s is not None else model.psi[j - 1]
                z += float(psi.norm()) * model.radial.gain_bound  # type: ignore[attr-defined]
            o = float(s.o[j] if s is not None else model.activations[j].o)
            n = max(math.sqrt(o + z * z), model.activations[j].eps)
            a = float(model.radial(torch.tensor(n, dtype=torch.float64)))  # type: ignore[attr-defined]
    return a
