"""``to_float16``: a float16 copy of a float32 export whose isotropic norms stay in float32.

Why. The activation needs ``|z|^2 = (z * z) @ 1``. In float16 (largest finite value 65504) that
sum overflows once ``|z|`` passes about 256: ``N = inf`` and the gain ``tanh(N) / N`` becomes 0,
which silently zeroes the layer (or gives NaN). Everything else is safe in float16: the gain is at
most 1 and the activations are bounded by ``sup |s|``.

How (a small typed rewrite of the graph, float32 -> float16):

* :func:`~exporters.graph.norm_subgraphs` finds each norm-and-gain subgraph structurally (from the
  square ``z * z`` to ``g = s(N) / N``); those nodes keep computing in float32;
* every other float tensor becomes float16: initializers are converted (a copy is kept in float32
  when a norm subgraph also reads them), ``Cast`` targets and float ``Constant`` values follow;
* one ``Cast`` is inserted per (value, type) boundary: ``z`` up to float32 at the square, the gain
  ``g`` (in ``(0, 1]``) down to float16, and float32 graph input / output at the edges, so the
  file's interface stays float32;
* the graph is re-sorted topologically, its value infos re-inferred, and it must pass
  ``onnx.checker`` (full) and strict shape inference.

Check it with :func:`~exporters.verify.verify_onnx`: its ``reference`` evaluator really computes in
float16 (onnxruntime's CPU provider runs some float16 kernels in float32 and would hide an
overflow). ``keep_norm_float32=False`` gives the naive all-float16 file (a negative control).

Example::

    >>> to_float16("model.onnx", "model.fp16.onnx")  # doctest: +SKIP
    PosixPath('model.fp16.onnx')
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ExportError
from .export import check_proto
from .graph import (
    ensure_node_names,
    norm_subgraphs,
    save_model,
    set_metadata_prop,
    toposort,
)

__all__ = ["to_float16"]

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16
_FP16_MAX = float(np.finfo(np.float16).max)


def to_float16(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    keep_norm_float32: bool = True,
) -> Path:
    """Write a float16 version of the float32 ONNX file ``path`` to ``out``.

    Args:
        path: a float32 file (from :func:`~exporters.export.export_onnx`).
        out: destination (written atomically).
        keep_norm_float32: keep every isotropic norm subgraph in float32 (default); ``False``
            converts every node (overflows for ``|z|`` above about 256).

    Returns:
        ``out``. Its metadata gains ``isoproof.variant`` (and ``isoproof.float16_clamped`` if a
        weight had to be clamped into the float16 range).
    """
    proto = _load_float32(path)
    graph = proto.graph
    subgraph = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in subgraph for n in graph.node for a in n.attribute):
        raise ExportError("expected a graph without control-flow subgraphs, got If/Loop/Scan")
    ensure_node_names(graph)
    groups = norm_subgraphs(proto) if keep_norm_float32 else []
    blocked = {name for group in groups for name in group}
    clamped = _convert(graph, blocked)
    toposort(graph)
    del graph.value_info[:]
    variant = (
        f"float16; {len(groups)} isotropic norm subgraphs kept in float32"
        if keep_norm_float32
        else "float16 (naive: every node converted)"
    )
    set_metadata_prop(proto, "isoproof.variant", variant)
    if clamped:
        set_metadata_prop(proto, "isoproof.float16_clamped", ", ".join(clamped)[:1000])
    return save_model(check_proto(proto), out)


def _load_float32(path: str | os.PathLike[str]) -> onnx.ModelProto:
    if not Path(path).is_file():
        raise ExportError(f"expected an ONNX file at {path}, got no such file")
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    types = {i.type.tensor_type.elem_type for i in proto.graph.input}
    if types != {F32}:
        names = sorted(helper.tensor_dtype_to_np_dtype(t).name for t in types)
        raise ExportError(f"expected a float32 ONNX file, got input types {names}")
    return proto


def _convert(graph: onnx.GraphProto, blocked: set[str]) -> list[str]:
    """Retype ``graph`` in place; returns the names of initializers clamped to the fp16 range."""
    values = (*graph.value_info, *graph.input, *graph.output)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in graph.initializer})
    # 1. initializers: float16 for unblocked readers, float32 for blocked ones (copied if both)
    inits = {t.name: t for t in graph.initializer if t.data_type == F32}
    readers: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, set()).add(node.name in blocked)
    clamped: list[str] = []
    renamed: dict[str, str] = {}  # float32 name read by unblocked nodes -> its float16 copy
    for name, kinds in readers.items():
        if False not in kinds:
            continue  # only norm subgraphs read it: stays float32
        array = numpy_helper.to_array(inits[name])
        if np.abs(array).max(initial=0.0) > _FP16_MAX:
            clamped.append(name)
        half = numpy_helper.from_array(
            np.clip(array, -_FP16_MAX, _FP16_MAX).astype(np.float16),
            name if True not in kinds else f"{name}__float16",
        )
        if True in kinds:
            graph.initializer.append(half)
            renamed[name] = half.name
        else:
            inits[name].CopyFrom(half)
        types[half.name] = F16
    # 2. nodes: unblocked float outputs become float16; insert one Cast per boundary
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []

    def cast(value: str, to: int) -> str:
        key = (value, to)
        if key not in casts:
            casts[key] = f"{value}__to_{'f16' if to == F16 else 'f32'}"
            new_nodes.append(
                helper.make_node("Cast", [value], [casts[key]], name=f"cast_{casts[key]}", to=to)
            )
        return casts[key]

    for node in graph.node:
        want = F32 if node.name in blocked else F16
        for k, name in enumerate(node.input):
            if name in renamed and want == F16:
                node.input[k] = name = renamed[name]
            if types.get(name) in (F32, F16) and types[name] != want:
                node.input[k] = cast(name, want)
        if want == F16:
            _retype_attributes(node)
            for out in node.output:
                if types.get(out) == F32:
                    types[out] = F16
    # 3. graph outputs keep float32
    for output in graph.output:
        if types.get(output.name) == F16:
            inner = f"{output.name}__f16"
            for node in graph.node:
                node.output[:] = [inner if o == output.name else o for o in node.output]
                node.input[:] = [inner if i == output.name else i for i in node.input]
            new_nodes.append(
                helper.make_node("Cast", [inner], [output.name], name=f"cast_{output.name}", to=F32)
            )
    graph.node.extend(new_nodes)
    return clamped


def _retype_attributes(node: onnx.NodeProto) -> None:
    """float32 -> float16 in a converted node's ``Cast(to=)`` and float tensor attributes."""
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == F32:
            attr.i = F16
        elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == F32:
            array = numpy_helper.to_array(attr.t)
            attr.t.CopyFrom(numpy_helper.from_array(array.astype(np.float16), attr.t.name))
