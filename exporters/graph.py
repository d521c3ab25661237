"""ONNX graph helpers shared by export, verification and the edge variants.

* :data:`OP_ALLOWLIST`: the portable operators an exported classifier may use. The isotropic
  activation ``g(N) z`` with ``N = sqrt(max(o + (z*z) @ 1, eps^2))`` exports to
  ``Mul, MatMul, Add, Clip|Max, Sqrt, Tanh, Div``; affine maps to ``Gemm`` (dense) or
  ``Mul`` + ``Add`` (diagonal). :data:`FORBIDDEN_OPS` are the ones the mobile execution providers
  (NNAPI, CoreML) do not support and that a careless export of ``z / |z|`` produces.
* :func:`norm_subgraphs` finds, structurally, the nodes that compute each activation's norm and gain
  (from the square ``z*z`` to the division ``g = s(N) / N``): the float16 converter keeps them in
  float32 and the int8 quantiser leaves them alone.
* :func:`toposort`, :func:`save_model` (atomic, one self-contained file), :func:`ops_used`,
  :func:`stored_numbers`.

Example (an exported dense isotropic MLP)::

    >>> proto = onnx.load("model.onnx")  # doctest: +SKIP
    >>> sorted(ops_used(proto))  # doctest: +SKIP
    ['Add', 'Clip', 'Div', 'Gemm', 'MatMul', 'Mul', 'Sqrt', 'Tanh']
    >>> disallowed_ops(proto), len(norm_subgraphs(proto))  # doctest: +SKIP
    ([], 3)
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from isoproof.files import atomic_path

from .errors import ExportError

__all__ = [
    "FORBIDDEN_OPS",
    "OP_ALLOWLIST",
    "QUANTIZED_OPS",
    "disallowed_ops",
    "ensure_node_names",
    "norm_subgraphs",
    "ops_used",
    "opset_of",
    "save_model",
    "set_metadata_prop",
    "stored_numbers",
    "strip_debug_metadata",
    "toposort",
]

FORBIDDEN_OPS: frozenset[str] = frozenset(
    {"Where", "Einsum", "ReduceL2", "LpNormalization", "ScatterND"}
)
"""Operators an isotropic export must never contain (not portable to the mobile providers)."""

OP_ALLOWLIST: frozenset[str] = frozenset(
    {
        # affine maps: dense (Gemm / MatMul + Add) and diagonal (Mul + Add, Slice / Pad when
        # the diagonal layer is rectangular)
        "Gemm",
        "MatMul",
        "Mul",
        "Add",
        "Sub",
        "Slice",
        "Pad",
        "Concat",
        "Reshape",
        "Flatten",
        "Identity",
        "Cast",
        # convolutional nets: kernels, the ones-kernel channel norm, average pooling
        "Conv",
        "AveragePool",
        # the isotropic activation and its radial profiles
        "Clip",
        "Max",
        "Min",
        "Sqrt",
        "Div",
        "Tanh",
        "Log",
        "Exp",
        "Relu",
        # elementwise activations of peer classifiers
        "Sigmoid",
        "Softmax",
        "LeakyRelu",
        "Neg",
        "Abs",
    }
)
"""Portable operators (default ONNX domain) an exported classifier may use."""

QUANTIZED_OPS: frozenset[str] = frozenset(
    {
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "ConvInteger",
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearMatMul",
    }
)
"""Extra operators an int8 file (``onnxruntime.quantization``) may use."""


def ops_used(proto: onnx.ModelProto) -> dict[str, int]:
    """``{op_type: count}`` over the main graph; ops of other domains as ``"domain::Op"``."""
    counts = Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        for n in proto.graph.node
    )
    return dict(sorted(counts.items()))


def opset_of(proto: onnx.ModelProto) -> int:
    """The model's default-domain opset version."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def disallowed_ops(proto: onnx.ModelProto, allow: Iterable[str] = OP_ALLOWLIST) -> list[str]:
    """Operators used by ``proto`` that are not in ``allow`` (or are in :data:`FORBIDDEN_OPS`)."""
    allowed = set(allow) - FORBIDDEN_OPS
    return sorted(op for op in ops_used(proto) if op not in allowed)


def stored_numbers(proto: onnx.ModelProto) -> int:
    """Number of values held by the graph's initializers (weights, biases, constants)."""
    return int(sum(int(np.prod(t.dims, dtype=np.int64)) for t in proto.graph.initializer))


def strip_debug_metadata(proto: onnx.ModelProto) -> None:
    """Remove the exporter's per-node debug properties (stack traces, source paths), in place."""
    for node in proto.graph.node:
        del node.metadata_props[:]
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        del value.metadata_props[:]
    for tensor in proto.graph.initializer:
        del tensor.metadata_props[:]


def ensure_node_names(graph: onnx.GraphProto) -> None:
    """Give every node a unique, non-empty name (converters select nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` topologically, in place (stable; raises on a cycle)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes = list(graph.node)
    producers = {out: k for k, n in enumerate(nodes) for out in n.output}
    pending = [
        sum(1 for name in set(n.input) if name not in known and name in producers) for n in nodes
    ]
    consumers: dict[int, list[int]] = {}
    for k, n in enumerate(nodes):
        for name in set(n.input):
            if name not in known and name in producers:
                consumers.setdefault(producers[name], []).append(k)
    ready = deque(k for k, p in enumerate(pending) if p == 0)
    order: list[int] = []
    while ready:
        k = ready.popleft()
        order.append(k)
        for c in consumers.get(k, []):
            pending[c] -= 1
            if pending[c] == 0:
                ready.append(c)
    if len(order) != len(nodes):
        stuck = len(nodes) - len(order)
        raise ExportError(f"expected an acyclic graph, got a cycle among {stuck} nodes")
    sorted_nodes = [onnx.NodeProto() for _ in order]
    for dst, k in zip(sorted_nodes, order, strict=True):
        dst.CopyFrom(nodes[k])
    del graph.node[:]
    graph.node.extend(sorted_nodes)


def _is_square(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    if node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]:
        return True
    if node.op_type == "Pow" and node.input[1] in constants:
        return bool(np.all(constants[node.input[1]] == 2))
    return False


def norm_subgraphs(proto: onnx.ModelProto) -> list[list[str]]:
    """Node names of each isotropic norm-and-gain subgraph, in graph order.

    A subgraph is anchored at a ``Sqrt`` node ``N`` and a ``Div`` node ``g = s(N) / N`` (its
    divisor is ``N``). Backwards it contains every node between ``N`` and the square ``z*z``
    (``Mul(z, z)`` or ``Pow(z, 2)``), which must be the only non-constant source; forwards, every
    node on a path from ``N`` to the ``Div`` (the radial profile ``s``). Nodes are matched by
    structure, not by name, so this works for any module that computes an isotropic gain.
    """
    graph = proto.graph
    ensure_node_names(graph)
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    found: list[list[str]] = []
    for sqrt in (n for n in graph.node if n.op_type == "Sqrt"):
        back = _backward_to_square(sqrt, producer, constants)
        if back is None:
            continue
        divs = [
            d
            for d in consumers.get(sqrt.output[0], [])
            if d.op_type == "Div" and d.input[1] == sqrt.output[0]
        ]
        if len(divs) != 1:
            continue
        forward = _between(sqrt, divs[0], consumers)
        names = {n.name for n in back} | {sqrt.name, divs[0].name} | {n.name for n in forward}
        found.append([n.name for n in graph.node if n.name in names])
    return found


def _backward_to_square(
    start: onnx.NodeProto,
    producer: dict[str, onnx.NodeProto],
    constants: dict[str, np.ndarray],
) -> list[onnx.NodeProto] | None:
    """Ancestors of ``start`` up to a square node; ``None`` if another path reaches the data."""
    seen: dict[str, onnx.NodeProto] = {}
    squares = 0
    stack = [start]
    while stack:
        node = stack.pop()
        for name in node.input:
            if name == "" or name in constants:
                continue
            src = producer.get(name)
            if src is None:  # a graph input: the norm would depend on data not via z*z
                return None
            if src.name in seen:
                continue
            seen[src.name] = src
            if _is_square(src, constants):
                squares += 1
                continue
            if len(seen) > 64:  # a norm subgraph is a handful of nodes
                return None
            stack.append(src)
    return list(seen.values()) if squares == 1 else None


def _between(
    start: onnx.NodeProto, end: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]
) -> list[onnx.NodeProto]:
    """Nodes on a path from ``start`` to ``end`` (both excluded)."""
    reach: dict[str, onnx.NodeProto] = {}
    stack = [start]
    while stack:
        node = stack.pop()
        for out in node.output:
            for c in consumers.get(out, []):
                if c.name != end.name and c.name not in reach and len(reach) < 64:
                    reach[c.name] = c
                    stack.append(c)
    end_inputs = set(end.input)
    keep: dict[str, onnx.NodeProto] = {}
    changed = True
    while changed:  # keep the nodes whose outputs lead to ``end``
        changed = False
        for name, node in reach.items():
            if name not in keep and any(
                o in end_inputs or any(o in k.input for k in keep.values()) for o in node.output
            ):
                keep[name] = node
                changed = True
    return list(keep.values())


def set_metadata_prop(proto: onnx.ModelProto, key: str, value: str) -> None:
    """Set (or replace) one entry of the model's ``metadata_props``."""
    for prop in proto.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    proto.metadata_props.add(key=key, value=value)


def save_model(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``proto`` to ``path`` as one self-contained file (no external data), atomically."""
    path = Path(path)
    size = proto.ByteSize()
    if size >= 2**31:
        raise ExportError(
            f"expected a model under the 2 GiB protobuf limit for a single file, got {size} bytes"
        )
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
    return path
