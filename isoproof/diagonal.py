"""``DiagonalLinear``: an affine map whose weight is rectangular-diagonal.

After full diagonalisation (``docs/method.md`` §3) a hidden-to-hidden map is
``W = L`` with ``L[i, i] = sigma_i`` and zeros elsewhere: neuron ``i`` of the previous layer feeds
only neuron ``i`` of this one. Storing it densely would keep the zeros; this module stores only the
``k = min(out, in)`` diagonal entries and the bias, so the saving is real in memory and in FLOPs::

    y = pad(x[..., :k] * d, out - k) + b          shapes: x [..., in] -> y [..., out]

For the usual square case this is one elementwise ``Mul`` and one ``Add`` (also in ONNX).
``.weight`` returns the dense ``[out, in]`` view, so code that reads weights works unchanged.

Example::

    >>> lin = DiagonalLinear(3, 3)
    >>> x = torch.randn(2, 3)
    >>> torch.allclose(lin(x), x @ lin.weight.T + lin.bias)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .exceptions import WidthError

__all__ = ["DiagonalLinear"]


class DiagonalLinear(nn.Module):
    """Affine map ``y = L x + b``, ``L`` rectangular-diagonal (stores ``min(out, in)`` numbers)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise WidthError(f"expected {name} to be an int >= 1, got {value!r}")
        self.in_features = in_features
        self.out_features = out_features
        k = min(in_features, out_features)
        self.diagonal = nn.Parameter(torch.ones(k, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device))

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``[out, in]`` rectangular-diagonal weight (for reading; not a Parameter)."""
        w = self.diagonal.new_zeros(self.out_features, self.in_features)
        k = self.diagonal.numel()
        idx = torch.arange(k, device=w.device)
        w[idx, idx] = self.diagonal
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.diagonal.numel()
        if self.in_features > k:
            x = x[..., :k]
        y = x * self.diagonal
        if self.out_features > k:
            y = F.pad(y, (0, self.out_features - k))
        return y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
