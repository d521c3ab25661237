"""The psi vectors of the generalised isotropic perceptron.

``psi[i]`` (shape ``[widths[i + 2]]``) is added, scaled by the previous layer's gain, to the
pre-activation of ``linears[i + 1]`` (``docs/method.md`` §2)::

    z_{i+1} = W_{i+1} a_i + b_{i+1} + psi[i] * g_i

It starts at 0 and is how neurodegeneration keeps a removed neuron's constant output
(``psi_{l+1} <- psi_{l+1} + W* b*``, exact: see ``proofs/neurodegeneration.py``).

Modes: ``"decay"`` (trainable, with an L2 penalty in :meth:`IsotropicMLP.penalty`), ``"trainable"``,
``"constant"`` (buffers: changed only by structural operations) and ``"none"`` (zero buffers that
the forward ignores; pruning then uses the "expectation" bias update instead).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from .exceptions import IsoproofError

__all__ = ["PSI_MODES", "PsiMode", "PsiVectors"]

PsiMode = Literal["decay", "trainable", "constant", "none"]
PSI_MODES: tuple[str, ...] = ("decay", "trainable", "constant", "none")


class PsiVectors(nn.Module):
    """A list of psi vectors stored as parameters (decay/trainable) or buffers (constant/none)."""

    def __init__(
        self,
        sizes: Sequence[int],
        mode: PsiMode,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if mode not in PSI_MODES:
            raise IsoproofError(f"expected psi in {PSI_MODES}, got {mode!r}")
        self.mode: PsiMode = mode
        self._count = len(sizes)
        self._names = [str(i) for i in range(self._count)]
        for i, n in enumerate(sizes):
            self.set(i, torch.zeros(n, dtype=dtype, device=device))

    @property
    def trainable(self) -> bool:
        return self.mode in ("decay", "trainable")

    def set(self, i: int, value: torch.Tensor) -> None:
        """Store ``value`` as ``psi[i]`` (wrapped in a new Parameter unless it is one already)."""
        name = str(i)
        # assigning an existing key keeps its position: parameter order stays that of the
        # optimizer's param_groups
        if self.trainable:
            param = value if isinstance(value, nn.Parameter) else nn.Parameter(value)
            if name in self._parameters:
                self._parameters[name] = param
            else:
                self.register_parameter(name, param)
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -self._count <= i < self._count:
            raise IndexError(f"psi index {i} out of range for {self._count} vectors")
        name = str(i % self._count)
        return self._parameters[name] if self.trainable else self._buffers[name]  # type: ignore[return-value]

    def terms(self) -> list[torch.Tensor | None]:
        """What the forward adds, in one call (its hot path): ``[psi[0], psi[1], ...]``, or
        ``None`` per layer in mode ``"none"`` (the forward ignores those vectors)."""
        if self.mode == "none":
            return [None] * self._count
        store = self._parameters if self.trainable else self._buffers
        return [store[name] for name in self._names]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(self._count))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, sizes={[int(p.numel()) for p in self]}"
