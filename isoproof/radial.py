"""Radial profiles ``s(r)`` of isotropic activations.

An isotropic activation is ``f(z) = s(N) z / N`` with ``N = sqrt(o + |z|^2)``; the *radial profile*
``s`` decides how the length of the layer vector is squashed. The gain ``g(N) = s(N) / N`` is what
the network multiplies the pre-activation by.

=================  =======================  ======================================
name               ``s(r)``                 notes
=================  =======================  ======================================
``tanh``           ``tanh(r)``              the paper's profile ("isotropic tanh")
``softsign``       ``r / (1 + r)``          bounded, slower saturation
``log1p``          ``log(1 + r)``           unbounded, seen in the author's code
``shifted_relu``   ``max(r - R, 0)``        ``R`` = ``shift`` (default 1.0)
=================  =======================  ======================================

``Radial`` also carries global constants used by the receipts' error bounds: ``bound`` (sup of
``|s|``), ``lipschitz`` (Lipschitz constant of ``f`` itself, ``sup max(|g|, |s'|)``) and
``gain_lipschitz`` (``sup |g'(N)|``) and ``gain_bound`` (``sup g`` for ``N >= eps``). They are
computed once on a dense log-spaced grid with a 1% safety margin.

Example::

    >>> r = get_radial("tanh")
    >>> float(r.gain(torch.tensor(1.0, dtype=torch.float64)))  # tanh(1) / 1
    0.7615941559557649
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import torch

from .exceptions import IsoproofError

__all__ = ["RADIALS", "Radial", "get_radial"]


@dataclass(frozen=True)
class Radial:
    """A named radial profile ``s(r)`` with its gain ``g(r) = s(r)/r``."""

    name: str
    profile: Callable[[torch.Tensor], torch.Tensor] = field(repr=False, compare=False)
    shift: float = 0.0

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """``s(r)`` elementwise."""
        return self.profile(r)

    def gain(self, r: torch.Tensor) -> torch.Tensor:
        """``g(r) = s(r) / r`` for ``r > 0`` (callers clamp ``r >= eps``)."""
        return self.profile(r) / r

    @property
    def spec(self) -> str:
        """The string that :func:`get_radial` turns back into this profile."""
        return f"{self.name}:{self.shift:g}" if self.name == "shifted_relu" else self.name

    @property
    def bound(self) -> float:
        """``sup_r |s(r)|``: a bound on ``|f(z)|`` (``inf`` for unbounded profiles)."""
        return _constants(self.spec)[0]

    @property
    def lipschitz(self) -> float:
        """Global Lipschitz constant of ``f(z) = g(N) z`` (any ``o >= 0``)."""
        return _constants(self.spec)[1]

    @property
    def gain_lipschitz(self) -> float:
        """``sup |g'(N)|``: since ``|dN/dz| <= 1``, the Lipschitz constant of ``z -> g``."""
        return _constants(self.spec)[2]

    @property
    def gain_bound(self) -> float:
        """``sup_N g(N)`` over ``N >= 1e-3``."""
        return _constants(self.spec)[3]


def _tanh(r: torch.Tensor) -> torch.Tensor:
    return torch.tanh(r)


def _softsign(r: torch.Tensor) -> torch.Tensor:
    return r / (1 + r)


def _log1p(r: torch.Tensor) -> torch.Tensor:
    return torch.log1p(r)


def _shifted_relu(shift: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def profile(r: torch.Tensor) -> torch.Tensor:
        return torch.clamp_min(r - shift, 0.0)

    return profile


RADIALS: tuple[str, ...] = ("tanh", "softsign", "log1p", "shifted_relu")
"""Names accepted by :func:`get_radial` (``shifted_relu`` also as ``"shifted_relu:R"``)."""


def get_radial(spec: str | Radial, *, shift: float | None = None) -> Radial:
    """Return the radial profile named ``spec``.

    ``spec`` is one of :data:`RADIALS`; the shifted ReLU takes its shift ``R`` either as
    ``"shifted_relu:0.5"`` or as ``shift=0.5`` (default 1.0).

    Raises:
        IsoproofError: unknown name or invalid shift.
    """
    if isinstance(spec, Radial):
        return spec
    if not isinstance(spec, str):
        raise IsoproofError(
            f"expected a radial name (str) from {RADIALS}, got {type(spec).__name__}"
        )
    name, _, arg = spec.partition(":")
    if name not in RADIALS:
        raise IsoproofError(
            f"unknown radial profile {spec!r}: expected one of {', '.join(RADIALS)}"
        )
    if name != "shifted_relu":
        if arg or shift is not None:
            raise IsoproofError(f"radial {name!r} takes no shift, got {spec!r} / shift={shift}")
        profile = {"tanh": _tanh, "softsign": _softsign, "log1p": _log1p}[name]
        return Radial(name, profile)
    try:
        value = float(arg) if arg else (1.0 if shift is None else float(shift))
    except ValueError:
        raise IsoproofError(f"expected 'shifted_relu:<float>', got {spec!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise IsoproofError(f"expected a finite shift R > 0 for shifted_relu, got {value}")
    return Radial(name, _shifted_relu(value), shift=value)


@cache
def _constants(spec: str) -> tuple[float, float, float, float]:
    """(bound, lipschitz, gain_lipschitz, gain_bound) measured on a grid, with 1% margin."""
    radial = get_radial(spec)
    with torch.enable_grad():
        r = torch.logspace(-3, 4, 200_001, dtype=torch.float64).requires_grad_(True)
        s = radial(r)
        g = s / r
        ds, dg = (torch.autograd.grad(t.sum(), r, retain_graph=True)[0] for t in (s, g))
    s, ds, g, dg = s.detach(), ds.detach(), g.detach(), dg.detach()
    unbounded = radial.name in ("log1p", "shifted_relu")
    bound = math.inf if unbounded else float(s.abs().max())
    lip = float(torch.maximum(g.abs(), ds.abs()).max())
    margin = 1.01
    return bound * margin, lip * margin, float(dg.abs().max()) * margin, float(g.max()) * margin
