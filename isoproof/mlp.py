"""``IsotropicMLP``: the generalised isotropic perceptron.

Maths (``docs/method.md`` §2), widths ``[n0, ..., nL]``, ``L`` affine maps::

    z_0 = W_0 x + b_0
    z_l = W_l a_{l-1} + b_l + psi_{l-1} * g_{l-1}      (1 <= l <= L-1, output layer included)
    a_l = g_l * z_l,   g_l = s(N_l) / N_l,   N_l = sqrt(max(o_l + |z_l|^2, eps^2))

and the output is ``z_{L-1}``. ``psi[l-1]`` here is the note's ``psi_l`` (the vector added to the
pre-activation of ``linears[l]``). The plain isotropic MLP is the member with ``o = 0, psi = 0``.

Indexing used by every operation: *hidden layer* ``h`` (``0 <= h <= L-2``) is the output space of
``linears[h]``, of width ``widths[h + 1]``, and feeds ``activations[h]`` and ``linears[h + 1]``.

Shapes: input ``[..., n0]``, output ``[..., nL]``.

Example (the plain MLP is a special case)::

    >>> m = IsotropicMLP([4, 8, 3], intrinsic_length="none", psi="none", dtype=torch.float64)
    >>> x = torch.randn(5, 4, dtype=torch.float64)
    >>> h = m.linears[0](x)
    >>> n = h.norm(dim=-1, keepdim=True)
    >>> torch.allclose(m(x), m.linears[1](torch.tanh(n) / n * h))
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _hooks

from .activations import IntrinsicLength, IsotropicActivation
from .exceptions import IsoproofError, WidthError
from .network import IsotropicNet, count_parameters
from .psi import PsiMode, PsiVectors
from .radial import Radial, get_radial

__all__ = ["INIT_MODES", "IsotropicMLP", "count_parameters", "initialise_linear"]

INIT_MODES: tuple[str, ...] = ("orthogonal", "kaiming")
Init = Literal["orthogonal", "kaiming"]


class IsotropicMLP(IsotropicNet):
    """Isotropic MLP with intrinsic lengths ``o`` and psi corrections.

    Args:
        widths: ``[n0, n1, ..., nL]``, at least two entries, each >= 1.
        radial: radial profile of every activation (see :mod:`isoproof.radial`).
        intrinsic_length: ``"trainable"`` | ``"constant"`` | ``"none"`` (see
            :class:`IsotropicActivation`).
        init_length: initial ``o`` (1e-6 as in the paper).
        psi: ``"decay"`` | ``"trainable"`` | ``"constant"`` | ``"none"`` (see :mod:`isoproof.psi`).
        psi_decay: weight of the L2 penalty ``psi_decay * sum |psi|^2`` in ``"decay"`` mode.
        init: ``"orthogonal"`` (the paper: orthogonal weights, zero biases) or ``"kaiming"``
            (PyTorch's ``nn.Linear`` default).
        eps: lower clamp of the activation norm.
        generator: optional ``torch.Generator`` for the initialisation.
    """

    def __init__(
        self,
        widths: Sequence[int],
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
        widths = _check_widths(widths)
        if init not in INIT_MODES:
            raise IsoproofError(f"expected init in {INIT_MODES}, got {init!r}")
        if not (math.isfinite(psi_decay) and psi_decay >= 0):
            raise IsoproofError(f"expected a finite psi_decay >= 0, got {psi_decay!r}")
        factory: dict[str, Any] = {"dtype": dtype, "device": device}
        self.radial = get_radial(radial)
        self.psi_decay = float(psi_decay)
        self.linears = nn.ModuleList(
            nn.Linear(a, b, **factory) for a, b in itertools.pairwise(widths)
        )
        self.activations = nn.ModuleList(
            IsotropicActivation(
                self.radial,
                intrinsic_length=intrinsic_length,
                init_length=init_length,
                eps=eps,
                **factory,
            )
            for _ in widths[1:-1]
        )
        self.psi = PsiVectors(widths[2:], psi, **factory)
        self._export_psi: list[torch.Tensor | None] | None = None  # set inside export_mode
        # Mean gain per hidden layer, recorded for expectation-mode pruning (psi="none").
        self.register_buffer("gain_means", torch.full((len(widths) - 2,), math.nan, **factory))
        self._init_weights(init, generator)

    # ----------------------------------------------------------------- construction
    def _init_weights(self, init: Init, generator: torch.Generator | None) -> None:
        for lin in self.linears:
            initialise_linear(lin, init, generator=generator)

    @property
    def maps(self) -> list[nn.Module]:
        """The affine maps ``linears[0 .. L-1]`` (see :class:`~isoproof.network.IsotropicNet`)."""
        return list(self.linears)

    def set_map(self, i: int, module: nn.Module) -> None:
        self.linears[i] = module

    @property
    def widths(self) -> list[int]:
        """``[n0, ..., nL]``, always current (derived from the affine maps)."""
        return [self.linears[0].in_features] + [int(lin.out_features) for lin in self.linears]

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the architecture (used by :mod:`isoproof.io`)."""
        return {"widths": self.widths, **self.shared_config()}

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        *,
        device: torch.device | str | None = None,
        init: Init = "kaiming",
    ) -> IsotropicMLP:
        """Build the architecture that :meth:`config` describes (weights freshly initialised).

        ``init="kaiming"`` by default: it is cheap (no QR), for callers such as
        :func:`isoproof.load` that overwrite every tensor afterwards.

        Raises:
            IsoproofError: a missing key or an invalid value (``KeyError``/``TypeError`` are
                reported as such, naming the key).

        Example::

            >>> m = IsotropicMLP([4, 6, 6, 3], dtype=torch.float64)
            >>> IsotropicMLP.from_config(m.config()).config() == m.config()
            True
        """
        return cls.build_from_config(config, ("widths",), device=device, init=init)  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``[..., n0]`` -> logits ``[..., nL]``."""
        # the hot path: submodules straight from ``_modules`` (``nn.Module.__getattr__`` costs
        # ~0.6 us a lookup, a sizeable share of a batch-1 forward)
        n_in = self._modules["linears"]._modules["0"].in_features
        if x.shape[-1:] != (n_in,):
            raise WidthError(
                f"expected input with last dimension {n_in}, got shape {tuple(x.shape)}"
            )
        if self.training and self._modules["psi"].mode == "none" and len(self.activations) > 0:
            states: list[tuple[torch.Tensor, torch.Tensor]] = []
            z = self._run(x, states)
            self._track_gains(torch.stack([g.detach().mean() for _, g in states]))
            return z
        return self._run(x)

    def _run(
        self, x: torch.Tensor, states: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """The forward recursion; appends ``(a_l, g_l)`` of each hidden layer to ``states``.

        This is the hot path: modules are iterated directly (no per-layer index lookups), and the
        psi term is skipped when the mode has none or, in :func:`export_mode`, when the vector is
        exactly zero (adding zero changes nothing, so the output is identical).
        """
        modules = self._modules
        lins = iter(modules["linears"]._modules.values())
        z = _apply(next(lins), x)
        psis = self._export_psi if self._export_psi is not None else modules["psi"].terms()
        for lin, act, psi in zip(lins, modules["activations"]._modules.values(), psis, strict=True):
            a, g = act.forward_with_gain(z)
            if states is not None:
                states.append((a, g))
            z = _apply(lin, a)
            if psi is not None:
                z = torch.addcmul(z, psi, g)  # z + psi * g in one op
        return z

    def _export_mode_changed(self, plain: bool) -> None:
        """Called by :func:`~isoproof.export_mode`: on entry, freeze which psi terms are exactly
        zero, so the exported graph has no node for them (adding zero changes nothing)."""
        terms = self.psi.terms()
        self._export_psi = [t if t is not None and bool(t.detach().any()) else None for t in terms]
        if not plain:
            self._export_psi = None

    def _track_gains(self, means: torch.Tensor, momentum: float = 0.1) -> None:
        with torch.no_grad():
            fresh = torch.isnan(self.gain_means)
            blended = (1 - momentum) * self.gain_means + momentum * means.to(self.gain_means)
            self.gain_means.copy_(torch.where(fresh, means.to(self.gain_means), blended))

    @torch.no_grad()
    def hidden_states(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(a_l, g_l), ...]`` per hidden layer for the batch ``x`` (``g_l`` is ``[..., 1]``)."""
        states: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._run(x, states)
        return states

    def gains(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-layer gains ``g_l`` (each ``[..., 1]``) for a batch ``x``."""
        return [g for _, g in self.hidden_states(x)]

    @torch.no_grad()
    def record_gains(self, x: torch.Tensor) -> None:
        """Set :attr:`gain_means` to the mean gain of each hidden layer over the batch ``x``."""
        if len(self.activations):
            means = torch.stack([g.mean() for g in self.gains(x)])
            self.gain_means.copy_(means.to(self.gain_means))

    def extra_repr(self) -> str:
        return (
            f"widths={self.widths}, radial={self.radial.spec!r}, "
            f"intrinsic_length={self.intrinsic_length!r}, psi={self.psi_mode!r}"
        )


def _apply(lin: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``lin(x)``; for a plain ``nn.Linear`` with no hook anywhere and no JIT tracing, straight
    ``F.linear`` (the checks ``nn.Module.__call__`` makes, without its ~2 us of dispatch: a
    sizeable share of a batch-1 forward). Anything else (subclasses, parametrisations, pruning
    hooks, forward/backward hooks, global hooks, tracing) takes the ordinary call."""
    if (
        type(lin) is nn.Linear
        and not (
            lin._forward_hooks
            or lin._forward_pre_hooks
            or lin._backward_hooks
            or lin._backward_pre_hooks
            or _hooks._global_forward_hooks
            or _hooks._global_forward_pre_hooks
            or _hooks._global_backward_hooks
            or _hooks._global_backward_pre_hooks
        )
        and torch._C._get_tracing_state() is None
    ):
        params = lin._parameters
        return F.linear(x, params["weight"], params["bias"])
    return lin(x)  # type: ignore[no-any-return]


def initialise_linear(
    lin: nn.Module, init: str = "orthogonal", *, generator: torch.Generator | None = None
) -> nn.Module:
    """``"orthogonal"`` (the paper: orthogonal weight, zero bias) or ``"kaiming"`` (PyTorch's
    ``nn.Linear``/``nn.ConvNd`` default), in place. A conv kernel ``[C_out, C_in, *k]`` is
    orthogonal as the matrix ``[C_out, C_in * prod(k)]``.

    The orthogonal factor is computed in float32 (float64 for float64 weights) and then cast, so
    float16/bfloat16 layers work (their QR is not implemented on CPU)."""
    if init not in INIT_MODES:
        raise IsoproofError(f"expected init in {INIT_MODES}, got {init!r}")
    with torch.no_grad():
        if init == "orthogonal":
            w = lin.weight
            if w.dtype in (torch.float16, torch.bfloat16):
                w = torch.empty(w.shape, dtype=torch.float32, device=w.device)
            nn.init.orthogonal_(w, generator=generator)
            if w is not lin.weight:
                lin.weight.copy_(w)
            lin.bias.zero_()
        else:
            nn.init.kaiming_uniform_(lin.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(lin.weight[0].numel())  # fan-in (dense or conv)
            nn.init.uniform_(lin.bias, -bound, bound, generator=generator)
    return lin


def _check_widths(widths: Sequence[int]) -> list[int]:
    try:
        out = [int(w) for w in widths]
    except (TypeError, ValueError):
        raise WidthError(f"expected a sequence of ints, got {widths!r}") from None
    if len(out) < 2:
        raise WidthError(f"expected at least 2 widths (input and output), got {out}")
    if any(w < 1 or w != orig for w, orig in zip(out, widths, strict=True)):
        raise WidthError(f"expected every width to be an int >= 1, got {list(widths)}")
    return out
