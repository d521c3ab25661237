"""The isotropic activation ``f(z) = g(N) z``.

Maths (``docs/method.md`` §1)::

    N(z; o) = sqrt(max(o + sum_i z_i^2, eps^2)),      g(N) = s(N) / N,      f(z) = g(N) z

``s`` is the radial profile (:mod:`isoproof.radial`), ``o >= 0`` the *intrinsic length* (squared
form: it enters the norm like the square of one extra, constant coordinate). Because ``N`` only
depends on ``|z|``, ``f(Q z) = Q f(z)`` for every orthogonal ``Q``: the activation has no preferred
basis, so a layer can be rotated freely (exact: see ``proofs/equivariance.py``).

Shapes: ``z`` is ``[..., n]`` with ``dim=-1`` (MLPs) or ``[B, C, H, W]`` with ``dim=1``
(convolutions: the norm runs over channels at each pixel); ``g`` keeps the reduced axis with size 1.

Numerics. The ``eps`` clamp makes ``f`` and its gradient finite at ``z = 0`` (it is exact to
``O(eps^2)``: ``g`` is evaluated at ``N = eps`` instead of ``N -> 0``). The norm is computed
after dividing by ``m = max(max_i |z_i|, 1)`` (``m`` held constant for autograd, which is exact
since the value does not depend on ``m``), in float32 at least and in float64 when
``max|z| >= 1e30``, so neither ``|z|^2`` nor ``N`` can overflow, even for inputs near the dtype's
largest finite value. Inside :func:`export_mode` the plain form ``(z * z) @ ones`` is used
instead: it exports to ``Mul`` + ``MatMul`` (dense) or ``Mul`` + a ones-kernel 1x1 ``Conv``
(channels), which the mobile execution providers support.

Example (the invariant, checked)::

    >>> act = IsotropicActivation("tanh", intrinsic_length="constant", init_length=0.3)
    >>> z = torch.randn(5, 4, dtype=torch.float64)
    >>> Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    >>> torch.allclose(act(z @ Q.T), act(z) @ Q.T, atol=1e-12)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .exceptions import IsoproofError
from .radial import Radial, get_radial

__all__ = ["INTRINSIC_LENGTH_MODES", "IntrinsicLength", "IsotropicActivation", "export_mode"]

IntrinsicLength = Literal["trainable", "constant", "none"]
INTRINSIC_LENGTH_MODES: tuple[str, ...] = ("trainable", "constant", "none")


class IsotropicActivation(nn.Module):
    """Isotropic activation ``f(z) = s(N)/N * z`` with an optional intrinsic length ``o``.

    Args:
        radial: name of the radial profile (``"tanh"``, ``"softsign"``, ``"log1p"``,
            ``"shifted_relu"`` or ``"shifted_relu:R"``) or a :class:`~isoproof.radial.Radial`.
        intrinsic_length: ``"trainable"`` (stores ``log o`` as a parameter, so ``o > 0``),
            ``"constant"`` (a buffer changed only by structural operations) or ``"none"`` (o = 0).
        init_length: initial ``o`` (the paper uses 1e-6).
        dim: the axis holding the layer's neurons (-1 for MLPs, 1 for ``[B, C, H, W]``).
        eps: lower clamp of ``N``.
    """

    def __init__(
        self,
        radial: str | Radial = "tanh",
        *,
        intrinsic_length: IntrinsicLength = "trainable",
        init_length: float = 1e-6,
        dim: int = -1,
        eps: float = 1e-3,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.radial = get_radial(radial)
        if intrinsic_length not in INTRINSIC_LENGTH_MODES:
            raise IsoproofError(
                f"expected intrinsic_length in {INTRINSIC_LENGTH_MODES}, got {intrinsic_length!r}"
            )
        if not (isinstance(eps, float | int) and math.isfinite(eps) and eps > 0):
            raise IsoproofError(f"expected a finite eps > 0, got {eps!r}")
        if not isinstance(dim, int):
            raise IsoproofError(f"expected an int dim, got {type(dim).__name__}")
        self.intrinsic_length: IntrinsicLength = intrinsic_length
        self.dim = dim
        self.eps = float(eps)
        self.plain = False  # set by export_mode()
        self._plain_o_is_zero = False  # set by export_mode()
        factory = {"dtype": dtype, "device": device}
        if intrinsic_length == "trainable":
            if not (math.isfinite(init_length) and init_length > 0):
                raise IsoproofError(
                    "expected init_length > 0 for a trainable intrinsic length (stored as log o), "
                    f"got {init_length!r}"
                )
            self.log_o = nn.Parameter(torch.tensor(math.log(init_length), **factory))
        elif intrinsic_length == "constant":
            if not (math.isfinite(init_length) and init_length >= 0):
                raise IsoproofError(f"expected a finite init_length >= 0, got {init_length!r}")
            self.register_buffer("o_const", torch.tensor(float(init_length), **factory))

    @property
    def o(self) -> torch.Tensor:
        """The intrinsic length ``o`` (squared form) as a 0-d tensor."""
        if self.intrinsic_length == "trainable":
            return self.log_o.exp()
        if self.intrinsic_length == "constant":
            return self.o_const
        return torch.zeros((), dtype=self._dtype(), device=self._device())

    def set_o(self, value: float | torch.Tensor) -> None:
        """Set ``o`` in place (used by neurodegeneration); ``o >= 0``, ``o > 0`` if trainable."""
        value = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)
        if self.intrinsic_length == "none":
            if value != 0.0:
                raise IsoproofError(f"expected o = 0 for intrinsic_length='none', got {value}")
            return
        if not math.isfinite(value) or value < 0:
            raise IsoproofError(f"expected a finite o >= 0, got {value}")
        with torch.no_grad():
            if self.intrinsic_length == "trainable":
                if value <= 0:
                    raise IsoproofError(
                        f"expected o > 0 for a trainable intrinsic length, got {value}"
                    )
                self.log_o.fill_(math.log(value))
            else:
                self.o_const.fill_(value)

    def _dtype(self) -> torch.dtype:
        for t in (*self.parameters(), *self.buffers()):
            return t.dtype
        return torch.get_default_dtype()

    def _device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    def norm(self, z: torch.Tensor) -> torch.Tensor:
        """``N = sqrt(max(o + |z|^2, eps^2))`` with the reduced axis kept.

        Fast path (almost every call, :meth:`_fast_norm`): ``|z|`` by one ``vector_norm`` (in
        float32 at least), then ``N = max(hypot(|z|, sqrt(o)), eps)``. Only when ``|z|`` is not
        finite in that precision (``|z| > ~1e19`` in float32) or ``N >= HUGE_NORM`` does the
        overflow-safe path run (:meth:`robust_norm`). In :func:`export_mode`, the plain form in
        ``z``'s dtype.
        """
        if self.plain:
            squares = _sum_of_squares(z, self.dim)
            if not self._plain_o_is_zero:  # decided on entering export_mode: no node for o = 0
                squares = self.o.to(device=z.device, dtype=z.dtype) + squares
            return torch.sqrt(torch.clamp_min(squares, self.eps**2))
        fast = self._fast_norm(z)
        return self.robust_norm(z) if fast is None else fast

    def _fast_norm(self, z: torch.Tensor) -> torch.Tensor | None:
        """``N`` by ``vector_norm`` + ``hypot`` (one sync), or ``None`` where it would not be exact
        to rounding (``|z|`` overflows the accumulator, or ``N >= HUGE_NORM``)."""
        dtype = z.dtype
        if dtype is torch.float32 or dtype is torch.float64:
            n = torch.linalg.vector_norm(z, dim=self.dim, keepdim=True)
        else:  # half precisions accumulate in float32
            n = torch.linalg.vector_norm(z, dim=self.dim, keepdim=True, dtype=torch.float32)
        size = n.numel()
        if size:  # one element (batch 1): the sync needs no reduction
            top = n if size == 1 else (n.detach() if n.requires_grad else n).amax()
            if not float(top) < HUGE_NORM:
                return None
        root = None if self.intrinsic_length == "none" else self._sqrt_o()
        if root is not None and root.dtype != n.dtype:
            root = root.to(n.dtype)
        if n.requires_grad or (root is not None and root.requires_grad):
            n = n if root is None else torch.hypot(n, root)
            return torch.clamp_min(n, self.eps)
        # no graph to keep: in place on the fresh norm (two allocations less at batch 1)
        return (n if root is None else n.hypot_(root)).clamp_min_(self.eps)

    def _sqrt_o(self) -> torch.Tensor:
        """``sqrt(o)`` as a 0-d tensor. With a graph to build (a trainable ``o`` under autograd)
        by two ops on the parameter; otherwise reused while ``o`` keeps its value: the value is
        read (one scalar sync) and compared, never trusted to a version counter, so even a write
        through ``.data`` is seen. The tensors come straight from ``_parameters``/``_buffers``
        (``nn.Module.__getattr__`` costs more than either op at batch 1)."""
        if self.intrinsic_length == "trainable":
            p = self._parameters["log_o"]
            if p.requires_grad and torch.is_grad_enabled():  # type: ignore[union-attr]
                return p.exp().sqrt()  # type: ignore[union-attr]
        else:
            p = self._buffers["o_const"]
        if p.device.type != "cpu":  # reading the value would sync the device on every call
            with torch.no_grad():
                return p.exp().sqrt() if self.intrinsic_length == "trainable" else p.sqrt()  # type: ignore[union-attr]
        key = (float(p), p.dtype, p.device)  # type: ignore[arg-type,union-attr]
        cached = self.__dict__.get("_root")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                root = p.exp().sqrt() if self.intrinsic_length == "trainable" else p.sqrt()  # type: ignore[union-attr]
            cached = self.__dict__["_root"] = (key, root)
        return cached[1]  # type: ignore[no-any-return]

    def robust_norm(self, z: torch.Tensor) -> torch.Tensor:
        """The overflow-safe ``N``: computed after scaling by ``m = max|z|``, in float32 at least
        and in float64 when ``N`` could exceed float32's range, so ``|z|^2`` cannot overflow
        (``N`` itself is ``inf`` only when ``|z|`` exceeds float64's range:
        :meth:`forward_with_gain` never forms it then)."""
        m, t = self._scaled_norm(z)
        return m * t

    def _scaled_norm(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m, t)`` with ``N = m * t``, ``m = max(max_i |z_i|, 1)`` (a constant for
        autograd: ``N`` does not depend on it, so the gradient stays exact)."""
        m = z.detach().abs().amax(dim=self.dim, keepdim=True)
        largest = float(m.max()) if m.numel() else 0.0
        acc = _accumulator(z.dtype, largest)
        zz = z.to(acc)
        o = self.o.to(device=z.device, dtype=acc)
        m = m.to(acc).clamp_min(1.0)
        u = zz / m
        q = (u * u).sum(dim=self.dim, keepdim=True) + o / (m * m)
        return m, torch.sqrt(torch.clamp_min(q, (self.eps / m) ** 2))

    def forward_with_gain(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(f(z), g)``; ``g`` has the neuron axis kept with size 1."""
        if z.dim() == 0:
            raise IsoproofError("expected a tensor with a neuron axis, got a 0-d tensor")
        N = self.norm(z)
        if (  # float64 only (a float32 N cannot reach HUGE_NORM): one more check there
            N.dtype == torch.float64
            and not self.plain
            and N.numel()
            and float(N.detach().max()) >= HUGE_NORM
        ):
            m, t = self._scaled_norm(z)  # N = m * t may exceed float64's range
            a, g = overflow_safe_forward(self.radial, z, m, t)
            return a.to(z.dtype), g.to(z.dtype)
        g = self.radial.gain(N)
        if g.dtype == z.dtype:
            return g * z, g
        return (g * z.to(g.dtype)).to(z.dtype), g.to(z.dtype)

    def gain(self, z: torch.Tensor) -> torch.Tensor:
        """The per-sample gain ``g = s(N)/N`` (reduced axis kept, size 1)."""
        return self.forward_with_gain(z)[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_with_gain(z)[0]

    def extra_repr(self) -> str:
        return (
            f"radial={self.radial.spec!r}, intrinsic_length={self.intrinsic_length!r}, "
            f"dim={self.dim}, eps={self.eps:g}"
        )


HUGE_NORM = 1e300
"""From ``N >= HUGE_NORM`` on, :func:`overflow_safe_forward` is used (float64 norms only)."""


def overflow_safe_forward(
    radial: Radial, z: torch.Tensor, m: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(z), g)`` for ``N = m * t`` without forming ``N`` or ``sum(z)`` where
    ``m >= HUGE_NORM`` (float64 inputs near their largest value).

    There ``f(z) = (m g) (z / m)`` with ``m g`` from
    :meth:`~isoproof.radial.Radial.scaled_gain` (exact to rounding for ``N >= 1e300``): every
    factor, and every factor of the gradient, is ``O(1)``. The other rows use the ordinary
    ``g(N) z``. Each branch is finite where it is not selected, so no NaN reaches the gradient.
    This is why outputs and gradients stay finite for ``|z|`` up to float64's largest value
    (they were NaN at ``|z| = 1.7e308 * sqrt(2)``: ``N`` overflowed).
    """
    huge = m >= HUGE_NORM
    one = torch.ones_like(t)
    g_ord = radial.gain(torch.where(huge, one, m * t))
    m_huge = torch.where(huge, m, HUGE_NORM * one)
    mg = radial.scaled_gain(m_huge, t)
    zz = z.to(t.dtype)
    a = torch.where(huge, mg * (zz / m_huge), g_ord * torch.where(huge, 0 * zz, zz))
    return a, torch.where(huge, mg / m_huge, g_ord)


def _accumulator(dtype: torch.dtype, largest: float) -> torch.dtype:
    """float64 for float64 inputs and whenever ``N <= sqrt(n) * largest`` could overflow float32
    (``largest >= 1e30``: only bfloat16/float32 inputs near their limit); float32 otherwise."""
    if dtype == torch.float64 or not largest < 1e30:
        return torch.float64
    return torch.float32


def _sum_of_squares(z: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum(z*z)`` over ``dim`` (kept): a MatMul with a ones column when ``dim`` is last; over the
    channels of ``[B, C, L]`` / ``[B, C, H, W]`` a 1x1 convolution with a ones kernel
    ``[1, C, 1(, 1)]`` (ONNX ``Conv``: NNAPI and CoreML run it, they lack ``ReduceSum``)."""
    if dim in (-1, z.dim() - 1):
        ones = torch.ones(z.shape[-1], 1, dtype=z.dtype, device=z.device)
        return (z * z) @ ones
    if dim == 1 and z.dim() in (3, 4):
        ones = torch.ones(1, z.shape[1], *(1,) * (z.dim() - 2), dtype=z.dtype, device=z.device)
        conv = F.conv1d if z.dim() == 3 else F.conv2d
        return conv(z * z, ones)
    return (z * z).sum(dim=dim, keepdim=True)


@contextmanager
def export_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every :class:`IsotropicActivation` in ``module`` uses the plain norm.

    The plain form ``sqrt(max(o + (z*z) @ 1, eps^2))`` exports to portable ONNX ops (no
    ``ReduceMax``/``ReduceSum``); it equals the scaled form up to rounding for ``|z| < 1e18``.
    Terms that are exactly zero when the block is entered (an ``o`` of 0; in models that
    define ``_export_mode_changed``, such as :class:`~isoproof.IsotropicMLP`, a psi vector of
    zeros) are left out of the traced graph: adding zero changes no output.
    """
    acts = [m for m in module.modules() if isinstance(m, IsotropicActivation)]
    hooks = [m for m in module.modules() if callable(getattr(m, "_export_mode_changed", None))]
    previous = [a.plain for a in acts]
    try:
        for a in acts:
            a.plain = True
            a._plain_o_is_zero = float(a.o.detach()) == 0.0
        for m in hooks:  # models drop exactly-zero terms from the traced graph
            m._export_mode_changed(True)
        yield module
    finally:
        for a, p in zip(acts, previous, strict=True):
            a.plain = p
        for m in hooks:
            m._export_mode_changed(False)
