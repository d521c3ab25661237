"""Safe save and load of isotropic models (safetensors, never pickle).

A resized model has widths no constructor default knows, so the architecture travels with the
weights: :func:`save` writes a safetensors file whose metadata holds the config (widths, radial,
modes, dtype, diagonal layers), the isoproof version and a SHA-256 of the tensor bytes. The file is
written to a temporary name in the same folder and renamed, so a crash never leaves a half-written
checkpoint. :func:`load` rebuilds the model and refuses (with :class:`CheckpointError` and the
reason) anything truncated, corrupted, or inconsistent with its own metadata.

Example::

    >>> model = IsotropicMLP([4, 6, 6, 3], dtype=torch.float64)
    >>> _ = sparsify(model)
    >>> path = save(model, tmp_path / "m.safetensors")
    >>> x = torch.randn(5, 4, dtype=torch.float64)
    >>> torch.equal(load(path)(x), model(x))
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ._version import __version__
from .conv import IsotropicConvNet
from .exceptions import CheckpointError, IsoproofError, NotIsotropicError
from .files import atomic_path
from .mlp import IsotropicMLP
from .network import IsotropicNet
from .ops._surgery import check_maps

__all__ = ["FORMAT", "FORMATS", "load", "model_digest", "read_metadata", "register_format", "save"]

FORMAT = "isoproof.IsotropicMLP/1"
#: Format tag -> model class; every saveable class is registered here (:func:`register_format`).
FORMATS: dict[str, type[nn.Module]] = {FORMAT: IsotropicMLP}


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and bytes): the "source checksum"."""
    return _digest({k: v for k, v in model.state_dict().items()})


def register_format(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` saveable under the format tag ``name`` (e.g. ``"isoproof.IsotropicMLP/1"``).

    ``cls`` must provide ``config() -> dict`` (JSON-serialisable) and
    ``from_config(config, device=...)``, which builds the architecture; :func:`load` then fills it
    from the file. A new model class (a convolutional net, a collapsed MLP) registers itself here
    instead of adding its own save/load.

    Raises:
        IsoproofError: the tag is already used by another class, or ``cls`` lacks the methods.
    """
    for method in ("config", "from_config"):
        if not callable(getattr(cls, method, None)):
            raise IsoproofError(f"expected {cls.__name__} to define {method}(), got none")
    if FORMATS.get(name, cls) is not cls:
        raise IsoproofError(f"expected a new format tag, got {name!r} (used by {FORMATS[name]})")
    FORMATS[name] = cls


def _format_of(model: object) -> str:
    for name, cls in FORMATS.items():
        if type(model) is cls:
            return name
    names = ", ".join(c.__name__ for c in FORMATS.values())
    raise NotIsotropicError(
        f"expected a model of a saveable class ({names}), got {type(model).__name__}"
    )


def save(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (safetensors with config metadata), atomically."""
    fmt = _format_of(model)
    if isinstance(model, IsotropicNet):
        check_maps(model)
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": fmt,
        "config": json.dumps(model.config()),  # type: ignore[operator]
        "isoproof_version": __version__,
        "sha256": _digest(tensors),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's metadata with ``config`` parsed (raises :class:`CheckpointError`)."""
    return _read(Path(path), tensors=False)[0]


def _read(path: Path, *, tensors: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"expected a checkpoint file at {path}, got no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            data = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except Exception as e:  # safetensors raises several types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if meta.get("format") not in FORMATS:
        raise CheckpointError(
            f"{path}: expected a format in {sorted(FORMATS)}, got {meta.get('format')!r}"
        )
    try:
        meta["config"] = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: expected a JSON 'config' in the metadata ({e})") from None
    return meta, data


def load(path: str | os.PathLike[str], *, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild the model saved at ``path`` (identical outputs); never unpickles.

    The class is the one registered for the file's format tag (:func:`register_format`).
    """
    path = Path(path)
    meta, tensors = _read(path, tensors=True)
    cfg = meta["config"]
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"{path}: tensor data does not match its SHA-256 (corrupted file)")
    try:
        model = FORMATS[meta["format"]].from_config(cfg, device=device)  # type: ignore[attr-defined]
    except IsoproofError as e:
        raise CheckpointError(f"{path}: invalid config {cfg!r} ({e})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise CheckpointError(
            f"{path}: tensors do not match the config (missing {missing}, unexpected {extra}, "
            f"wrong shape {wrong})"
        )
    model.load_state_dict(tensors, strict=True)
    return model


register_format("isoproof.IsotropicConvNet/1", IsotropicConvNet)
