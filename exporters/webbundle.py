"""``web_bundle``: a static folder in which a person draws a digit and the exported model reads it.

The folder holds ``index.html``, ``app.js`` (a canvas, the rasterisation, the prediction),
``model.onnx``, ``model.json`` and onnxruntime-web's WASM build under ``ort/`` (copied from the
pinned ``exporters/web/node_modules``; no CDN). Serve it over HTTP, since WASM does not load from
``file://``: ``python -m http.server --bind 127.0.0.1 --directory DIR 8000``.

``model.json`` is what the page reads instead of assuming a model:

==============  ==========================================================================
``input_dims``  the ONNX input's dims (``null`` for the symbolic batch): ``[null, 64]`` for the
                8x8 digits MLP, ``[null, 784]`` for 28x28 MNIST, ``[null, 1, 28, 28]`` for a
                convolutional model
``image``       ``[H, W]``: the image behind the input (a square number of features, or the
                last two dims)
``mean, std``   per-pixel standardisation of the training data (``H * W`` each)
``pixel_max``   the largest raw training pixel (16 for digits): ink coverage is scaled to it
``widths``      ``isoproof.widths`` from the file's metadata; ``parameters``, ``file_size``
``parity``      runtime -> max |error| vs float64 torch, from :func:`exporters.verify_onnx`
==============  ==========================================================================

Example::

    >>> web_bundle("m.onnx", "web/", mean=data.mean, std=data.std, pixel_max=16.0,
    ...            parity={"browser": 1e-7}, dataset="digits")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from isoproof.files import atomic_path, atomic_write_text

from .browser import WEB_DIR
from .errors import ExportError, RuntimeUnavailableError
from .export import read_onnx_metadata
from .runtime import input_dims

__all__ = ["ORT_FILES", "image_shape", "web_bundle"]

ORT_FILES: tuple[str, ...] = (
    "ort.wasm.min.js",
    "ort-wasm-simd-threaded.wasm",
    "ort-wasm-simd-threaded.mjs",
)
"""onnxruntime-web's WASM build: the script, its module loader and the WebAssembly binary."""


def image_shape(dims: list[int | None]) -> tuple[int, int]:
    """``(H, W)`` of an image input ``[batch, H*W]`` (square) or ``[batch, C, H, W]``."""
    if len(dims) == 2 and dims[1] and math.isqrt(dims[1]) ** 2 == dims[1]:
        side = math.isqrt(dims[1])
        return side, side
    if len(dims) == 4 and dims[1] == 1 and dims[2] and dims[3]:
        return int(dims[2]), int(dims[3])
    raise ExportError(
        f"expected an image input [batch, H*W] (square) or [batch, 1, H, W], got {dims}"
    )


def web_bundle(
    onnx_path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    mean: np.ndarray | object,
    std: np.ndarray | object,
    pixel_max: float,
    parity: Mapping[str, float],
    dataset: str = "",
) -> Path:
    """Write the web demo for the float32 file ``onnx_path`` into ``folder`` (created if needed;
    ``onnx_path`` itself is never overwritten). Returns ``folder / "index.html"``.

    Raises:
        ExportError: not an image classifier input, stats of the wrong size, or ``folder`` is a
            file.
        RuntimeUnavailableError: the npm packages are not installed (``make web``).
    """
    src, folder = Path(onnx_path), Path(folder)
    proto = onnx.load(str(src))
    dtype, dims = input_dims(proto)
    if dtype is not np.float32:
        raise ExportError(f"expected a float32 file for the web demo, got {np.dtype(dtype).name}")
    h, w = image_shape(dims)
    stats = {k: _per_pixel(v, h * w, k) for k, v in (("mean", mean), ("std", std))}
    if not (np.all(stats["std"] > 0) and math.isfinite(pixel_max) and pixel_max > 0):
        raise ExportError(f"expected std > 0 and pixel_max > 0, got pixel_max={pixel_max}")
    dist = WEB_DIR / "node_modules" / "onnxruntime-web" / "dist"
    missing = [f for f in ORT_FILES if not (dist / f).is_file()]
    if missing:
        raise RuntimeUnavailableError(
            f"expected onnxruntime-web's {missing} in {dist}, got none: install them with "
            "`make web` (npm ci in exporters/web)"
        )
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"expected a folder for the web bundle, got the file {folder}")
    (folder / "ort").mkdir(parents=True, exist_ok=True)
    meta = read_onnx_metadata(proto)
    info = {
        "input_dims": dims,
        "image": [h, w],
        "mean": stats["mean"].tolist(),
        "std": stats["std"].tolist(),
        "pixel_max": float(pixel_max),
        "widths": json.loads(meta.get("isoproof.widths", "null")) or [],
        "parameters": int(meta.get("isoproof.parameters", 0)),
        "file_size": src.stat().st_size,
        "parity": {k: float(v) for k, v in parity.items()},
        "dataset": dataset,
    }
    for name in ORT_FILES:
        _copy(dist / name, folder / "ort" / name)
    for name in ("app.js", "index.html"):
        _copy(WEB_DIR / "bundle" / name, folder / name)
    if src.resolve() != (folder / "model.onnx").resolve():
        _copy(src, folder / "model.onnx")
    atomic_write_text(folder / "model.json", json.dumps(info, indent=1) + "\n")
    return folder / "index.html"


def _per_pixel(value: object, n: int, what: str) -> np.ndarray:
    arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, np.float64)
    arr = arr.reshape(-1)
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.size != n or not np.isfinite(arr).all():
        raise ExportError(f"expected {what} with 1 or {n} finite values, got {arr.size}")
    return arr


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
