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

``Radial`` also carries the global constants used by the receipts' error bounds, in closed form
(derivations in :func:`_constants`; ``tests/test_bounds.py`` checks each against a dense grid):

=================  ========  ===========  ================  ==========
name               ``bound``  ``lipschitz``  ``gain_lipschitz``  ``gain_bound``
=================  ========  ===========  ================  ==========
``tanh``           1         1            ``2 sqrt(3)/9``   1
``softsign``       1         1            1                 1
``log1p``          inf       1            1/2               1
``shifted_relu``   inf       1            ``1/R``           1
=================  ========  ===========  ================  ==========

``bound`` is ``sup |s|``, ``lipschitz`` the Lipschitz constant of ``f(z) = g(N) z`` (any ``o >= 0``,
any ``eps``), ``gain_lipschitz`` ``sup |g'(N)|`` and ``gain_bound`` ``sup g``. They are exact
suprema except ``tanh``'s ``gain_lipschitz`` (a proven upper bound; the grid's sup is 0.34).

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
    """A named radial profile ``s(r)`` with its gain ``g(r) = s(r)/r``.

    ``profile`` returns a new tensor (never a view of its input): :meth:`gain` divides it in
    place when no gradient is needed."""

    name: str
    profile: Callable[[torch.Tensor], torch.Tensor] = field(repr=False, compare=False)
    shift: float = 0.0

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """``s(r)`` elementwise."""
        return self.profile(r)

    def gain(self, r: torch.Tensor) -> torch.Tensor:
        """``g(r) = s(r) / r`` for ``r > 0`` (callers clamp ``r >= eps``)."""
        s = self.profile(r)  # a fresh tensor (the shipped profiles): divided in place when no
        # graph needs it and it is neither r nor a view (a user profile may return one of r)
        if s.requires_grad or s is r or s._is_view():
            return s / r
        return s.div_(r)

    def scaled_gain(self, m: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``m * g(N)`` for ``N = m * t`` without forming ``N`` (which may exceed float64's
        range), exact to rounding for ``N >= 1e300``: there ``tanh(N) = 1``, ``1/(1+N) = 1/N``
        and ``log(1+N) = log m + log t``, so ``m g`` is ``1/t``, ``1/t``, ``log N / t`` and
        ``m - R/t``. Used by :func:`isoproof.activations.overflow_safe_forward`."""
        if self.name in ("tanh", "softsign"):
            return 1 / t
        if self.name == "log1p":
            return (torch.log(m) + torch.log(t)) / t
        return torch.clamp_min(m - self.shift / t, 0.0)

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
    """(bound, lipschitz, gain_lipschitz, gain_bound), in closed form.

    For ``r > 0`` every shipped ``s`` has ``s(0) = 0``, ``0 <= s' <= 1`` and ``0 <= g <= 1``
    (``g = s(r)/r``); ``g' = (s' - g)/r``.

    * ``lipschitz``: the Jacobian of ``f(z) = g(N) z`` (``N = sqrt(o + |z|^2)``) is
      ``g I + (g'/N) z z^T``; its eigenvalues are ``g`` (across ``z``) and
      ``g + g' |z|^2 / N``, which lies between ``g`` and ``s'(N) = g + g' N`` because
      ``0 <= |z|^2 / N <= N``. Both are in ``[0, 1]``, so ``Lip(f) = 1`` (inside the ``eps``
      ball ``f = g(eps) z``: constant ``g(eps) <= 1``). The scaled norm computes the same ``N``.
    * ``gain_lipschitz = sup |g'|`` (``|dN/dz| <= 1``): softsign ``g' = -1/(1+r)^2`` (sup 1
      at ``r -> 0``);
      log1p ``(log(1+r) - r/(1+r))/r^2 <= 1/2`` since ``h(r) = r^2/2 - log(1+r) + r/(1+r)``
      has ``h(0) = 0``, ``h' = r - r/(1+r)^2 >= 0``; shifted ReLU ``g' = R/r^2`` on ``r > R``
      (sup ``1/R`` at ``r -> R+``); tanh: ``2 sqrt(3)/9`` (an upper bound on the supremum
      0.3434, proven in ``proofs/profiles.py``).
    * ``bound``: ``sup tanh = sup r/(1+r) = 1``; ``log1p`` and the shifted ReLU are unbounded.
    * ``gain_bound = sup g = 1`` (the limit at ``r -> 0`` or ``r -> inf``, never exceeded).
    """
    radial = get_radial(spec)
    gain_lip = {
        "tanh": 2 * math.sqrt(3) / 9,
        "softsign": 1.0,
        "log1p": 0.5,
        "shifted_relu": 1.0 / radial.shift if radial.shift > 0 else math.inf,
    }[radial.name]
    bound = 1.0 if radial.name in ("tanh", "softsign") else math.inf
    return bound, 1.0, gain_lip, 1.0
