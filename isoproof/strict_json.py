"""Strict JSON for reports: the one converter every writer uses (``allow_nan=False`` safe).

Non-finite floats become the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (JSON has no such
numbers), tuples become lists, dict keys strings, tensors lists and paths strings.

Example::

    >>> dumps({"bound": float("inf"), "widths": (4, 3)}, indent=None)
    '{"bound": "inf", "widths": [4, 3]}'
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

import torch

__all__ = ["dumps", "jsonable"]


def jsonable(value: Any, *, digits: int | None = None) -> Any:
    """``value`` with every non-finite float, tuple, tensor, path and non-string key converted;
    finite floats rounded to ``digits`` significant digits if given."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return value if digits is None else float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {str(k): jsonable(v, digits=digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, digits=digits) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist(), digits=digits)
    if isinstance(value, PurePath):
        return str(value)
    return value


def dumps(value: Any, *, indent: int | None = 1) -> str:
    """``json.dumps(jsonable(value), allow_nan=False)``: raises on anything else unserialisable."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False)
