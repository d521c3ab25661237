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

__all__ = ["DiagonalConv", "DiagonalLinear"]


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


class DiagonalConv(nn.Module):
    """A 1x1 convolution whose ``[C_out, C_in]`` channel matrix is rectangular-diagonal.

    After full diagonalisation of a 1x1 convolution (``docs/method.md`` §3, convolutions) channel
    ``i`` of the input feeds only channel ``i`` of the output, with weight ``d_i``::

        y = pad_spatial(pad_channels(x[:, :k] * d, C_out - k))[..., ::stride] + b

    (zero spatial ``padding`` first, then the ``stride``; a 1x1 kernel has no dilation). Shapes:
    ``x`` ``[B, C_in, *spatial]`` (1-D or 2-D) -> ``y`` ``[B, C_out, *spatial_out]``. ``.weight``
    is the dense ``[C_out, C_in, 1(, 1)]`` view, so code that reads kernels works unchanged.

    Example::

        >>> conv = DiagonalConv(3, 3, dims=2, padding=1, stride=2)
        >>> _ = conv.diagonal.data.normal_()
        >>> x = torch.randn(2, 3, 5, 5)
        >>> ref = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
        >>> torch.allclose(conv(x), ref)
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        dims: int,
        stride: int = 1,
        padding: int = 0,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, int) or value < 1:
                raise WidthError(f"expected {name} to be an int >= 1, got {value!r}")
        if dims not in (1, 2):
            raise WidthError(f"expected dims in (1, 2), got {dims!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dims = dims
        self.stride = int(stride)
        self.padding = int(padding)
        k = min(in_channels, out_channels)
        self.diagonal = nn.Parameter(torch.ones(k, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=dtype, device=device))

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``[C_out, C_in, 1(, 1)]`` kernel (for reading; not a Parameter)."""
        w = self.diagonal.new_zeros(self.out_channels, self.in_channels)
        k = self.diagonal.numel()
        idx = torch.arange(k, device=w.device)
        w[idx, idx] = self.diagonal
        return w.reshape(w.shape + (1,) * self.dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.diagonal.numel()
        spatial = (1,) * self.dims
        y = x[:, :k] * self.diagonal.reshape(k, *spatial)
        pad = [0, 0] * self.dims + [0, self.out_channels - k]
        if self.padding:
            pad[: 2 * self.dims] = [self.padding] * (2 * self.dims)
        if any(pad):
            y = F.pad(y, pad)
        if self.stride > 1:
            y = y[(..., *[slice(None, None, self.stride)] * self.dims)]
        return y + self.bias.reshape(-1, *spatial)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, dims={self.dims}, "
            f"stride={self.stride}, padding={self.padding}"
        )
