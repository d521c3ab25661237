"""Standard (elementwise-activation) MLPs and CNNs, for comparisons with isotropic models.

A standard MLP applies ``s`` to each coordinate: ``a_l = s(z_l)`` with ``z_l = W_l a_{l-1} + b_l``.
It commutes only with (signed) permutations of a hidden layer, so none of isoproof's exact
operations apply to it; it is the control of the paper's Exp 2 and Exp 6
(``docs/method.md`` §7).

* :func:`standard_mlp` builds ``nn.Sequential(Linear, act, Linear, act, ..., Linear)`` with the same
  initialisations as :class:`~isoproof.IsotropicMLP` (orthogonal weights and zero biases, or
  PyTorch's default);
* :func:`paired_standard` copies the weights and biases of an isotropic model into a standard one,
  so the two start from the same point ("paired initial weights") and differ only in the
  activation. The isotropic model's ``o`` and ``psi`` have no counterpart: at initialisation they
  are ``1e-6`` and ``0``; a non-zero psi is refused unless ``strict=False``.

* :func:`paired_standard` of an :class:`~isoproof.IsotropicConvNet` builds the standard CNN
  ``nn.Sequential(Conv, act[, AvgPool], ..., Flatten, Linear, act, ..., Linear)`` with the same
  geometry (kernel, stride, padding, dilation, pooling) and copies every kernel and bias; the
  activation is elementwise (``s(z)`` per channel and position) where the isotropic one divides
  each position's channel vector by its norm. The channel gain maps and psi kernels have no
  counterpart (``0`` at initialisation).

Shapes: MLP input ``[..., n0]``, output ``[..., nL]``; CNN input ``[B, *input_shape]``, output
``[B, num_classes]``.

Example::

    >>> iso = IsotropicMLP([4, 8, 8, 3], dtype=torch.float64)
    >>> std = paired_standard(iso)
    >>> x = torch.randn(5, 4, dtype=torch.float64)
    >>> torch.equal(std[0](x), iso.linears[0](x))
    True
    >>> cnn = IsotropicConvNet([1, 8, 8], [{"conv": 4, "padding": 1, "pool": 2}, {"dense": 6}], 3)
    >>> twin = paired_standard(cnn)
    >>> img = torch.randn(2, 1, 8, 8)
    >>> torch.equal(twin[0](img), cnn.convs[0](img)), widths_of(twin) == cnn.widths
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .conv import IsotropicConvNet
from .diagonal import DiagonalLinear
from .exceptions import IsoproofError
from .mlp import INIT_MODES, IsotropicMLP, _check_widths, initialise_linear
from .network import IsotropicNet
from .ops._surgery import check_model

__all__ = ["ACTIVATIONS", "linear_layers", "paired_standard", "standard_mlp", "widths_of"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softsign": nn.Softsign,
}


def standard_mlp(
    widths: Sequence[int],
    activation: str = "tanh",
    *,
    init: str = "orthogonal",
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> nn.Sequential:
    """``nn.Sequential`` of ``nn.Linear`` maps with the elementwise ``activation`` between them.

    Args:
        widths: ``[n0, ..., nL]`` as for :class:`~isoproof.IsotropicMLP`.
        activation: one of :data:`ACTIVATIONS` (``"tanh"``, ``"relu"``, ``"gelu"``, ...).
        init: ``"orthogonal"`` (orthogonal weights, zero biases: the paper's setup) or
            ``"kaiming"`` (``nn.Linear``'s default).
        generator: optional ``torch.Generator`` for the initialisation.
    """
    widths = _check_widths(widths)
    if activation not in ACTIVATIONS:
        raise IsoproofError(f"expected activation in {sorted(ACTIVATIONS)}, got {activation!r}")
    if init not in INIT_MODES:
        raise IsoproofError(f"expected init in {INIT_MODES}, got {init!r}")
    factory: dict[str, Any] = {"dtype": dtype, "device": device}
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1], **factory)
        layers.append(initialise_linear(lin, init, generator=generator))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def paired_standard(
    model: IsotropicMLP | IsotropicConvNet, activation: str = "tanh", *, strict: bool = True
) -> nn.Sequential:
    """A standard MLP or CNN with ``model``'s architecture, weights and biases (dense copies) and
    an elementwise ``activation``; same dtype and device.

    Args:
        model: an :class:`~isoproof.IsotropicMLP` or :class:`~isoproof.IsotropicConvNet`.
        activation: one of :data:`ACTIVATIONS`.
        strict: refuse a model with non-zero psi (the standard twin has no psi correction).

    Raises:
        IsoproofError: non-zero psi with ``strict``, or an unknown activation.
    """
    if not isinstance(model, IsotropicConvNet):
        model = check_model(model)
    if strict and model.psi_mode != "none" and len(model.psi):
        worst = max(float(p.detach().abs().max()) for p in model.psi)
        if worst != 0.0:
            raise IsoproofError(
                "expected psi = 0 (a standard network has no psi correction; pass strict=False to "
                f"drop it), got max |psi| = {worst:.3g}"
            )
    if isinstance(model, IsotropicConvNet):
        std = _standard_cnn(model, activation)
    else:
        std = standard_mlp(model.widths, activation, dtype=model.dtype, device=model.device)
    with torch.no_grad():
        for src, dst in zip(model.maps, _affine_maps(std), strict=True):
            dst.weight.copy_(src.weight.detach())
            dst.bias.copy_(src.bias.detach())
    return std


def _standard_cnn(model: IsotropicConvNet, activation: str) -> nn.Sequential:
    """The elementwise twin of ``model``'s architecture (weights left to the caller)."""
    if activation not in ACTIVATIONS:
        raise IsoproofError(f"expected activation in {sorted(ACTIVATIONS)}, got {activation!r}")
    factory: dict[str, Any] = {"dtype": model.dtype, "device": model.device}
    conv = {1: nn.Conv1d, 2: nn.Conv2d}[model.dims]
    pool = {1: nn.AvgPool1d, 2: nn.AvgPool2d}[model.dims]
    shapes = [model.map_shape(i) for i in range(model.num_conv)]
    layers: list[nn.Module] = []
    for shape, g in zip(shapes, model.geometry, strict=True):
        layers.append(
            conv(
                shape[1], shape[0], g["k"], stride=g["stride"], padding=g["padding"],
                dilation=g["dilation"], **factory,
            )
        )  # fmt: skip
        layers.append(ACTIVATIONS[activation]())
        if g["pool"] > 1:
            layers.append(pool(g["pool"]))
    layers.append(nn.Flatten(1))
    for j, lin in enumerate(model.linears):
        if j:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(int(lin.in_features), int(lin.out_features), **factory))
    return nn.Sequential(*layers)


def _affine_maps(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]


def linear_layers(model: nn.Module) -> list[nn.Module]:
    """The affine maps of a model, in order (the one definition; NGC and the exporters use it).

    ``model.linears`` for an :class:`~isoproof.IsotropicMLP`; otherwise every submodule that is
    an affine map (``nn.Linear``, :class:`~isoproof.DiagonalLinear`, :class:`~isoproof.NGCLinear`),
    in module order, without looking inside an affine map. Each has ``in_features``,
    ``out_features`` and a ``.weight`` of shape ``[out, in]``.

    Example::

        >>> seq = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Sequential(nn.Linear(6, 3)))
        >>> [(m.in_features, m.out_features) for m in linear_layers(seq)]
        [(4, 6), (6, 3)]
    """
    if isinstance(model, IsotropicMLP):
        return list(model.linears)
    affine = _affine_types()
    found: list[nn.Module] = []

    def walk(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, affine):
                found.append(child)
            else:
                walk(child)

    if isinstance(model, affine):
        return [model]
    walk(model)
    return found


def _affine_types() -> tuple[type[nn.Module], ...]:
    from .ngc import NGCLinear  # ngc builds on this module

    return (nn.Linear, DiagonalLinear, NGCLinear)


def widths_of(model: nn.Module) -> list[int]:
    """``[n0, ..., nL]`` of an MLP or CNN: ``model.widths`` for an isotropic one, else the input
    width (features, or channels of the first convolution) then every affine map's output width
    (channels, then features); ``[]`` without maps."""
    if isinstance(model, IsotropicNet):
        return model.widths
    maps = _affine_maps(model)
    if not maps:
        return []
    first = maps[0]
    n0 = first.in_features if isinstance(first, nn.Linear) else first.in_channels
    outs = [m.out_features if isinstance(m, nn.Linear) else m.out_channels for m in maps]
    return [int(n0), *(int(n) for n in outs)]
