"""Running exported classifiers: the input signature, CPU sessions, fixed-batch chunking.

Every exported file has one input ``[batch, n_in]`` (``[batch, C, L]`` or ``[batch, C, H, W]``
for a CNN) named ``input`` and one output ``logits``;
``batch`` is symbolic (dynamic) or fixed. :func:`run_batched` feeds a fixed-batch file any number of
rows in zero-padded chunks, so verification and accuracy code never care which kind it has.

Example::

    >>> session = ort_session("m.onnx")  # doctest: +SKIP
    >>> dtype, n_in, fixed = input_spec(onnx.load("m.onnx"))  # doctest: +SKIP
    >>> run = lambda x: session.run(None, {"input": x})[0]  # doctest: +SKIP
    >>> logits = run_batched(run, rows, fixed)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import onnx

from .errors import ExportError

__all__ = [
    "input_dims",
    "input_signature",
    "input_spec",
    "interleaved_medians",
    "ort_session",
    "run_batched",
]


def input_spec(proto: onnx.ModelProto) -> tuple[type, int, int | None]:
    """``(numpy dtype, n_in, fixed batch or None)`` of the file's single ``[batch, n_in]`` input."""
    dtype, sample, fixed = input_signature(proto)
    if len(sample) != 1:
        raise ExportError(f"expected an input of shape [batch, n_in], got [batch, {sample}]")
    return dtype, sample[0], fixed


def input_signature(proto: onnx.ModelProto) -> tuple[type, tuple[int, ...], int | None]:
    """``(numpy dtype, sample shape, fixed batch or None)`` of the file's single input
    ``[batch, *sample]`` (``sample`` is ``(n_in,)`` for an MLP, ``(C, H, W)`` for a CNN)."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ExportError(f"expected one graph input, got {[i.name for i in inputs]}")
    tensor = inputs[0].type.tensor_type
    dims = tensor.shape.dim
    if len(dims) < 2 or not all(d.HasField("dim_value") for d in dims[1:]):
        raise ExportError(
            f"expected input {inputs[0].name!r} of shape [batch, *sample] with a fixed sample "
            f"shape, got {len(dims)} dims"
        )
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).type
    fixed = int(dims[0].dim_value) if dims[0].HasField("dim_value") else None
    return dtype, tuple(int(d.dim_value) for d in dims[1:]), fixed


def input_dims(proto: onnx.ModelProto) -> tuple[type, list[int | None]]:
    """``(numpy dtype, dims)`` of the file's single input, any rank; ``None`` for a symbolic dim."""
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ExportError(f"expected one graph input, got {[i.name for i in inputs]}")
    tensor = inputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).type, dims


def ort_session(path: str | os.PathLike[str], *, threads: int = 1):  # -> ort.InferenceSession
    """An onnxruntime session on the CPU provider only (explicit), with ``threads`` intra-op
    threads (0 = onnxruntime's default, all cores) and warnings silenced."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_batched(
    run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, fixed: int | None
) -> np.ndarray:
    """``run(x)``; for a fixed batch size, in zero-padded chunks of ``fixed`` rows."""
    if fixed is None:
        return np.asarray(run(x))
    outs = []
    for start in range(0, x.shape[0], fixed):
        chunk = x[start : start + fixed]
        pad = fixed - chunk.shape[0]
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
        outs.append(np.asarray(run(chunk))[: fixed - pad])
    return np.concatenate(outs)


def interleaved_medians(
    runs: dict[str, Callable[[], object]], runs_per_variant: int, rounds: int = 10, warmup: int = 10
) -> dict[str, float]:
    """Median seconds per call of each zero-argument callable, interleaved over ``rounds``, so
    that load changes on a shared machine hit every callable alike (compare ratios in one run).
    """
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    per_round = -(-runs_per_variant // rounds)
    for _ in range(rounds):
        for name, fn in runs.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}
