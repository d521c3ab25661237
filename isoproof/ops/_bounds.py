"""Error bounds carried by the receipts of inexact operations.

A perturbation ``delta`` of hidden layer ``h``'s pre-activation ``z_h`` changes the output by at
most ``C_h |delta|``, with the downstream Lipschitz constant::

    C_h = prod_{j=h}^{L-2} ( ||W_{j+1}||_2 * Lip(f) + |psi_j| * Lip(g) )       (C_{L-1} = 1)

because ``z_{j+1} = W_{j+1} f(z_j) + b_{j+1} + psi_j g(z_j)``, ``|f(z) - f(z')| <= Lip(f) |z - z'|``
and ``|g(z) - g(z')| <= Lip(g) |z - z'|`` (closed-form constants from
:class:`~isoproof.radial.Radial`).

What the bound assumes: the input ``x`` has ``|x| <= A_0``, where ``A_0`` is ``input_norm`` if
given, else the largest row norm of ``probe``, else 1 (the bound is then per unit input norm).
Within that ball it holds for every input (it is not an estimate on the probe): the input of a
deeper layer is bounded by ``sup |s|`` for bounded profiles and, for unbounded ones, by
propagating ``A_0`` forward (:func:`hidden_input_bound`). ``tests/test_bounds.py`` checks it
against a brute-force worst case on small nets.
"""

from __future__ import annotations

import math

import torch

from .._validate import check_float
from ..exceptions import IsoproofError
from ..mlp import IsotropicMLP
from ._surgery import Surgery, check_probe

__all__ = ["downstream_lipschitz", "hidden_input_bound", "input_norm_bound"]


def downstream_lipschitz(s: Surgery, model: IsotropicMLP, h: int) -> float:
    """``C_h`` of the module docstring, from the workspace's current weights."""
    lip_f, lip_g = model.radial.lipschitz, model.radial.gain_lipschitz
    c = 1.0
    for j in range(h, s.num_layers - 1):
        w = float(torch.linalg.matrix_norm(s.W[j + 1], ord=2))
        p = float(s.psi[j].norm()) if model.psi_mode != "none" else 0.0
        c *= w * lip_f + p * lip_g
    return c


def input_norm_bound(
    model: IsotropicMLP, probe: torch.Tensor | None, input_norm: float | None
) -> float:
    """``A_0``: ``input_norm`` (finite, > 0, and no smaller than any probe row) if given, else the
    largest row norm of ``probe``, else 1.

    Raises:
        IsoproofError: ``input_norm`` is not a finite float > 0, or a probe row is longer.
        NonFiniteError: the probe holds NaN/Inf.
    """
    largest = None
    if probe is not None:
        check_probe(model, probe)
        largest = float(probe.detach().to(torch.float64).norm(dim=-1).max())
    if input_norm is None:
        return largest if largest is not None else 1.0
    a0 = check_float(input_norm, "input_norm", lo=0.0, strict=True)
    if largest is not None and largest > a0 * (1 + 1e-12):
        raise IsoproofError(
            f"expected probe rows with |x| <= input_norm = {a0:g} (the bound covers only those), "
            f"got a row of norm {largest:.6g}"
        )
    return a0


def hidden_input_bound(
    model: IsotropicMLP,
    h: int,
    probe: torch.Tensor | None,
    input_norm: float | None,
    s: Surgery | None = None,
) -> float:
    """A bound on ``|a_{h-1}|``, the input of ``linears[h]`` (``a_{-1} = x``), for every
    ``|x| <= A_0`` (:func:`input_norm_bound`).

    Bounded profiles: ``|a| = s(N) |z| / N <= sup |s|``. Unbounded ones (``s`` increasing,
    ``s(N) <= N``): ``|z_j| <= ||W_j|| A_{j-1} + |b_j| + |psi_{j-1}| sup g``, so
    ``A_j = s(max(sqrt(o_j + |z_j|^2), eps))``. Weights come from the workspace ``s`` if given
    (earlier layers may already be changed), else from the model.
    """
    a = input_norm_bound(model, probe, input_norm)
    if h == 0:
        return a
    if math.isfinite(model.radial.bound):
        return model.radial.bound
    with torch.no_grad():
        for j in range(h):
            W = s.W[j] if s is not None else model.linears[j].weight.to(torch.float64)
            b = s.b[j] if s is not None else model.linears[j].bias.to(torch.float64)
            z = float(torch.linalg.matrix_norm(W.to(torch.float64), ord=2)) * a + float(b.norm())
            if j >= 1 and model.psi_mode != "none":
                psi = s.psi[j - 1] if s is not None else model.psi[j - 1]
                z += float(psi.norm()) * model.radial.gain_bound
            o = float(s.o[j] if s is not None else model.activations[j].o)
            n = max(math.sqrt(o + z * z), model.activations[j].eps)
            a = float(model.radial(torch.tensor(n, dtype=torch.float64)))
    return a
