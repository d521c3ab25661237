"""Runtime back-ends of :func:`exporters.verify_onnx`: one object per runtime that runs a file.

=================  =====================================================================
``onnxruntime``    onnxruntime's CPU provider (explicit), one intra-op thread (alias ``ort``)
``reference``      ``onnx.reference.ReferenceEvaluator``: plain numpy, no fused kernels
``openvino``       OpenVINO on CPU, reading the ONNX file directly (``pip install
                   'isoproof[edge]'``)
``browser``        onnxruntime-web (WASM, one thread) in headless Chromium
                   (:mod:`exporters.browser`; ``make web``)
=================  =====================================================================

Each back-end is opened on one file (:func:`open_backend`); a file it cannot load raises
:class:`BackendLoadError` (verification reports it as that back-end's failure), a runtime that is
not installed raises :class:`~exporters.errors.RuntimeUnavailableError` ("install X with Y").
``run`` takes rows of any dims in the file's dtype; ``latency`` gives median seconds per call at
the given input dims (the browser times inside the page, the others with
:func:`~exporters.runtime.interleaved_medians`).

Example::

    >>> backend = open_backend("openvino", "m.onnx", onnx.load("m.onnx"))  # doctest: +SKIP
    >>> backend.run(np.zeros((1, 64), np.float32)).shape  # doctest: +SKIP
    (1, 10)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from isoproof.exceptions import one_line

from .errors import ExportError, RuntimeUnavailableError
from .export import INPUT_NAME
from .runtime import input_dims, interleaved_medians, ort_session

__all__ = ["ALIASES", "BACKENDS", "Backend", "BackendLoadError", "canonical", "open_backend"]

BACKENDS: tuple[str, ...] = ("onnxruntime", "reference", "openvino", "browser")
ALIASES: dict[str, str] = {"ort": "onnxruntime"}


class BackendLoadError(ExportError):
    """A runtime is installed but cannot load (or run) the file: a verification failure."""


class Backend:
    """A file opened in one runtime: ``run(x) -> y`` and ``latency(dims) -> seconds``."""

    name = "?"

    def __init__(self, run: Callable[[np.ndarray], np.ndarray]) -> None:
        self._run = run

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self._run(x))
        except Exception as e:  # a runtime's own error on this input: report, do not crash
            raise BackendLoadError(f"{self.name} failed to run: {one_line(e)}") from e

    def latency(self, dims: dict[str, list[int]], dtype: type, runs: int) -> dict[str, float]:
        """Median seconds per call on a fixed input of each ``dims`` (interleaved)."""
        rng = np.random.default_rng(0)
        calls = {}
        for key, shape in dims.items():
            x = rng.standard_normal(shape).astype(dtype)
            calls[key] = lambda x=x: self._run(x)
        return interleaved_medians(calls, runs, warmup=3)


class _Browser(Backend):
    name = "browser"

    def __init__(self, path: Path, proto: onnx.ModelProto, session: object) -> None:
        self.session = session
        self.path = path
        super().__init__(lambda x: self.session.run(self.path, {"x": x})["x"])
        self.run(_zeros_like_input(proto))  # the page creates (and caches) its session here

    def latency(self, dims: dict[str, list[int]], dtype: type, runs: int) -> dict[str, float]:
        return self.session.run(self.path, {}, latency=dims, runs=runs)["latency"]


def canonical(name: str) -> str:
    """The back-end's name for ``name`` (``"ort"`` -> ``"onnxruntime"``)."""
    return ALIASES.get(name, name)


def open_backend(name: str, path: str | os.PathLike[str], proto: onnx.ModelProto) -> Backend:
    """Open ``path`` (already parsed as ``proto``) in the runtime ``name`` of :data:`BACKENDS`.

    Raises:
        RuntimeUnavailableError: the runtime is not installed.
        BackendLoadError: it is installed but rejects the file.
    """
    name, path = canonical(name), Path(path)
    if name not in BACKENDS:
        raise ExportError(f"expected a runtime in {BACKENDS} (or {sorted(ALIASES)}), got {name!r}")
    if name == "openvino":
        core = _openvino_core()
    if name == "browser":
        from .browser import shared_session

        session = shared_session()  # RuntimeUnavailableError / ExportError: not the file's fault
    try:
        if name == "browser":
            return _Browser(path, proto, session)
        if name == "onnxruntime":
            session = ort_session(path)
            run = lambda x: session.run(None, {INPUT_NAME: x})[0]  # noqa: E731
        elif name == "openvino":
            compiled = core.compile_model(core.read_model(str(path)), "CPU", _OPENVINO_CONFIG)
            run = lambda x: compiled(x)[0]  # noqa: E731
        else:
            run = _reference(proto)
    except (RuntimeUnavailableError, BackendLoadError):
        raise
    except Exception as e:  # each runtime raises its own types on a file it rejects
        raise BackendLoadError(f"{name} could not load {path.name}: {one_line(e)}") from e
    backend = Backend(run)
    backend.name = name
    return backend


# OpenVINO on CPU keeps float32 (no bf16/f16 inference precision hint), one stream, one thread.
_OPENVINO_CONFIG = {
    "INFERENCE_PRECISION_HINT": "f32",
    "NUM_STREAMS": "1",
    "INFERENCE_NUM_THREADS": "1",
}


def _openvino_core():  # -> openvino.Core
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailableError(
            "expected the openvino package for the openvino runtime, got none: install it with "
            "pip install 'isoproof[edge]' (or pip install openvino)"
        ) from None
    return openvino.Core()


def _reference(proto: onnx.ModelProto) -> Callable[[np.ndarray], np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(proto)

    def run(x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):  # overflow shows up as Inf/NaN in the report instead
            return evaluator.run(None, {INPUT_NAME: x})[0]

    return run


def _zeros_like_input(proto: onnx.ModelProto) -> np.ndarray:
    """Zeros of the file's input: its dtype, fixed dims as stored, symbolic dims 1."""
    dtype, dims = input_dims(proto)
    return np.zeros([1 if d is None else d for d in dims], dtype=dtype)
