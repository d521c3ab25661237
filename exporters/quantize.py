"""``quantize_int8``: int8 weights for CPU (dynamic) or NPUs (static QDQ), with the accuracy cost.

* **Dynamic** (default): ``onnxruntime.quantization.quantize_dynamic`` stores the weights of the
  affine maps as int8 (per output channel by default) and quantises each activation batch on the
  fly (``DynamicQuantizeLinear`` + ``MatMulInteger``). ORT's dynamic path only handles ``MatMul``,
  so every ``Gemm`` with a constant weight is first rewritten as ``MatMul`` (+ ``Add``), which is
  the same function.
* **Static QDQ** (when ``calibration`` rows are given): ``quantize_static`` with
  ``QuantizeLinear``/``DequantizeLinear`` pairs whose activation ranges come from running the
  calibration rows (min-max), the format NPU providers expect. The file is raised to opset 19
  first (``onnx.version_converter``) so that ``onnx.reference`` can evaluate it too.

In both modes the isotropic norm subgraphs (:func:`~exporters.graph.norm_subgraphs`: the
``(z*z) @ 1`` sum of squares and the gain) are excluded: quantising ``z*z`` to 8 bits would put
the rounding error straight into every gain. Only ``MatMul``/``Gemm`` weights are quantised;
diagonal layers (``Mul``), biases, psi and the intrinsic lengths stay float32.

The :class:`Int8Report` gives file sizes and, with labelled data, the accuracy of the float32 and
int8 files (both run by onnxruntime's CPU provider) and the change in percentage points.

Example::

    >>> report = quantize_int8("m.onnx", "m.int8.onnx", labelled=(x_test, y_test))  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, version_converter

from isoproof.table import format_table

from .errors import ExportError
from .export import INPUT_NAME, check_proto
from .graph import (
    ensure_node_names,
    norm_subgraphs,
    opset_of,
    save_model,
    set_metadata_prop,
    toposort,
)
from .runtime import input_signature, ort_session, run_batched

__all__ = ["Int8Report", "gemm_to_matmul", "quantize_int8"]

ArrayLike = torch.Tensor | np.ndarray
_QDQ_OPSET = 19


@dataclass(frozen=True)
class Int8Report:
    """What :func:`quantize_int8` produced and what it cost."""

    path: str
    mode: str
    per_channel: bool
    reduce_range: bool
    size_before: int
    size_after: int
    quantized_nodes: int
    excluded_nodes: int
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    max_abs_logit_change: float | None = None

    @property
    def accuracy_change(self) -> float | None:
        """int8 minus float32 accuracy, in percentage points."""
        if self.accuracy_before is None or self.accuracy_after is None:
            return None
        return 100.0 * (self.accuracy_after - self.accuracy_before)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_change_pp": self.accuracy_change}

    def table(self) -> str:
        rows = [
            [
                "mode",
                f"{self.mode} (per-channel: {self.per_channel}, "
                f"7-bit weights: {self.reduce_range})",
            ],
            ["file size", f"{self.size_before / 1024:.1f} KiB -> {self.size_after / 1024:.1f} KiB"],
            ["quantised / excluded nodes", f"{self.quantized_nodes} / {self.excluded_nodes}"],
        ]
        if self.accuracy_change is not None:
            rows.append(
                [
                    "accuracy (labelled data)",
                    f"{100 * self.accuracy_before:.2f}% -> {100 * self.accuracy_after:.2f}% "
                    f"({self.accuracy_change:+.2f} pp)",
                ]
            )
            rows.append(["max |logit change|", self.max_abs_logit_change])
        return f"{self.path}\n" + format_table(["int8", "value"], rows)


def quantize_int8(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    calibration: ArrayLike | None = None,
    per_channel: bool = True,
    reduce_range: bool = True,
    labelled: tuple[ArrayLike, ArrayLike | Sequence[int]] | None = None,
) -> Int8Report:
    """Write an int8 version of the float32 ONNX file ``path`` to ``out``.

    Args:
        path: a float32 file (from :func:`~exporters.export.export_onnx`).
        out: destination (written atomically).
        calibration: rows ``[N, *sample]``; when given, static QDQ quantisation calibrated on them,
            otherwise dynamic quantisation.
        per_channel: one weight scale per output channel (more accurate) instead of per tensor.
        reduce_range: 7-bit weights. On x86 CPUs without VNNI, onnxruntime's ``u8 x s8`` integer
            kernels can saturate their 16-bit intermediate sums with full 8-bit weights (measured
            on digits: max logit error 0.9 instead of 0.2, while the reference evaluator, which
            does not saturate, gave 0.2); 7-bit weights avoid it at a small precision cost.
        labelled: ``(x, y)`` to measure the accuracy change (float32 file vs int8 file).

    Returns:
        The :class:`Int8Report`.
    """
    source = Path(path)
    proto, excluded, n_in, fixed = _load_float32(source)
    x, y = (None, None) if labelled is None else _labelled_arrays(labelled, n_in)
    rows = None if calibration is None else _as_array(calibration, n_in, "calibration")
    mode = "dynamic" if rows is None else "static QDQ"
    result = _quantized(proto, excluded, rows, fixed, per_channel, reduce_range)
    quantized = _count_quantized(result)
    if quantized == 0:
        raise ExportError(
            f"expected at least one quantised MatMul/Gemm/Conv in {source.name}, got none"
        )
    toposort(result.graph)
    set_metadata_prop(
        result,
        "isoproof.variant",
        f"int8 {mode}, per_channel={per_channel}, reduce_range={reduce_range}",
    )
    out = save_model(check_proto(result), out)
    accuracy_before = accuracy_after = max_change = None
    if x is not None:
        accuracy_before, accuracy_after, max_change = _accuracy_change(source, out, x, y, fixed)
    return Int8Report(
        path=str(out),
        mode=mode,
        per_channel=per_channel,
        reduce_range=reduce_range,
        size_before=source.stat().st_size,
        size_after=out.stat().st_size,
        quantized_nodes=quantized,
        excluded_nodes=len(excluded),
        accuracy_before=accuracy_before,
        accuracy_after=accuracy_after,
        max_abs_logit_change=max_change,
    )


def _load_float32(source: Path) -> tuple[onnx.ModelProto, list[str], tuple[int, ...], int | None]:
    """The float32 file at ``source``: its graph (every node named), the names of its norm
    subgraphs' nodes (never quantised), its sample shape and its fixed batch (or ``None``)."""
    if not source.is_file():
        raise ExportError(f"expected an ONNX file at {source}, got no such file")
    proto = onnx.load(str(source))
    ensure_node_names(proto.graph)
    excluded = sorted({name for group in norm_subgraphs(proto) for name in group})
    dtype, n_in, fixed = input_signature(proto)  # n_in: the sample shape
    if dtype != np.float32:
        raise ExportError(f"expected a float32 ONNX file, got input dtype {np.dtype(dtype).name}")
    return proto, excluded, n_in, fixed


def _labelled_arrays(
    labelled: tuple[ArrayLike, ArrayLike | Sequence[int]], sample: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as arrays: ``x`` float32 ``[rows, *sample]``, ``y`` ``[rows]``."""
    x = _as_array(labelled[0], sample, "labelled inputs")
    y = np.asarray(labelled[1].cpu() if isinstance(labelled[1], torch.Tensor) else labelled[1])
    if y.shape != (x.shape[0],):
        raise ExportError(f"expected labels of shape [{x.shape[0]}], got {y.shape}")
    return x, y


def _quantized(
    proto: onnx.ModelProto,
    excluded: list[str],
    rows: np.ndarray | None,
    fixed: int | None,
    per_channel: bool,
    reduce_range: bool,
) -> onnx.ModelProto:
    """onnxruntime's quantiser on ``proto`` (modified: Gemm -> MatMul, or raised to opset 19):
    dynamic without calibration ``rows``, static QDQ calibrated on them otherwise."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    common = {
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "weight_type": QuantType.QInt8,
        "nodes_to_exclude": excluded,
        "extra_options": {"MatMulConstBOnly": True},
    }
    with tempfile.TemporaryDirectory(prefix="isoproof-int8-") as tmp, _quiet_quantizer():
        staged = Path(tmp) / "int8.onnx"
        if rows is None:
            gemm_to_matmul(proto)
            quantize_dynamic(proto, staged, op_types_to_quantize=["MatMul", "Conv"], **common)
        else:
            if opset_of(proto) < _QDQ_OPSET:  # the reference evaluator's DequantizeLinear needs 19
                proto = version_converter.convert_version(proto, _QDQ_OPSET)
            quantize_static(
                proto,
                staged,
                _Reader(rows, fixed),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Gemm", "MatMul", "Conv"],
                activation_type=QuantType.QInt8,
                **common,
            )
        return onnx.load(str(staged))


def _count_quantized(proto: onnx.ModelProto) -> int:
    """Nodes computing on int8 weights: ``MatMulInteger``/``ConvInteger`` (dynamic), or
    ``Gemm``/``MatMul``/``Conv`` fed by a ``DequantizeLinear`` (static QDQ)."""
    nodes = proto.graph.node
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    return sum(
        n.op_type in ("MatMulInteger", "ConvInteger")
        or (n.op_type in ("Gemm", "MatMul", "Conv") and any(i in dequantized for i in n.input))
        for n in nodes
    )


def _accuracy_change(
    source: Path, out: Path, x: np.ndarray, y: np.ndarray, fixed: int | None
) -> tuple[float, float, float]:
    """Accuracy of the float32 file ``source`` and of the int8 file ``out`` on ``(x, y)`` (both
    in onnxruntime's CPU provider), and the largest change of any logit."""
    before, after = (_logits(p, x, fixed) for p in (source, out))
    accuracy_before = float((before.argmax(1) == y).mean())
    accuracy_after = float((after.argmax(1) == y).mean())
    return accuracy_before, accuracy_after, float(np.abs(after - before).max())


def gemm_to_matmul(proto: onnx.ModelProto) -> int:
    """Rewrite ``Gemm(x, W, b)`` (constant ``W``, ``alpha = beta = 1``, no ``transA``) as
    ``MatMul(x, W^T) + b``, in place; returns the number of rewritten nodes."""
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    count = 0
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        convertible = node.op_type == "Gemm" and plain and not attrs.get("transA", 0)
        if not convertible or node.input[1] not in inits:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = f"{node.input[1]}__matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(node.input) > 2 and node.input[2] != ""
        product = f"{node.output[0]}__matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [product], name=node.name))
        if has_bias:
            nodes.append(
                helper.make_node(
                    "Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}__bias"
                )
            )
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count


class _Reader:
    """``CalibrationDataReader`` over an array (chunks of 64 rows, or of the fixed batch)."""

    def __init__(self, rows: np.ndarray, fixed: int | None) -> None:
        size = fixed or 64
        chunks = [rows[i : i + size] for i in range(0, rows.shape[0], size)]
        if fixed is not None:
            full = [c for c in chunks if c.shape[0] == fixed]
            chunks = full or [np.resize(rows, (fixed, *rows.shape[1:]))]  # repeat rows to fill
        self._chunks = iter(chunks)

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._chunks, None)
        return None if chunk is None else {INPUT_NAME: chunk}

    def rewind(self) -> None:  # pragma: no cover - part of the ORT protocol, unused here
        raise NotImplementedError


def _as_array(values: ArrayLike, sample: tuple[int, ...], what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.shape[1:] != sample or array.shape[0] == 0:
        want = ", ".join(map(str, sample))
        raise ExportError(f"expected {what} of shape [rows, {want}], got {array.shape}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _logits(path: Path, x: np.ndarray, fixed: int | None) -> np.ndarray:
    session = ort_session(path)
    return run_batched(lambda rows: session.run(None, {INPUT_NAME: rows})[0], x, fixed)


class _NoPreprocessingAdvice(logging.Filter):
    """Drop onnxruntime.quantization's advice to pre-process (it would re-fuse MatMul + Add).

    onnxruntime logs it through the root logger (``logging.warning``), so the filter sits there,
    but only for the duration of one quantisation (:func:`_quiet_quantizer`) and it drops only
    that record from onnxruntime's own files: other records, even from other threads, pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ours = "onnxruntime" in Path(record.pathname).parts
        return not (ours and "pre-processing" in record.getMessage())


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """The filter above on the root logger, removed in ``finally``."""
    root = logging.getLogger()
    quiet = _NoPreprocessingAdvice()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
