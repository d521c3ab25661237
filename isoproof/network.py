"""``IsotropicNet``: what every isotropic model shares (the MLP and the convolutional net).

An isotropic network is a chain of ``L`` affine *maps* (dense or convolutional) separated by
isotropic activations, with one intrinsic length ``o`` per activation and one psi term per map
after the first (``docs/method.md`` §2). *Space* ``h`` (``0 <= h <= L-2``) is the output space of
``maps[h]``: its neurons are the features of a dense layer or the channels of a convolution. The
structural operations (:mod:`isoproof.ops`) only see this chain, through :attr:`maps`,
:meth:`set_map`, ``activations`` and ``psi``, so one engine serves every subclass.

Example::

    >>> m = IsotropicMLP([4, 6, 3])
    >>> isinstance(m, IsotropicNet), m.num_layers, m.widths
    (True, 2, [4, 6, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .diagonal import DiagonalConv, DiagonalLinear
from .exceptions import IsoproofError

if TYPE_CHECKING:
    from .activations import IntrinsicLength
    from .psi import PsiMode, PsiVectors

__all__ = ["DTYPES", "IsotropicNet", "count_parameters"]

#: dtype names in configs -> torch dtypes.
DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


class IsotropicNet(nn.Module):
    """Base class: subclasses define ``maps``, ``set_map``, ``activations`` and ``psi``."""

    activations: nn.ModuleList
    psi: PsiVectors

    @property
    def maps(self) -> list[nn.Module]:
        """The affine maps in order (``maps[h]`` produces space ``h``)."""
        raise NotImplementedError

    def shared_config(self) -> dict[str, Any]:
        """The config entries every isotropic model has (the subclass adds its architecture)."""
        return {
            "radial": self.radial.spec,  # type: ignore[attr-defined]
            "intrinsic_length": self.intrinsic_length,
            "psi": self.psi_mode,
            "psi_decay": self.psi_decay,  # type: ignore[attr-defined]
            "eps": self.eps,
            "diagonal_layers": self.diagonal_layers,
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    @classmethod
    def build_from_config(
        cls,
        config: dict[str, Any],
        positional: Sequence[str],
        *,
        device: torch.device | str | None = None,
        init: str = "kaiming",
    ) -> Any:
        """``cls(*config[positional], **shared entries)`` with the diagonal maps restored.

        Raises:
            IsoproofError: a missing key or an invalid value (``KeyError``/``TypeError`` are
                reported as such, naming the key).
        """
        if not isinstance(config, dict):
            raise IsoproofError(f"expected a config dict, got {type(config).__name__}")
        try:
            model = cls(
                *[config[k] for k in positional],
                radial=config["radial"],
                intrinsic_length=config["intrinsic_length"],
                psi=config["psi"],
                psi_decay=config["psi_decay"],
                eps=config["eps"],
                dtype=DTYPES[config["dtype"]],
                device=device,
                init=init,
            )
            for i in config["diagonal_layers"]:
                model.set_map(i, model.make_map(i, model.map_shape(i), diagonal=True))
        except KeyError as e:
            raise IsoproofError(
                f"expected key {e} in the model config, got {sorted(config)}"
            ) from None
        except (TypeError, IndexError) as e:
            raise IsoproofError(f"expected a valid model config, got {config!r} ({e})") from None
        return model

    def set_map(self, i: int, module: nn.Module) -> None:
        """Replace ``maps[i]`` (used by the transactional commit of :mod:`isoproof.ops`)."""
        raise NotImplementedError

    def map_shape(self, i: int) -> tuple[int, ...]:
        """``maps[i]`` as the operations see it: axis 0 its output space, axis 1 its input space
        (dense ``[out, in]``; see :class:`~isoproof.IsotropicConvNet` for kernels)."""
        return tuple(self.maps[i].weight.shape)  # type: ignore[arg-type]

    def make_map(
        self, i: int, shape: Sequence[int], *, diagonal: bool = False, device: Any = None
    ) -> nn.Module:
        """A fresh module for ``maps[i]`` with the operations' ``shape`` (on ``device``, by
        default the model's)."""
        factory: dict[str, Any] = {"dtype": self.dtype, "device": device or self.device}
        if diagonal:
            return DiagonalLinear(shape[1], shape[0], **factory)
        return nn.Linear(shape[1], shape[0], **factory)

    def empty_map(self, i: int, shape: Sequence[int], *, diagonal: bool = False) -> nn.Module:
        """:meth:`make_map` with uninitialised parameters, for a caller that writes them all
        (the commit of :mod:`isoproof.ops`): built on the meta device, so no random
        initialisation is paid for, then given empty parameters on the model's device."""
        module = self.make_map(i, shape, diagonal=diagonal, device="meta")
        if any(True for _ in module.buffers()):  # none today; they would need their values
            return self.make_map(i, shape, diagonal=diagonal)
        for sub in module.modules():
            for name, p in list(sub.named_parameters(recurse=False)):
                empty = torch.empty(p.shape, dtype=p.dtype, device=self.device)
                setattr(sub, name, nn.Parameter(empty, requires_grad=p.requires_grad))
        return module

    #: Maps ``0 .. num_conv-1`` are convolutions (0 for an MLP).
    num_conv: int = 0

    def taps(self, i: int) -> int:
        """Spatial taps of ``maps[i]``'s kernel (1 for a dense map)."""
        return 1

    def positions(self, h: int) -> int:
        """Positions of the field that ``maps[h+1]`` reads from space ``h`` (1 for dense)."""
        return 1

    def pool_norm(self, h: int) -> float:
        """Operator norm of the spatial map between activation ``h`` and ``maps[h+1]``."""
        return 1.0

    def sample_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The shapes one input sample may have (the input is ``[..., *shape]``): ``(n0,)``."""
        return ((self.widths[0],),)

    def sample_norms(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample Euclidean norm of an input or hidden field (``[..., n]``: the last axis)."""
        return t.norm(dim=-1)

    @property
    def widths(self) -> list[int]:
        """``[n0, ..., nL]``: input width (features or channels), then each map's output width,
        always current."""
        maps = self.maps
        return [_in_width(maps[0])] + [_out_width(m) for m in maps]

    @property
    def num_layers(self) -> int:
        """``L``: the number of affine maps."""
        return len(self.maps)

    @property
    def diagonal_layers(self) -> list[int]:
        """Indices of the maps stored in diagonal form (``DiagonalLinear`` / ``DiagonalConv``)."""
        return [i for i, m in enumerate(self.maps) if isinstance(m, DiagonalLinear | DiagonalConv)]

    @property
    def intrinsic_length(self) -> IntrinsicLength:
        if len(self.activations) == 0:
            return "none"
        return self.activations[0].intrinsic_length  # type: ignore[no-any-return]

    @property
    def psi_mode(self) -> PsiMode:
        return self.psi.mode

    @property
    def eps(self) -> float:
        return float(self.activations[0].eps) if len(self.activations) else 1e-3

    @property
    def dtype(self) -> torch.dtype:
        return self.maps[0].bias.dtype  # type: ignore[no-any-return]

    @property
    def device(self) -> torch.device:
        return self.maps[0].bias.device  # type: ignore[no-any-return]

    def count_parameters(self, *, hidden_only: bool = False) -> int:
        """Stored numbers (not non-zeros); see :func:`count_parameters`."""
        return count_parameters(self, hidden_only=hidden_only)

    def penalty(self) -> torch.Tensor:
        """``psi_decay * sum_l |psi_l|^2`` in ``"decay"`` mode, else 0 (add it to the loss).

        One ``dot`` of the concatenated vectors (3 differentiable ops, not 3 per layer: this is
        part of every training step)."""
        terms = self.psi.terms() if self.psi_mode == "decay" else []
        if not terms:
            return self.maps[0].bias.new_zeros(())  # type: ignore[no-any-return]
        flat = [t if t.dim() == 1 else t.reshape(-1) for t in terms]
        joined = flat[0] if len(flat) == 1 else torch.cat(flat)  # type: ignore[arg-type]
        return self.psi_decay * torch.dot(joined, joined)  # type: ignore[attr-defined,no-any-return]


def count_parameters(model: nn.Module, *, hidden_only: bool = False) -> int:
    """Number of stored numbers of ``model``.

    For an isotropic network (:class:`~isoproof.IsotropicMLP`,
    :class:`~isoproof.IsotropicConvNet`): weights (diagonal maps count their diagonal), biases,
    psi vectors and intrinsic lengths, whether stored as parameters or buffers; with
    ``hidden_only=True`` only the weights of the hidden-to-hidden maps ``maps[1:-1]`` (the
    count of ``docs/method.md`` §3). For any other module: its unique parameters. Either way a
    Parameter shared by several maps (NGC's input states) counts once.
    """
    if not isinstance(model, IsotropicNet):
        if hidden_only:
            raise IsoproofError(
                f"expected an isotropic network for hidden_only=True, got {type(model).__name__}"
            )
        return int(sum(p.numel() for p in model.parameters()))  # parameters() deduplicates
    maps = model.maps[1:-1] if hidden_only else model.maps
    # by identity, so a Parameter shared by several maps (NGC's input states) counts once
    weights = {
        id(p): p.numel() for lin in maps for name, p in lin.named_parameters() if name != "bias"
    }
    if hidden_only:
        return int(sum(weights.values()))
    total = sum(weights.values()) + sum(lin.bias.numel() for lin in model.maps)
    total += sum(p.numel() for p in model.psi) if model.psi_mode != "none" else 0
    total += len(model.activations) if model.intrinsic_length != "none" else 0
    return int(total)


def _in_width(m: nn.Module) -> int:
    for name in ("in_features", "in_channels"):
        if hasattr(m, name):
            return int(getattr(m, name))
    raise TypeError(f"expected a dense or convolutional map, got {type(m).__name__}")


def _out_width(m: nn.Module) -> int:
    for name in ("out_features", "out_channels"):
        if hasattr(m, name):
            return int(getattr(m, name))
    raise TypeError(f"expected a dense or convolutional map, got {type(m).__name__}")
