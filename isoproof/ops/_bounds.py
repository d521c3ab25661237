"""Error bounds carried by the receipts of inexact operations.

A perturbation ``delta`` of hidden layer ``h``'s pre-activation ``z_h`` changes the output by at
most ``C_h |delta|``, with the downstream Lipschitz constant::

    C_h = prod_{j=h}^{L-2} ( ||W_{j+1}||_2 * Lip(f) + |psi_j| * Lip(g) )       (C_{L-1} = 1)

because ``z_{j+1} = W_{j+1} f(z_j) + b_{j+1} + psi_j g(z_j)``, ``|f(z) - f(z')| <= Lip(f) |z - z'|``
and ``|g(z) - g(z')| <= Lip(g) |z - z'|`` (constants from :class:`~isoproof.radial.Radial`).
The bound is global (valid for every input with the stated input norm), not a local estimate.
"""

from __future__ import annotations

import math

import torch

from ..mlp import IsotropicMLP
from ._surgery import Surgery

__all__ = ["downstream_lipschitz", "hidden_input_bound", "probe_activation_norms"]


def downstream_lipschitz(s: Surgery, model: IsotropicMLP, h: int) -> float:
    """``C_h`` of the module docstring, from the workspace's current weights."""
    lip_f, lip_g = model.radial.lipschitz, model.radial.gain_lipschitz
    c = 1.0
    for j in range(h, s.num_layers - 1):
        w = float(torch.linalg.matrix_norm(s.W[j + 1], ord=2))
        p = float(s.psi[j].norm()) if model.psi_mode != "none" else 0.0
        c *= w * lip_f + p * lip_g
    return c


def probe_activation_norms(model: IsotropicMLP, x: torch.Tensor) -> list[float]:
    """``[max|x|, max|a_0|, ..., max|a_{L-2}|]`` over the rows of ``x`` (``a_l = g_l z_l``)."""
    norms = [x] + [a for a, _ in model.hidden_states(x)]
    return [float(t.detach().to(torch.float64).norm(dim=-1).max()) for t in norms]


def hidden_input_bound(
    model: IsotropicMLP, h: int, probe: torch.Tensor | None, input_norm: float | None
) -> float:
    """A bound on ``|a_{h-1}|``, the input of ``linears[h]`` (``a_{-1} = x``).

    Layer 0: ``input_norm`` if given, else the largest row norm of ``probe``, else 1 (the bound is
    then per unit input norm). Deeper layers: ``sup |s|`` of the radial profile (1 for tanh); for
    unbounded profiles the largest norm seen on ``probe`` (``inf`` without one).
    """
    if h == 0:
        if input_norm is not None:
            return float(input_norm)
        return (
            float(probe.detach().to(torch.float64).norm(dim=-1).max()) if probe is not None else 1.0
        )
    if math.isfinite(model.radial.bound):
        return model.radial.bound
    return probe_activation_norms(model, probe)[h] if probe is not None else math.inf
