"""Edge variants of an exported float32 file, in one place.

==========================  =============================================================
:func:`to_float16`          float16 weights and activations, isotropic norms kept in float32
                            (:mod:`exporters.float16`)
:func:`quantize_int8`       int8 weights: dynamic (CPU) or static QDQ with calibration
                            (NPUs), with the accuracy change (:mod:`exporters.quantize`)
:func:`to_ort_format`       ORT format for ONNX Runtime Mobile (:mod:`exporters.mobile`)
:func:`mobile_usability`    NNAPI / CoreML support per execution provider, from onnxruntime's
                            own checker (:mod:`exporters.mobile`)
==========================  =============================================================

Verify every variant against the source model with :func:`exporters.verify_onnx` (looser
tolerances for float16; for int8 add :data:`exporters.graph.QUANTIZED_OPS` to ``allow``).

Example::

    >>> path = export_onnx(model, "m.onnx")  # doctest: +SKIP
    >>> half = to_float16(path, "m.fp16.onnx")  # doctest: +SKIP
    >>> verify_onnx(half, model, atol=1e-2, rtol=1e-2).ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

from .float16 import to_float16
from .mobile import EPSupport, MobileReport, mobile_usability, to_ort_format
from .quantize import Int8Report, quantize_int8

__all__ = [
    "EPSupport",
    "Int8Report",
    "MobileReport",
    "mobile_usability",
    "quantize_int8",
    "to_float16",
    "to_ort_format",
]
