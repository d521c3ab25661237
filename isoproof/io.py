"""Safe save and load of isotropic models (safetensors, never pickle).

A resized model has widths no constructor default knows, so the architecture travels with the
weights: :func:`save` writes a safetensors file whose metadata holds the format tag, the config
(widths, radial, modes, dtype, eps, diagonal layers), the isoproof version and a SHA-256 that
covers the format tag, the config and every tensor (name, dtype, shape, bytes): editing any of
them is detected. The file is written to a temporary name in the same folder and renamed, so a
crash never leaves a half-written checkpoint.

:func:`load` treats the file as untrusted. Before anything is allocated from it, it parses the
safetensors header itself (8-byte length, then JSON, at most :data:`MAX_HEADER_BYTES`), checks
that every tensor's declared shape, dtype and byte range fit the file, builds the architecture
described by the config on the ``meta`` device (no memory) and compares its tensor shapes and
dtypes with the header's. Only then are the tensors read (their total size is bounded by the file
size) and the digest checked. Any failure is a one-line :class:`CheckpointError`.

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
import importlib
import json
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ._version import __version__
from .exceptions import CheckpointError, IsoproofError, NonFiniteError, NotIsotropicError
from .files import atomic_path
from .mlp import IsotropicMLP
from .network import IsotropicNet
from .ops._surgery import check_maps

__all__ = [
    "BUILTIN_MODULES",
    "FORMAT",
    "FORMATS",
    "MAX_CONFIG_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_TRAINING_BYTES",
    "TRAINING_PREFIX",
    "load",
    "model_digest",
    "read_metadata",
    "register_format",
    "save",
]

FORMAT = "isoproof.IsotropicMLP/1"
#: Format tag -> model class; every saveable class is registered here (:func:`register_format`).
#: The built-in classes of :data:`BUILTIN_MODULES` register themselves when their module is
#: imported, which :func:`save` and :func:`load` do before they look a format up.
FORMATS: dict[str, type[nn.Module]] = {FORMAT: IsotropicMLP}
#: Modules (of this package) that define saveable classes and register them on import.
BUILTIN_MODULES = ("conv", "collapse")
#: Largest safetensors JSON header :func:`load` reads (the header is parsed before anything else).
MAX_HEADER_BYTES = 16 * 2**20
#: Largest config (JSON text) :func:`load` builds a model from.
MAX_CONFIG_BYTES = 8 * 2**10
#: Largest ``training`` metadata (JSON text) of a training checkpoint (:mod:`isoproof.checkpoint`).
MAX_TRAINING_BYTES = 2**20
#: Name prefix of a training checkpoint's tensors that are not the model's.
TRAINING_PREFIX = "train/"

_ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _digest(tensors: dict[str, torch.Tensor], prefix: str = "") -> str:
    h = hashlib.sha256(prefix.encode())
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous().cpu()
        h.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _prefix(fmt: str, config_json: str, training_json: str | None = None) -> str:
    """What the digest covers besides the tensors: every metadata field that changes behaviour
    (a training checkpoint's ``training`` entry too)."""
    prefix = f"isoproof-checkpoint/2|{fmt}|{config_json}|"
    if training_json is not None:
        prefix += f"training|{len(training_json)}|{training_json}|"
    return prefix


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of a module's format tag, config and state (the "source checksum").

    For a saveable class (:data:`FORMATS`) the digest covers the format tag and the config as
    well as every tensor's name, dtype, shape and bytes; for any other module, the tensors only.
    It is the digest :func:`save` stores.
    """
    tensors = dict(model.state_dict().items())
    try:
        fmt = _format_of(model)
    except NotIsotropicError:
        return _digest(tensors)
    return _digest(tensors, _prefix(fmt, json.dumps(model.config())))  # type: ignore[operator]


def register_format(name: str, cls: type[nn.Module]) -> None:
    """Make ``cls`` saveable under the format tag ``name`` (e.g. ``"isoproof.IsotropicMLP/1"``).

    ``cls`` must provide ``config() -> dict`` (JSON-serialisable) and
    ``from_config(config, device=...)``, which builds the architecture (it must work on
    ``device="meta"``: :func:`load` builds there first to check the file's tensors against it);
    :func:`load` then fills it from the file. A new model class (a convolutional net, a collapsed
    MLP) registers itself here instead of adding its own save/load.

    Raises:
        IsoproofError: the tag is already used by another class, or ``cls`` lacks the methods.
    """
    for method in ("config", "from_config"):
        if not callable(getattr(cls, method, None)):
            raise IsoproofError(f"expected {cls.__name__} to define {method}(), got none")
    if FORMATS.get(name, cls) is not cls:
        raise IsoproofError(f"expected a new format tag, got {name!r} (used by {FORMATS[name]})")
    FORMATS[name] = cls


def _formats() -> dict[str, type[nn.Module]]:
    """:data:`FORMATS` with every built-in class registered (imports :data:`BUILTIN_MODULES`)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(f".{module}", __package__)
    return FORMATS


def _format_of(model: object) -> str:
    for name, cls in _formats().items():
        if type(model) is cls:
            return name
    names = ", ".join(c.__name__ for c in FORMATS.values())
    raise NotIsotropicError(
        f"expected a model of a saveable class ({names}), got {type(model).__name__}"
    )


def save(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (safetensors with config metadata), atomically.

    Raises:
        NotIsotropicError: the class is not registered (:func:`register_format`).
        NonFiniteError: a parameter or buffer holds NaN/Inf (nothing is written).
    """
    return _write(model, path)


def _write(
    model: nn.Module,
    path: str | os.PathLike[str],
    training: tuple[dict[str, torch.Tensor], str] | None = None,
) -> Path:
    """:func:`save`, with a training checkpoint's ``(tensors named train/..., JSON)`` added."""
    fmt = _format_of(model)
    if isinstance(model, IsotropicNet):
        check_maps(model)
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    training_json = None
    if training is not None:
        extra, training_json = training
        if not all(k.startswith(TRAINING_PREFIX) for k in extra):
            raise IsoproofError(f"expected tensor names starting {TRAINING_PREFIX!r}, got {extra}")
        tensors |= {k: v.detach().contiguous().cpu() for k, v in extra.items()}
    for key, t in tensors.items():
        # gain_means is NaN by design until gains are recorded
        if t.is_floating_point() and key != "gain_means" and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"expected finite weights, got NaN/Inf in {key!r} (not saved)")
    config_json = json.dumps(model.config())  # type: ignore[operator]
    metadata = {"format": fmt, "config": config_json, "isoproof_version": __version__}
    if training_json is not None:
        metadata["training"] = training_json
    metadata["sha256"] = _digest(tensors, _prefix(fmt, config_json, training_json))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's metadata with ``config`` parsed (raises :class:`CheckpointError`).

    Reads the header only (never the tensors).
    """
    path = Path(path)
    meta: dict[str, Any] = dict(_read_header(path)[0])
    for key in ("config", "training"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return meta


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: {why}")


def _read_header(
    path: Path,
) -> tuple[dict[str, str], dict[str, tuple[torch.dtype, tuple[int, ...]]]]:
    """Parse and check the safetensors header; returns ``(metadata, {name: (dtype, shape)})``."""
    if not path.is_file():
        what = "a directory" if path.is_dir() else "no such file"
        raise CheckpointError(f"expected a checkpoint file at {path}, got {what}")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
                raise _fail(path, f"not a readable safetensors file (header length {n})")
            raw = f.read(n)
    except PermissionError:
        raise CheckpointError(
            f"expected a readable checkpoint at {path}, got permission denied"
        ) from None
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, a > 4300-digit int; too deep
        raise _fail(path, "not a readable safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise _fail(path, "not a readable safetensors file (header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, "expected string metadata in the header")
    specs = {k: _tensor_spec(path, k, v, size - 8 - n) for k, v in header.items()}
    if meta.get("format") not in _formats():
        raise _fail(path, f"expected a format in {sorted(FORMATS)}, got {meta.get('format')!r}")
    for key, limit in (("config", MAX_CONFIG_BYTES), ("training", MAX_TRAINING_BYTES)):
        text = meta.get(key)
        if key == "training" and text is None:
            continue  # a model file, not a training checkpoint
        if not isinstance(text, str) or len(text) > limit:
            got = "none" if text is None else f"{len(text)} characters"
            raise _fail(path, f"expected a JSON {key!r} of at most {limit} bytes, got {got}")
        try:
            json.loads(text)
        except (ValueError, RecursionError) as e:  # also a > 4300-digit int
            raise _fail(path, f"expected a JSON {key!r} in the metadata ({e})") from None
    return meta, specs


def _tensor_spec(
    path: Path, name: str, entry: object, data_size: int
) -> tuple[torch.dtype, tuple[int, ...]]:
    """Check one header entry: known dtype, non-negative shape, byte range = shape * itemsize."""
    try:
        dtype = _ST_DTYPES[entry["dtype"]]  # type: ignore[index]
        shape = tuple(entry["shape"])  # type: ignore[index]
        start, end = entry["data_offsets"]  # type: ignore[index]
        ok = all(type(d) is int and d >= 0 for d in (*shape, start, end))
    except (KeyError, TypeError, ValueError):
        raise _fail(path, f"malformed header entry for tensor {name!r}") from None
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype, device="meta").element_size()
    if not ok or end - start != nbytes or end > data_size:
        raise _fail(
            path,
            f"tensor {name!r}: declared shape {list(shape)} ({nbytes} bytes) does not match its "
            f"byte range {start}..{end} in a data section of {data_size} bytes",
        )
    return dtype, shape


def load(path: str | os.PathLike[str], *, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild the model saved at ``path`` (identical outputs); never unpickles.

    The class is the one registered for the file's format tag (:func:`register_format`). The
    file is checked (header, shapes, byte sizes, digest) before any tensor is allocated from it
    (see the module docstring).

    Raises:
        CheckpointError: the file is missing, not a safetensors file, inconsistent with its own
            config, or does not match its SHA-256 (one line naming the reason).
        IsoproofError: ``device="meta"`` (a model without weights; build the architecture with
            ``from_config(read_metadata(path)["config"], device="meta")`` instead).
    """
    path = Path(path)
    if device is not None and torch.device(device).type == "meta":
        raise IsoproofError(
            "expected a device that holds data, got 'meta' (for the architecture alone use "
            "from_config(read_metadata(path)['config'], device='meta'))"
        )
    built: list[nn.Module] = []

    def check(meta: dict[str, str], specs: Specs) -> None:
        try:
            cfg = json.loads(meta["config"])
            built.append(FORMATS[meta["format"]].from_config(cfg, device="meta"))  # type: ignore[attr-defined]
        except IsoproofError as e:
            raise _fail(path, f"invalid config ({e})") from None
        check_specs(path, built[0].state_dict(), model_specs(meta, specs), "the config")

    meta, tensors = read_checked(path, check)
    model = built[0].to_empty(device=device or "cpu")
    model.load_state_dict(model_specs(meta, tensors), strict=True)
    return model


Specs = dict[str, tuple[torch.dtype, tuple[int, ...]]]


def model_specs(meta: dict[str, str], entries: dict[str, Any]) -> dict[str, Any]:
    """The model's entries of a file's tensors (all but a training checkpoint's ``train/...``)."""
    if "training" not in meta:
        return entries
    return {k: v for k, v in entries.items() if not k.startswith(TRAINING_PREFIX)}


def check_specs(
    path: Path, expected: dict[str, torch.Tensor] | Specs, specs: Specs, what: str
) -> None:
    """Raise :class:`CheckpointError` unless the header's tensors ``specs`` are exactly
    ``expected`` (tensors or ``(dtype, shape)``) in names, dtypes and shapes."""
    want = {
        k: (v.dtype, tuple(v.shape)) if isinstance(v, torch.Tensor) else (v[0], tuple(v[1]))
        for k, v in expected.items()
    }
    if want != specs:
        missing = sorted(set(want) - set(specs))
        extra = sorted(set(specs) - set(want))
        wrong = [
            f"{k}: expected {list(want[k][1])} {want[k][0]}, got {list(specs[k][1])} {specs[k][0]}"
            for k in sorted(set(want) & set(specs))
            if want[k] != specs[k]
        ]
        raise _fail(
            path,
            f"tensors do not match {what} (missing {missing}, unexpected {extra}, "
            f"wrong shape or dtype {wrong})",
        )


def read_checked(
    path: Path, check: Callable[[dict[str, str], Specs], None]
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Read a checkpoint's header, run ``check(metadata, specs)`` (it raises
    :class:`CheckpointError` before any tensor is allocated), then read the tensors (on the CPU)
    and verify the SHA-256. Returns ``(metadata, tensors)``."""
    meta, specs = _read_header(path)
    check(meta, specs)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises several types for damaged files
        raise _fail(path, f"not a readable safetensors file ({e})") from None
    prefix = _prefix(meta["format"], meta["config"], meta.get("training"))
    if meta.get("sha256") != _digest(tensors, prefix):
        raise _fail(path, "config or tensor data does not match its SHA-256 (corrupted or edited)")
    return meta, tensors
