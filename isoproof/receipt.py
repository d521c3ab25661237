"""``Receipt``: what every structural operation returns.

One frozen record serves every operation (rotation, diagonalisation, sparsification, growth,
pruning, the scaffold buffer, task neurons), so logs and reports read the same everywhere.

Fields:
    op: the operation's name (``"rotate"``, ``"prune"``, ...).
    layer: the hidden layer index, a tuple of them, or ``None`` for whole-model operations.
    widths_before, widths_after: ``model.widths`` around the operation.
    params_before, params_after: stored numbers (:func:`isoproof.count_parameters`).
    singular_values: the singular values involved (removed ones for pruning), descending.
    bound: an upper bound on ``max |output change|`` (0.0 for exact operations; for pruning the
        first-order bound of :mod:`isoproof.ops.neurodegeneration`). ``inf`` when no finite
        bound exists. An inexact bound assumes that every input row has ``|x| <= A_0``, the
        input-norm bound of the operation: its ``input_norm=`` if given, else the largest row
        norm of its ``probe=``, else 1 (then the bound is per unit input norm). Within that
        ball it holds for every input, not only for the probe; outside it, it says nothing
        (:mod:`isoproof.ops._bounds`, ``docs/method.md`` §4).
    max_abs_change: measured ``max |f_after(x) - f_before(x)|`` on the ``probe=`` batch, else
        ``None``.

Example::

    >>> r = Receipt("rotate", 0, (2, 3, 1), (2, 3, 1), 16, 16, (), 0.0, 1e-16)
    >>> r.exact
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Receipt"]


@dataclass(frozen=True)
class Receipt:
    """The record of one structural operation (see the module docstring for the fields)."""

    op: str
    layer: int | tuple[int, ...] | None
    widths_before: tuple[int, ...]
    widths_after: tuple[int, ...]
    params_before: int
    params_after: int
    singular_values: tuple[float, ...] = ()
    bound: float = 0.0
    max_abs_change: float | None = None

    @property
    def exact(self) -> bool:
        """True when the operation is function-preserving by construction (``bound == 0``)."""
        return self.bound == 0.0

    @property
    def param_ratio(self) -> float:
        """``params_after / params_before``."""
        return self.params_after / self.params_before if self.params_before else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The fields plus ``exact`` and ``param_ratio``, as plain Python values (tuples as
        lists); like every report type's ``to_dict``. :func:`isoproof.strict_json.dumps` writes
        it (an infinite ``bound`` becomes ``"inf"``).

        Example::

            >>> Receipt("prune", 1, (2, 3, 1), (2, 2, 1), 14, 11, (0.5,), 0.25).to_dict()["bound"]
            0.25
        """
        out = asdict(self)
        for key in ("widths_before", "widths_after", "singular_values"):
            out[key] = list(out[key])
        if isinstance(self.layer, tuple):
            out["layer"] = list(self.layer)
        return {**out, "exact": self.exact, "param_ratio": self.param_ratio}

    def __str__(self) -> str:
        change = "n/a" if self.max_abs_change is None else f"{self.max_abs_change:.3g}"
        layer = "" if self.layer is None else f" layer {self.layer}"
        return (
            f"{self.op}{layer}: widths {list(self.widths_before)} -> {list(self.widths_after)}, "
            f"params {self.params_before} -> {self.params_after}, bound {self.bound:.3g}, "
            f"measured change {change}"
        )
