"""``IsotropicConvNet``: isotropic convolutional networks (isoproof's own construction).

Maths (``docs/method.md`` §2, convolutions). Conv layers ``l = 0 .. n_conv-1`` (1-D or 2-D, any
kernel size, stride, padding, dilation; ``groups = 1``), then a flatten, hidden dense layers and the
output map::

    z_0 = K_0 * x + b_0
    z_l = K_l * u_{l-1} + b_l + psi_{l-1} * v_{l-1}          psi kernel [C_l, 1, *k_l], same
                                                             stride/padding/dilation as K_l
    a_l = g_l z_l,  g_l = s(N_l)/N_l,  N_l = sqrt(max(o_l + sum_c z_l[c]^2, eps^2))  per position
    u_l = pool_l(a_l),  v_l = pool_l(g_l)                    average pooling (or the identity)
    z_T = W_T flatten(u_last) + b_T + Psi flatten(v_last)    the transition: W_T [n, C * S],
                                                             Psi [n, S] (the psi matrix)

and from there on exactly the dense recursion of :class:`~isoproof.IsotropicMLP`. The gain map
``g_l`` has shape ``[B, 1, *spatial]``: one gain per position. A rotation of the channels acts at
every position alike, commutes with the activation (the norm runs over channels), with every
convolution's spatial structure and with average pooling, so every channel space is a symmetry
(exact: see ``proofs/convolution.py``). Max pooling is not equivariant (a per-channel max depends
on the basis) and is refused with :class:`~isoproof.exceptions.NotEquivariantError`.

Spec (``config()["layers"]``): a list of dicts, conv layers first::

    {"conv": C, "k": 3, "stride": 1, "padding": 0, "dilation": 1, "pool": 1}    (defaults shown)
    {"dense": n}

``k``, ``stride``, ``padding``, ``dilation`` and ``pool`` are ints (the same along every spatial
axis); ``pool = p >= 2`` adds a ``p``-wide average pooling with stride ``p`` after the layer's
activation. ``"pool_mode": "max"`` and ``"groups" != 1`` are refused.

Indexing shared with the MLP (:class:`~isoproof.network.IsotropicNet`): ``maps = convs + linears``;
space ``h`` is the output of ``maps[h]`` (channels for ``h < n_conv``); ``psi[i-1]`` belongs to
``maps[i]``; ``widths = [C_in, C_0, ..., n_out]``.

Example::

    >>> net = IsotropicConvNet([1, 8, 8], [{"conv": 4, "k": 3, "padding": 1, "pool": 2},
    ...                                    {"conv": 6, "k": 3}, {"dense": 5}], 3,
    ...                        dtype=torch.float64)
    >>> net.widths, net(torch.randn(2, 1, 8, 8, dtype=torch.float64)).shape
    ([1, 4, 6, 5, 3], torch.Size([2, 3]))
    >>> IsotropicConvNet.from_config(net.config()).config() == net.config()
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activations import IntrinsicLength, IsotropicActivation
from .diagonal import DiagonalConv, DiagonalLinear
from .exceptions import IsoproofError, NotEquivariantError, WidthError
from .io import register_format
from .mlp import INIT_MODES, Init, initialise_linear
from .network import IsotropicNet
from .psi import PsiMode, PsiVectors
from .radial import Radial, get_radial

__all__ = ["CONV_KEYS", "IsotropicConvNet"]

#: Keys of a conv layer spec and their defaults (``"conv"`` itself is required).
CONV_KEYS: dict[str, int] = {"k": 3, "stride": 1, "padding": 0, "dilation": 1, "pool": 1}

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_FN = {1: F.conv1d, 2: F.conv2d}
_POOL_FN = {1: F.avg_pool1d, 2: F.avg_pool2d}


class IsotropicConvNet(IsotropicNet):
    """Isotropic CNN with channel-wise activations, intrinsic lengths ``o`` and psi kernels.

    Args:
        input_shape: ``[C, L]`` (1-D signals) or ``[C, H, W]`` (images).
        layers: the layer specs of the module docstring (at least one conv layer).
        num_classes: the output width.
        radial, intrinsic_length, init_length, psi, psi_decay, init, eps, dtype, device,
            generator: as for :class:`~isoproof.IsotropicMLP` (``init="orthogonal"`` makes every
            kernel orthogonal as the matrix ``[C_out, C_in * prod(k)]``).

    Raises:
        NotEquivariantError: max pooling or a grouped convolution.
        WidthError / IsoproofError: invalid shapes, specs or modes ("expected X, got Y").
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        layers: Sequence[dict[str, Any]],
        num_classes: int,
        *,
        radial: str | Radial = "tanh",
        intrinsic_length: IntrinsicLength = "trainable",
        init_length: float = 1e-6,
        psi: PsiMode = "decay",
        psi_decay: float = 0.1,
        init: Init = "orthogonal",
        eps: float = 1e-3,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = _check_shape(input_shape)
        convs, dense = _check_layers(layers)
        num_classes = _check_width(num_classes, "num_classes")
        if init not in INIT_MODES:
            raise IsoproofError(f"expected init in {INIT_MODES}, got {init!r}")
        if not (math.isfinite(psi_decay) and psi_decay >= 0):
            raise IsoproofError(f"expected a finite psi_decay >= 0, got {psi_decay!r}")
        factory: dict[str, Any] = {"dtype": dtype, "device": device}
        dims = len(self.input_shape) - 1
        self.dims = dims
        self.radial = get_radial(radial)
        self.psi_decay = float(psi_decay)
        #: geometry of each conv layer (the channel count lives in the module)
        self.geometry: list[dict[str, int]] = [{k: spec[k] for k in CONV_KEYS} for spec in convs]
        self.spatial = _spatial_shapes(self.input_shape[1:], self.geometry)
        channels = [self.input_shape[0]] + [spec["conv"] for spec in convs]
        self.convs = nn.ModuleList(
            _CONV[dims](
                c_in, c_out, g["k"], stride=g["stride"], padding=g["padding"],
                dilation=g["dilation"], **factory,
            )
            for c_in, c_out, g in zip(channels, channels[1:], self.geometry, strict=False)
        )  # fmt: skip
        flat = channels[-1] * math.prod(self.spatial[-1])
        widths = [flat, *dense, num_classes]
        self.linears = nn.ModuleList(
            nn.Linear(a, b, **factory) for a, b in itertools.pairwise(widths)
        )
        n_act = len(convs) + len(dense)
        self.activations = nn.ModuleList(
            IsotropicActivation(
                self.radial,
                intrinsic_length=intrinsic_length,
                init_length=init_length,
                dim=1 if i < len(convs) else -1,
                eps=eps,
                **factory,
            )
            for i in range(n_act)
        )
        self.psi = PsiVectors(self._psi_shapes(), psi, **factory)
        for m in self.maps:
            initialise_linear(m, init, generator=generator)

    # ----------------------------------------------------------------- structure
    @property
    def maps(self) -> list[nn.Module]:
        """``convs + linears``: ``maps[h]`` produces space ``h``."""
        return [*self.convs, *self.linears]

    def set_map(self, i: int, module: nn.Module) -> None:
        n = len(self.convs)
        if i < n:
            self.convs[i] = module
        else:
            self.linears[i - n] = module

    @property
    def num_conv(self) -> int:  # type: ignore[override]
        """The number of conv layers (spaces ``0 .. num_conv-1`` are channel spaces)."""
        return len(self.convs)

    @property
    def flat_positions(self) -> int:
        """``S``: the number of positions the flatten sees (after the last pooling)."""
        return math.prod(self.spatial[-1])

    def map_shape(self, i: int) -> tuple[int, ...]:
        """The shape of ``maps[i]`` as the operations see it: axis 0 its output space, axis 1 its
        input space. Conv ``[C_out, C_in, *k]``; the transition ``[n, C, *spatial]``; dense
        ``[out, in]``."""
        m = self.maps[i]
        if i < self.num_conv:
            return (m.out_channels, m.in_channels, *(self.geometry[i]["k"],) * self.dims)
        if i == self.num_conv:
            return (m.out_features, self.convs[-1].out_channels, *self.spatial[-1])
        return (m.out_features, m.in_features)

    def _psi_shapes(self) -> list[tuple[int, ...]]:
        """``psi[i-1]`` of ``maps[i]``: ``map_shape(i)`` with its input axis 1 set to one channel
        (conv: the psi kernel ``[C, 1, *k]``; transition ``[n, S]``; dense ``[n]``)."""
        shapes: list[tuple[int, ...]] = []
        for i in range(1, self.num_layers):
            s = self.map_shape(i)
            if i < self.num_conv:
                shapes.append((s[0], 1, *s[2:]))
            elif i == self.num_conv:
                shapes.append((s[0], self.flat_positions))
            else:
                shapes.append((s[0],))
        return shapes

    def config(self) -> dict[str, Any]:
        """The spec of the module docstring with current widths (used by :mod:`isoproof.io`)."""
        layers: list[dict[str, Any]] = [
            {"conv": int(c.out_channels), **g}
            for c, g in zip(self.convs, self.geometry, strict=True)
        ]
        layers += [{"dense": int(lin.out_features)} for lin in list(self.linears)[:-1]]
        return {
            "input_shape": list(self.input_shape),
            "layers": layers,
            "num_classes": int(self.linears[-1].out_features),
            **self.shared_config(),
        }

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        *,
        device: torch.device | str | None = None,
        init: Init = "kaiming",
    ) -> IsotropicConvNet:
        """Build the architecture that :meth:`config` describes (weights freshly initialised).

        Raises:
            IsoproofError: a missing key or an invalid value (naming it).
        """
        return cls.build_from_config(  # type: ignore[no-any-return]
            config, ("input_shape", "layers", "num_classes"), device=device, init=init
        )

    def make_map(
        self, i: int, shape: Sequence[int], *, diagonal: bool = False, device: Any = None
    ) -> nn.Module:
        """A fresh module for ``maps[i]`` with the operations' ``shape`` (``map_shape``):
        ``ConvNd`` / ``DiagonalConv`` (1x1 only) for a conv layer, ``nn.Linear`` /
        ``DiagonalLinear`` otherwise (the transition flattens ``[n, C, *spatial]``); on
        ``device``, by default the model's."""
        factory: dict[str, Any] = {"dtype": self.dtype, "device": device or self.device}
        c_out, c_in = int(shape[0]), int(shape[1])
        if diagonal and math.prod(shape[2:]) != 1:
            raise IsoproofError(f"expected a 1x1 kernel for a diagonal map, got {list(shape)}")
        if i >= self.num_conv:
            if diagonal:
                return DiagonalLinear(c_in, c_out, **factory)
            return nn.Linear(c_in * math.prod(shape[2:]), c_out, **factory)
        g = self.geometry[i]
        if diagonal:
            return DiagonalConv(
                c_in, c_out, dims=self.dims, stride=g["stride"], padding=g["padding"], **factory
            )
        return _CONV[self.dims](
            c_in, c_out, g["k"], stride=g["stride"], padding=g["padding"],
            dilation=g["dilation"], **factory,
        )  # fmt: skip

    def taps(self, i: int) -> int:
        return self.geometry[i]["k"] ** self.dims if i < self.num_conv else 1

    def positions(self, h: int) -> int:
        return math.prod(self.spatial[h]) if h < self.num_conv else 1

    def pool_norm(self, h: int) -> float:
        """``p^(-d/2)`` after a ``p``-wide average pooling (non-overlapping windows: by
        Cauchy-Schwarz ``|mean of m numbers|^2 <= (sum of their squares) / m``), else 1."""
        if h < self.num_conv and self.geometry[h]["pool"] > 1:
            return float(self.geometry[h]["pool"] ** (-self.dims / 2))
        return 1.0

    def sample_norms(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample Frobenius norm of a field ``[B, ...]`` (over channels and positions)."""
        return t.flatten(1).norm(dim=1)

    # ----------------------------------------------------------------- forward
    @property
    def in_features(self) -> int:
        """``prod(input_shape)``: the width of a flat input row (see :meth:`forward`)."""
        return self.convs[0].in_channels * math.prod(self.input_shape[1:])

    def sample_shapes(self) -> tuple[tuple[int, ...], ...]:
        """``(C, *spatial)`` (a field) and ``(prod(input_shape),)`` (a flat dataset row)."""
        return ((self.convs[0].in_channels, *self.input_shape[1:]), (self.in_features,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``[B, *input_shape]``, or flat ``[B, prod(input_shape)]`` (the rows of
        an :class:`isoproof.data.Dataset`, reshaped channel-first) -> logits ``[B, n_out]``."""
        return self._run(x)

    def _run(
        self, x: torch.Tensor, states: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """The recursion; appends ``(u_l, v_l)`` (the next map's inputs) per hidden space."""
        want, flat = self.sample_shapes()
        if x.dim() == 2 and tuple(x.shape[1:]) == flat:
            x = x.reshape(x.shape[0], *want)
        if x.dim() != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise WidthError(f"expected input of shape [B, {', '.join(map(str, want))}] or "
                             f"[B, {self.in_features}], got {list(x.shape)}")  # fmt: skip
        use_psi = self.psi_mode != "none"
        u, v = x, None
        for i, conv in enumerate(self.convs):
            z = conv(u)
            if use_psi and v is not None:
                g = self.geometry[i]
                z = z + _CONV_FN[self.dims](
                    v, self.psi[i - 1], stride=g["stride"], padding=g["padding"],
                    dilation=g["dilation"],
                )  # fmt: skip
            u, v = self.activations[i].forward_with_gain(z)
            p = self.geometry[i]["pool"]
            if p > 1:
                u, v = _POOL_FN[self.dims](u, p), _POOL_FN[self.dims](v, p)
            if states is not None:
                states.append((u, v))
        n = self.num_conv
        z = self.linears[0](u.flatten(1))
        if use_psi and v is not None:
            z = z + v.flatten(1) @ self.psi[n - 1].T
        for j in range(1, len(self.linears)):
            a, g = self.activations[n + j - 1].forward_with_gain(z)
            if states is not None:
                states.append((a, g))
            z = self.linears[j](a)
            if use_psi:
                z = z + self.psi[n + j - 1] * g
        return z

    @torch.no_grad()
    def hidden_states(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(u_l, v_l), ...]`` per hidden space: the activation and gain map that the next map
        reads (after pooling for conv layers; ``v_l`` is ``[B, 1, *spatial]`` or ``[B, 1]``)."""
        states: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._run(x, states)
        return states

    def extra_repr(self) -> str:
        return (
            f"input_shape={list(self.input_shape)}, widths={self.widths}, "
            f"radial={self.radial.spec!r}, intrinsic_length={self.intrinsic_length!r}, "
            f"psi={self.psi_mode!r}"
        )


# ----------------------------------------------------------------------- validation
def _check_width(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WidthError(f"expected {what} to be an int >= 1, got {value!r}")
    return value


def _check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(shape)
    except TypeError:
        raise WidthError(f"expected input_shape [C, L] or [C, H, W], got {shape!r}") from None
    if len(out) not in (2, 3):
        raise WidthError(f"expected input_shape [C, L] or [C, H, W], got {list(out)}")
    for v in out:
        _check_width(v, "every input_shape entry")
    return out


def _check_layers(
    layers: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, int]], list[int]]:
    """Normalised conv specs (every key of :data:`CONV_KEYS` present) and the dense widths."""
    if isinstance(layers, str | bytes | dict) or not isinstance(layers, Sequence):
        raise IsoproofError(f"expected a list of layer specs, got {layers!r}")
    convs: list[dict[str, int]] = []
    dense: list[int] = []
    for i, spec in enumerate(layers):
        if not isinstance(spec, dict):
            raise IsoproofError(f"expected layer {i} to be a dict spec, got {spec!r}")
        if "dense" in spec:
            if set(spec) != {"dense"}:
                raise IsoproofError(f"expected layer {i} to be {{'dense': n}}, got {spec!r}")
            dense.append(_check_width(spec["dense"], f"layer {i} 'dense'"))
            continue
        if "conv" not in spec:
            raise IsoproofError(f"expected layer {i} to have a 'conv' or 'dense' key, got {spec!r}")
        if dense:
            raise IsoproofError(f"expected conv layers before dense ones, got conv layer {i} after")
        convs.append(_check_conv(i, spec))
    if not convs:
        raise IsoproofError(f"expected at least one conv layer, got {list(layers)!r}")
    return convs, dense


def _check_conv(i: int, spec: dict[str, Any]) -> dict[str, int]:
    spec = dict(spec)
    if spec.pop("pool_mode", "avg") != "avg":
        raise NotEquivariantError(
            f"expected average pooling at layer {i}, got max pooling: a per-channel max depends "
            "on the channel basis, so channel rotations would no longer be symmetries"
        )
    if spec.pop("groups", 1) != 1:
        raise NotEquivariantError(
            f"expected groups=1 at layer {i}, got {spec!r}: a grouped convolution does not "
            "commute with rotations that mix channel groups"
        )
    unknown = set(spec) - {"conv", *CONV_KEYS}
    if unknown:
        raise IsoproofError(
            f"expected keys among conv, {', '.join(CONV_KEYS)}, got {sorted(unknown)}"
        )
    out = {"conv": _check_width(spec["conv"], f"layer {i} 'conv'")}
    for key, default in CONV_KEYS.items():
        value = spec.get(key, default)
        lo = 0 if key == "padding" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise IsoproofError(f"expected layer {i} '{key}' to be an int >= {lo}, got {value!r}")
        out[key] = value
    return out


def _spatial_shapes(
    size: Sequence[int], geometry: Sequence[dict[str, int]]
) -> list[tuple[int, ...]]:
    """Spatial shape after each conv layer (and its pooling); raises if one becomes empty."""
    shapes: list[tuple[int, ...]] = []
    cur = tuple(size)
    for i, g in enumerate(geometry):
        reach = g["dilation"] * (g["k"] - 1) + 1
        conv = tuple((n + 2 * g["padding"] - reach) // g["stride"] + 1 for n in cur)
        nxt = tuple(n // g["pool"] for n in conv)
        if min(conv) < 1 or min(nxt) < 1:
            raise WidthError(
                f"expected a non-empty output at conv layer {i} for input size {list(cur)}, got "
                f"{list(conv)} after the conv and {list(nxt)} after pooling"
            )
        shapes.append(nxt)
        cur = nxt
    return shapes


register_format("isoproof.IsotropicConvNet/1", IsotropicConvNet)
