"""Argument checks shared by every public entry point ("expected X, got Y" messages).

One home for the guards that would otherwise be hand-written in each module: an integer is a
real ``int`` (``True`` is refused even though ``bool`` subclasses ``int``), a float is finite and
in range. Each check returns the validated value, so calls read ``n = check_int(n, "n", lo=1)``.

Example::

    >>> check_int(3, "n", lo=1)
    3
    >>> check_int(True, "n")
    Traceback (most recent call last):
    ...
    isoproof.exceptions.IsoproofError: expected n to be an int, got True
"""

from __future__ import annotations

import math

import torch

from .exceptions import IsoproofError

__all__ = ["all_finite", "check_float", "check_int"]


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite, by its sum first: one pass with no boolean tensor
    (``isfinite().all()`` costs about 10x more on a large map). A NaN or an Inf makes the sum
    non-finite, so a finite sum proves them absent; only a non-finite sum (a NaN, an Inf, or an
    overflow of finite entries) needs the entry-wise check.

    Example::

        >>> all_finite(torch.tensor([3e38, 3e38])), all_finite(torch.tensor([1.0, float("nan")]))
        (True, False)
    """
    if t.numel() == 0 or math.isfinite(float(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def check_int(
    value: object,
    what: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    error: type[IsoproofError] = IsoproofError,
) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) in ``[lo, hi]``; else raise ``error``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"expected {what} to be an int, got {value!r}")
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise error(f"expected {what} to be an int in [{lo}, {hi}], got {value}")
    if lo is not None and value < lo:
        raise error(f"expected {what} to be an int >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise error(f"expected {what} to be an int <= {hi}, got {value}")
    return value


SEED_LIMIT = 2**63
"""Seeds are ints in ``[0, SEED_LIMIT)``: what torch's generators take."""


def check_seed(
    value: object, what: str = "seed", error: type[IsoproofError] = IsoproofError
) -> int:
    """Return ``value`` if it is a seed torch's generators take (:data:`SEED_LIMIT`); else raise."""
    return check_int(value, what, lo=0, hi=SEED_LIMIT - 1, error=error)


def check_float(
    value: object,
    what: str,
    *,
    lo: float | None = None,
    strict: bool = False,
    error: type[IsoproofError] = IsoproofError,
) -> float:
    """Return ``float(value)`` if it is a finite real number ``>= lo`` (``> lo`` if ``strict``).

    Accepts ints and floats (and 0-d tensors via ``float()``), refuses ``bool``, strings and NaN.
    """
    if isinstance(value, bool | str | bytes):
        raise error(f"expected {what} to be a finite float, got {value!r}")
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise error(f"expected {what} to be a finite float, got {value!r}") from None
    if not math.isfinite(out):
        raise error(f"expected {what} to be a finite float, got {out}")
    if lo is not None and (out <= lo if strict else out < lo):
        raise error(f"expected {what} {'>' if strict else '>='} {lo:g}, got {out:g}")
    return out
