"""``export_onnx``: one self-contained, checked ONNX file from an isotropic (or any) classifier.

The model is traced by ``torch.onnx.export(dynamo=True)`` in eval mode and inside
:func:`isoproof.export_mode`, where every isotropic activation uses the plain norm::

    N = sqrt(max(o + (z * z) @ 1, eps^2)),     g = s(N) / N,     f(z) = g z

which lowers to ``Mul, MatMul, Add, Clip, Sqrt, Tanh, Div`` (no ``Where``, ``Einsum``,
``ReduceL2``, ``LpNormalization`` or ``ScatterND``: see :data:`~exporters.graph.OP_ALLOWLIST`).
A :class:`isoproof.DiagonalLinear` exports as ``x * d + b`` (``Mul`` + ``Add``), never as a dense
``Gemm`` of zeros. Parameters shared by several layers (one ``nn.Parameter`` object) are lifted once
by ``torch.export``, so the file stores them once.

After export the exporter's debug properties (stack traces, local paths) are removed, the
isoproof metadata is written to ``metadata_props``, and the model must pass
``onnx.checker.check_model(full_check=True)`` and strict shape inference before it is written
(atomically, no ``.onnx.data`` sidecar).

Metadata keys (:func:`read_onnx_metadata`): ``isoproof.widths`` (JSON list or ``"n/a"``),
``isoproof.version``, ``isoproof.source_sha256`` (:func:`isoproof.io.model_digest` of the model as
given), ``isoproof.opset``, ``isoproof.batch``, ``isoproof.dtype``, ``isoproof.model_class``,
``isoproof.parameters``, ``isoproof.config`` (IsotropicMLP and CollapsedMLP only) and
``isoproof.producer``.

A :class:`isoproof.CollapsedMLP` (:func:`isoproof.collapse`) exports like any module: one
``MatMul`` of the input with the stacked factors, ``Slice`` per layer, then elementwise
``Mul``/``Add`` and each layer's norm (``(y*y) @ 1``, the same plain form as every isotropic
activation, ``r_l`` wide), all within :data:`~exporters.graph.OP_ALLOWLIST`.

Example (a few seconds: ``torch.export`` traces the model)::

    >>> model = isoproof.IsotropicMLP([8, 16, 16, 16, 4])
    >>> _ = isoproof.sparsify(model)
    >>> path = export_onnx(model, tmp_path / "m.onnx")  # doctest: +SKIP
    >>> read_onnx_metadata(path)["isoproof.widths"]  # doctest: +SKIP
    '[8, 16, 16, 16, 4]'
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Literal

import onnx
import torch
from torch import nn

import isoproof as ip
from isoproof._validate import check_int
from isoproof.exceptions import NonFiniteError, one_line
from isoproof.io import model_digest
from isoproof.standard import linear_layers

from .errors import ExportError
from .graph import save_model, strip_debug_metadata

__all__ = [
    "DTYPES",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "check_proto",
    "export_onnx",
    "read_onnx_metadata",
]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
_MIN_OPSET = 18  # the dynamo exporter's minimum

Batch = int | Literal["dynamic"]
# models that know their widths and config
_WITH_WIDTHS = (ip.IsotropicMLP, ip.IsotropicConvNet, ip.CollapsedMLP)
_REGISTRIES: dict[object, object] = {}
_REGISTRY_LOCK = threading.Lock()
_REGISTRY_CACHE_SIZE = 2  # opsets kept (an export uses one)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = 18,
    batch: Batch = "dynamic",
    dtype: str = "float32",
    input_width: int | None = None,
    input_shape: Sequence[int] | None = None,
) -> Path:
    """Export a classifier ``[batch, *sample] -> [batch, n_out]`` to one checked ONNX file.

    ``sample`` is ``[n_in]`` for an MLP and ``[C, L]`` / ``[C, H, W]`` for a convolutional net
    (:class:`isoproof.IsotropicConvNet`: convolutions export as ``Conv``, average pooling as
    ``AveragePool``, the channel norm at each position as ``Mul`` + a ones-kernel 1x1 ``Conv``).

    Args:
        model: an :class:`isoproof.IsotropicMLP`, :class:`isoproof.IsotropicConvNet` or any
            ``nn.Module`` taking ``[batch, *sample]``.
            It is copied (to CPU, ``dtype``, eval mode); the original is not modified.
        path: the ``.onnx`` file to write (atomically).
        opset: ONNX opset (>= 18).
        batch: ``"dynamic"`` (a symbolic ``batch`` axis) or a fixed batch size (needed by the
            mobile providers NNAPI and CoreML).
        dtype: ``"float32"`` (default) or ``"float64"``; float16 and int8 are derived from a
            float32 file (:mod:`exporters.edge`).
        input_width: ``n_in`` for modules whose first ``nn.Linear`` does not reveal it.
        input_shape: ``sample`` for other modules that take more than one axis (a plain CNN:
            its layers do not reveal the spatial size); checked against an isotropic model's.

    Returns:
        ``path``. Input and output are named ``input`` and ``logits``.

    Raises:
        ExportError: invalid arguments, a failing trace, or a file that fails the ONNX checker.
        NonFiniteError: a parameter holds NaN/Inf (nothing is written).
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}")
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteError(f"expected finite weights, got NaN/Inf in {name!r} (not exported)")
    opset = _check_opset(opset)
    batch = _check_batch(batch)
    if dtype not in DTYPES:
        raise ExportError(f"expected dtype in {sorted(DTYPES)}, got {dtype!r}")
    sample = _sample_shape(model, input_width, input_shape)

    work = copy.deepcopy(model).to(device="cpu", dtype=DTYPES[dtype]).eval()
    rows = 2 if batch == "dynamic" else batch  # batch 1 would be specialised by torch.export
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(rows, *sample, dtype=DTYPES[dtype], generator=generator)
    dynamic = ({0: torch.export.Dim("batch")},) if batch == "dynamic" else None
    try:
        with _quiet_exporter(), _reuse_torchlib_registry(), ip.export_mode(work), torch.no_grad():
            program = torch.onnx.export(
                work,
                (example,),
                dynamo=True,
                external_data=False,
                optimize=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=dynamic,
                verbose=False,
            )
            proto = program.model_proto
    except Exception as e:  # the exporter raises many types; report them as one
        raise ExportError(
            f"expected a module torch.onnx.export(dynamo=True) can trace, got "
            f"{type(model).__name__} failing with {type(e).__name__}: {one_line(e, 300)}"
        ) from e

    strip_debug_metadata(proto)
    _set_metadata(proto, model, opset=opset, batch=batch, dtype=dtype)
    proto = check_proto(proto)
    return save_model(proto, path)


def check_proto(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``onnx.checker`` (full check) and strict shape inference; returns the inferred model."""
    try:
        onnx.checker.check_model(proto, full_check=True)
        return onnx.shape_inference.infer_shapes(
            proto, check_type=True, strict_mode=True, data_prop=True
        )
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"expected a valid ONNX model, got: {one_line(e, 300)}") from e


def read_onnx_metadata(path: str | os.PathLike[str] | onnx.ModelProto) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (or model) as a dict."""
    if isinstance(path, onnx.ModelProto):
        proto = path
    else:
        if not Path(path).is_file():
            raise ExportError(f"expected an ONNX file at {path}, got no such file")
        proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _set_metadata(
    proto: onnx.ModelProto, model: nn.Module, *, opset: int, batch: Batch, dtype: str
) -> None:
    is_iso = isinstance(model, _WITH_WIDTHS)
    props = {
        "isoproof.widths": json.dumps(model.widths) if is_iso else "n/a",
        "isoproof.version": ip.__version__,
        "isoproof.source_sha256": model_digest(model),
        "isoproof.opset": str(opset),
        "isoproof.batch": str(batch),
        "isoproof.dtype": dtype,
        "isoproof.model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "isoproof.parameters": str(ip.count_parameters(model)),  # the one stored count
        "isoproof.producer": (
            f"isoproof.exporters {ip.__version__}; torch {torch.__version__}; "
            f"onnx {onnx.__version__}; onnxscript {_version('onnxscript')}"
        ),
    }
    if is_iso:
        props["isoproof.config"] = json.dumps(model.config())
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = "Exported by isoproof.exporters (torch.onnx.export, dynamo=True)."


def _check_opset(opset: object) -> int:
    latest = onnx.defs.onnx_opset_version()
    return check_int(opset, "opset", lo=_MIN_OPSET, hi=latest, error=ExportError)


def _check_batch(batch: object) -> Batch:
    if batch == "dynamic":
        return "dynamic"
    return check_int(batch, "batch ('dynamic' or an int)", lo=1, error=ExportError)


def _sample_shape(
    model: nn.Module, input_width: int | None, input_shape: Sequence[int] | None
) -> tuple[int, ...]:
    """The shape of one input sample: ``input_shape``, an isotropic CNN's, else ``[n_in]``."""
    if input_shape is None and isinstance(model, ip.IsotropicConvNet):
        return tuple(model.input_shape)
    if input_shape is None:
        return (_input_width(model, input_width),)
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else ()
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                            for n in shape):  # fmt: skip
        raise ExportError(f"expected input_shape to be a list of ints >= 1, got {input_shape!r}")
    own = getattr(model, "input_shape", None) or getattr(model, "widths", [None])[:1]
    if isinstance(model, ip.IsotropicMLP | ip.IsotropicConvNet) and list(shape) != list(own):
        raise ExportError(f"expected input_shape={list(own)} (the model's), got {list(shape)}")
    return shape


def _input_width(model: nn.Module, input_width: int | None) -> int:
    if input_width is not None:
        check_int(input_width, "input_width", lo=1, error=ExportError)
        if isinstance(model, _WITH_WIDTHS) and input_width != model.widths[0]:
            raise ExportError(
                f"expected input_width={model.widths[0]} (the model's first width), "
                f"got {input_width}"
            )
        return input_width
    if isinstance(model, _WITH_WIDTHS):
        return model.widths[0]
    maps = linear_layers(model)  # the one definition of a model's affine maps
    if maps:
        return int(maps[0].in_features)
    raise ExportError(
        f"expected input_width= for a {type(model).__name__} without an nn.Linear, got none"
    )


def _version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "?"


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's internal noise (torchvision notices, a torch-internal deprecation)."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # raised inside torch.export's own deepcopy of a TreeSpec, not by isoproof code
            warnings.filterwarnings(
                "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
            )
            yield
    finally:
        log.setLevel(level)


@contextmanager
def _reuse_torchlib_registry() -> Iterator[None]:
    """For the duration of one export, build the exporter's aten -> ONNX registry once per opset.

    ``torch.onnx.export`` rebuilds it on every call (2.5-3.5 s measured here, most of an MLP
    export), although it depends only on the opset. Scope: the class attribute
    ``ONNXRegistry.from_torchlib`` (torch 2.13 internals) is swapped only inside this context,
    under a lock, and restored in ``finally``; nothing stays patched after the call. Every call
    inside the scope gets its own copy of the cached registry (``functions`` lists copied), so a
    caller that registers custom ops (``custom_translation_table``) never changes the cache, and
    the cache holds at most :data:`_REGISTRY_CACHE_SIZE` opsets. If torch's internals differ, this
    does nothing and every export builds its own registry, as torch does.
    """
    try:
        from torch.onnx._internal.exporter import _registration

        registry_cls = _registration.ONNXRegistry
        original = registry_cls.__dict__["from_torchlib"]
        build = original.__func__
    except (ImportError, AttributeError, KeyError):
        yield
        return

    def cached(cls: type, *args: object, **kwargs: object) -> object:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _REGISTRIES:
            while len(_REGISTRIES) >= _REGISTRY_CACHE_SIZE:
                _REGISTRIES.pop(next(iter(_REGISTRIES)))
            _REGISTRIES[key] = build(cls, *args, **kwargs)
        return _copy_registry(_REGISTRIES[key])

    with _REGISTRY_LOCK:
        registry_cls.from_torchlib = classmethod(cached)
        try:
            yield
        finally:
            registry_cls.from_torchlib = original


def _copy_registry(registry: object) -> object:
    """A registry sharing the (immutable) decompositions but not the per-op lists."""
    new = copy.copy(registry)
    new.functions = {k: list(v) for k, v in registry.functions.items()}  # type: ignore[attr-defined]
    return new
