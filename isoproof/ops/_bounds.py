"""Error bounds carried by the receipts of inexact operations.

A perturbation ``delta`` of hidden layer ``h``'s pre-activation ``z_h`` changes the output by at
most ``C_h |delta|``, with the downstream Lipschitz constant::

    C_h = prod_{j=h}^{L-2} P_j ( ||W_{j+1}||_op * Lip(f) + ||psi_j||_op * Lip(g) )    (C_{L-1} = 1)

because ``z_{j+1} = W_{j+1} pool(f(z_j)) + b_{j+1} + psi_j pool(g(z_j))``,
``|f(z) - f(z')| <= Lip(f) |z - z'|`` and ``|g(z) - g(z')| <= Lip(g) |z - z'|`` (constants from
:class:`~isoproof.radial.Radial`; on a conv layer this holds at every position, hence for the
whole field in the Frobenius norm), and ``P_j`` is the operator norm of the spatial map between
(``model.pool_norm``: ``p^(-d/2)`` for a ``p``-wide average pooling, 1 for an MLP).

Operator norms (:func:`operator_norm`): a dense map's spectral norm. For a convolution
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
"""

from __future__ import annotations

import math

import torch

from ..network import IsotropicNet
from ._surgery import Surgery

__all__ = [
    "downstream_lipschitz",
    "hidden_input_bound",
    "operator_norm",
    "probe_activation_norms",
]


def operator_norm(t: torch.Tensor, conv: bool) -> float:
    """Guaranteed upper bound on the operator norm of a map held as ``t`` (axis 0 output, axis 1
    input; ``conv``: the trailing axes are kernel taps, else they flatten into the input)."""
    if not conv or t.dim() <= 2:
        return float(torch.linalg.matrix_norm(t.reshape(t.shape[0], -1), ord=2))
    taps = t.reshape(t.shape[0], t.shape[1], -1)
    per_tap = float(torch.linalg.matrix_norm(taps.movedim(-1, 0), ord=2).sum())
    whole = math.sqrt(taps.shape[-1]) * float(
        torch.linalg.matrix_norm(taps.reshape(t.shape[0], -1), ord=2)
    )
    return min(per_tap, whole)


def downstream_lipschitz(s: Surgery, model: IsotropicNet, h: int) -> float:
    """``C_h`` of the module docstring, from the workspace's current weights."""
    lip_f, lip_g = model.radial.lipschitz, model.radial.gain_lipschitz  # type: ignore[attr-defined]
    c = 1.0
    for j in range(h, s.num_layers - 1):
        conv = j + 1 < model.num_conv
        if s.W[j + 1].dim() <= 2:  # a dense map (the MLP): its spectral norm
            w = float(torch.linalg.matrix_norm(s.W[j + 1], ord=2))
        else:
            w = operator_norm(s.W[j + 1], conv)
        if model.psi_mode == "none":
            p = 0.0
        elif s.psi[j].dim() <= 1:
            p = float(s.psi[j].norm())
        else:
            p = operator_norm(s.psi[j].unsqueeze(1), conv)
        c *= model.pool_norm(j) * (w * lip_f + p * lip_g)
    return c


def probe_activation_norms(model: IsotropicNet, x: torch.Tensor) -> list[float]:
    """``[max|x|, max|a_0|, ..., max|a_{L-2}|]`` over the samples of ``x`` (``a_l = g_l z_l``,
    after pooling for a conv layer; fields in the Frobenius norm)."""
    norms = [x] + [a for a, _ in model.hidden_states(x)]  # type: ignore[operator]
    return [float(model.sample_norms(t.detach().to(torch.float64)).max()) for t in norms]


def hidden_input_bound(
    model: IsotropicNet, h: int, probe: torch.Tensor | None, input_norm: float | None
) -> float:
    """A bound on ``|a_{h-1}|``, the input of ``maps[h]`` (``a_{-1} = x``; a field's Frobenius
    norm per sample).

    Layer 0: ``input_norm`` if given, else the largest sample norm of ``probe``, else 1 (the bound
    is then per unit input norm). Deeper layers: ``sup |s|`` of the radial profile (1 for tanh)
    per position, times ``sqrt(positions)`` on a conv field (average pooling keeps a per-position
    norm ``<= sup |s|``); for unbounded profiles the largest norm seen on ``probe`` (``inf``
    without one).
    """
    if h == 0:
        if input_norm is not None:
            return float(input_norm)
        if probe is None:
            return 1.0
        return float(model.sample_norms(probe.detach().to(torch.float64)).max())
    bound = model.radial.bound  # type: ignore[attr-defined]
    if math.isfinite(bound):
        positions = model.positions(h - 1)
        return float(bound) if positions == 1 else float(bound) * math.sqrt(positions)
    return probe_activation_norms(model, probe)[h] if probe is not None else math.inf
