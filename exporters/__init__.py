"""ONNX export of isotropic (and other) classifiers, verification, and edge variants.

A resized model is only useful if it ships: :func:`export_onnx` writes one self-contained,
checked ONNX file (diagonal layers as ``Mul`` + ``Add``, the isotropic norm as plain portable ops),
:func:`verify_onnx` runs it with onnxruntime and the ONNX reference evaluator (and, on request,
OpenVINO and onnxruntime-web in headless Chromium: :mod:`exporters.backends`) against the torch
model on random, real and adversarial inputs, and :mod:`exporters.edge` derives float16, int8 and
ORT-format files and reports mobile (NNAPI / CoreML) support.

Example::

    >>> import isoproof, exporters
    >>> model = isoproof.IsotropicMLP([8, 16, 16, 16, 4])
    >>> _ = isoproof.sparsify(model)
    >>> path = exporters.export_onnx(model, "model.onnx")  # doctest: +SKIP
    >>> exporters.verify_onnx(path, model).ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

from .backends import BACKENDS as BACKENDS
from .backends import BackendLoadError as BackendLoadError
from .browser import BrowserSession as BrowserSession
from .edge import EPSupport as EPSupport
from .edge import Int8Report as Int8Report
from .edge import MobileReport as MobileReport
from .edge import mobile_usability as mobile_usability
from .edge import quantize_int8 as quantize_int8
from .edge import to_float16 as to_float16
from .edge import to_ort_format as to_ort_format
from .errors import ExportError as ExportError
from .errors import RuntimeUnavailableError as RuntimeUnavailableError
from .errors import VerificationError as VerificationError
from .export import export_onnx as export_onnx
from .export import read_onnx_metadata as read_onnx_metadata
from .graph import FORBIDDEN_OPS as FORBIDDEN_OPS
from .graph import OP_ALLOWLIST as OP_ALLOWLIST
from .graph import QUANTIZED_OPS as QUANTIZED_OPS
from .verify import VerificationReport as VerificationReport
from .verify import verify_onnx as verify_onnx

__all__ = [
    "BACKENDS",
    "FORBIDDEN_OPS",
    "OP_ALLOWLIST",
    "QUANTIZED_OPS",
    "BackendLoadError",
    "BrowserSession",
    "EPSupport",
    "ExportError",
    "Int8Report",
    "MobileReport",
    "RuntimeUnavailableError",
    "VerificationError",
    "VerificationReport",
    "export_onnx",
    "mobile_usability",
    "quantize_int8",
    "read_onnx_metadata",
    "to_float16",
    "to_ort_format",
    "verify_onnx",
]
