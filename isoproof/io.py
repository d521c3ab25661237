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

from ._version import __version__
from .exceptions import CheckpointError, IsoproofError
from .files import atomic_path
from .mlp import IsotropicMLP
from .ops._surgery import check_maps, check_model

__all__ = ["FORMAT", "load", "model_digest", "read_metadata", "save"]

FORMAT = "isoproof.IsotropicMLP/1"


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


def save(model: IsotropicMLP, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (safetensors with config metadata), atomically."""
    model = check_maps(check_model(model))
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config()),
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
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, got {meta.get('format')!r}")
    try:
        meta["config"] = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: expected a JSON 'config' in the metadata ({e})") from None
    return meta, data


def load(path: str | os.PathLike[str], *, device: torch.device | str | None = None) -> IsotropicMLP:
    """Rebuild the model saved at ``path`` (identical outputs); never unpickles."""
    path = Path(path)
    meta, tensors = _read(path, tensors=True)
    cfg = meta["config"]
    if meta.get("sha256") != _digest(tensors):
        raise CheckpointError(f"{path}: tensor data does not match its SHA-256 (corrupted file)")
    try:
        model = IsotropicMLP.from_config(cfg, device=device)
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
