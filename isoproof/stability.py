"""A *proxy* for the neuronal stability metric of NGC (arXiv 2510.16851).

The paper defines "a neuronal stability metric (analogous to Lyapunov stability) that quantifies
the contraction of neuron activations toward stable patterns during sequence processing"; its
exact formula could not be read (``docs/ngc-method.md``). This module computes the
documented **proxy**, a finite-difference Lyapunov exponent: for successive states ``h_t``::

    lambda = mean_t log(|h_{t+1} - h_t| / |h_t - h_{t-1}|)        (negative: contracting)

averaged over the batch as well. Two readings of "successive":

* ``axis="depth"`` (an MLP's hidden states ``h_0 .. h_{H-1}``: ``a_l`` of an
  :class:`~isoproof.IsotropicMLP`, the activation outputs of an ``nn.Sequential``): one value per
  hidden layer ``l = 1 .. H-2``, from ``h_{l-1}, h_l, h_{l+1}``. Differences need equal widths, so
  layers whose three states do not share one width are skipped and listed in ``skipped``.
* ``axis="sequence"`` (inputs ``[B, T, n]``; each token goes through the MLP): one value per
  hidden layer ``l``, along ``t`` of that layer's states ``h_l[:, t]`` (``T >= 3``).

For the linear map ``h_{t+1} = A h_t`` the ratio lies in ``[sigma_min(A), sigma_max(A)]``, so
``lambda < 0`` when ``|A|_2 < 1`` and ``lambda > 0`` when ``sigma_min(A) > 1``. Terms whose
differences vanish (``|d| <= tiny``) are left out of the mean. ``overall`` is the mean of the
per-layer values. It is a proxy, not the paper's metric, and every report says so.

Example::

    >>> A = 0.5 * torch.eye(4)
    >>> net = nn.Sequential(*[nn.Linear(4, 4, bias=False) for _ in range(5)])
    >>> with torch.no_grad():
    ...     for lin in net:
    ...         _ = lin.weight.copy_(A)
    >>> s = stability(net, torch.randn(8, 4))
    >>> s.kind, round(s.overall, 4)
    ('proxy', -0.6931)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from .exceptions import IsoproofError, WidthError
from .ngc import affine_inputs
from .table import format_table

__all__ = ["AXES", "Stability", "stability"]

AXES: tuple[str, ...] = ("auto", "depth", "sequence")
Axis = Literal["auto", "depth", "sequence"]


@dataclass(frozen=True)
class Stability:
    """The stability proxy: ``per_layer`` maps a hidden layer to its lambda; ``overall`` is
    their mean; ``skipped`` lists hidden layers without a value (unequal widths)."""

    per_layer: dict[int, float]
    overall: float
    axis: Literal["depth", "sequence"]
    skipped: tuple[int, ...] = ()
    kind: str = "proxy"

    def table(self) -> str:
        rows = [[layer, value] for layer, value in self.per_layer.items()]
        rows += [[layer, "skipped (widths differ)"] for layer in self.skipped]
        head = format_table(["hidden layer", f"lambda ({self.axis}, proxy)"], rows)
        return (
            f"{head}\noverall lambda {self.overall:.4g} (proxy: mean log ratio of successive "
            f"differences along {self.axis}; < 0 contracting)"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_layer"] = {str(k): v for k, v in self.per_layer.items()}
        return out


def _log_ratio(before: torch.Tensor, now: torch.Tensor, after: torch.Tensor) -> float:
    """``mean log(|after - now| / |now - before|)`` over every leading index (float64)."""
    num = torch.linalg.vector_norm((after - now).double(), dim=-1)
    den = torch.linalg.vector_norm((now - before).double(), dim=-1)
    tiny = torch.finfo(torch.float64).tiny
    keep = (num > tiny) & (den > tiny)
    if not bool(keep.any()):
        return math.nan
    return float(torch.log(num[keep] / den[keep]).mean())


@torch.no_grad()
def stability(model: nn.Module, x: torch.Tensor, *, axis: Axis = "auto") -> Stability:
    """The stability proxy of ``model`` on the batch ``x`` (module docstring).

    Args:
        model: an :class:`~isoproof.IsotropicMLP` or an ``nn.Sequential`` MLP (also NGC-compressed).
        x: ``[N, n0]`` (depth) or ``[B, T, n0]`` (sequence).
        axis: ``"auto"`` (sequence for 3-D inputs, else depth), ``"depth"`` or ``"sequence"``.

    Raises:
        IsoproofError: no lambda can be formed (fewer than three equal-width hidden states for
            depth, ``T < 3`` for sequence).
    """
    if axis not in AXES:
        raise IsoproofError(f"expected axis in {AXES}, got {axis!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        raise WidthError(f"expected x of shape [N, n] or [B, T, n], got {getattr(x, 'shape', x)}")
    kind: Literal["depth", "sequence"] = (
        ("sequence" if x.dim() == 3 else "depth") if axis == "auto" else axis
    )
    was_training = model.training
    model.eval()
    try:
        states = affine_inputs(model, x)[1:]  # hidden states h_0 .. h_{H-1}
    finally:
        model.train(was_training)
    per_layer: dict[int, float] = {}
    skipped: list[int] = []
    if kind == "sequence":
        if x.dim() != 3 or x.shape[1] < 3:
            raise WidthError(
                f"expected sequence inputs [B, T >= 3, n] for axis='sequence', got {tuple(x.shape)}"
            )
        for l, h in enumerate(states):
            per_layer[l] = _log_ratio(h[:, :-2], h[:, 1:-1], h[:, 2:])
    else:
        for l in range(1, len(states) - 1):
            trio = states[l - 1 : l + 2]
            if len({h.shape[-1] for h in trio}) != 1:
                skipped.append(l)
                continue
            per_layer[l] = _log_ratio(*trio)
    values = [v for v in per_layer.values() if math.isfinite(v)]
    if not values:
        widths = [h.shape[-1] for h in states]
        raise IsoproofError(
            f"expected three successive hidden states of equal width along {kind} to form the "
            f"stability proxy, got hidden widths {widths} for input shape {tuple(x.shape)}"
        )
    return Stability(per_layer, sum(values) / len(values), kind, tuple(skipped))
