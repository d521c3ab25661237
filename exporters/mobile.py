"""ORT format and mobile usability: what ONNX Runtime Mobile will make of an exported file.

* :func:`to_ort_format` runs onnxruntime's official converter (the function behind
  ``python -m onnxruntime.tools.convert_onnx_models_to_ort``, in process: a subprocess would
  re-import onnxruntime) and moves the ``.ort`` file and its ``required_operators.config`` (the
  op list for a reduced mobile build) into ``outdir``.
* :func:`mobile_usability` runs onnxruntime's own usability checker
  (``onnxruntime.tools.mobile_helpers.usability_checker``, the code behind
  ``python -m onnxruntime.tools.check_onnx_model_mobile_usability``) and returns, per execution
  provider (NNAPI, CoreML NeuralNetwork, CoreML MLProgram), how many nodes it can take, in how many
  partitions, which ops it lacks, and onnxruntime's verdict (``YES`` / ``MAYBE`` / ``NO``). NNAPI
  and CoreML need fixed shapes: export with ``batch=1`` (or another int) for a meaningful answer.

Example::

    >>> report = mobile_usability(export_onnx(model, "m1.onnx", batch=1))  # doctest: +SKIP
    >>> report.by_ep["NNAPI"].suitability  # doctest: +SKIP
    'YES'
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from isoproof.table import format_table

from .errors import ExportError

__all__ = ["EPSupport", "MobileReport", "mobile_usability", "to_ort_format"]


def to_ort_format(
    path: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    optimization_style: str = "Fixed",
) -> Path:
    """Convert the ONNX file ``path`` to ORT format in ``outdir``; returns the ``.ort`` path.

    ``optimization_style``: ``"Fixed"`` (optimisations baked in; for the CPU provider) or
    ``"Runtime"`` (for NNAPI / CoreML, which take their own partitions at load time).
    """
    source = Path(path)
    if not source.is_file():
        raise ExportError(f"expected an ONNX file at {source}, got no such file")
    if optimization_style not in ("Fixed", "Runtime"):
        raise ExportError(
            f"expected optimization_style 'Fixed' or 'Runtime', got {optimization_style!r}"
        )
    from onnxruntime.tools import convert_onnx_models_to_ort as converter

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".isoproof-ort-", dir=outdir) as tmp:
        staged = Path(tmp) / "in" / f"{source.stem}.onnx"
        staged.parent.mkdir()
        shutil.copyfile(source, staged)
        log = io.StringIO()
        try:
            # the converter prints its progress, and leaves one file to the garbage collector
            with contextlib.redirect_stdout(log), warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                converter.convert_onnx_models_to_ort(
                    staged,
                    output_dir=Path(tmp) / "out",
                    optimization_styles=[converter.OptimizationStyle[optimization_style]],
                )
                gc.collect()
        except Exception as e:  # onnxruntime raises several types (Fail, RuntimeError, ...)
            raise ExportError(
                f"expected onnxruntime to convert {source.name} to ORT format, got "
                f"{type(e).__name__}: {str(e).strip()[:300]}"
            ) from e
        produced = sorted((Path(tmp) / "out").glob("*.ort"))
        if len(produced) != 1:
            raise ExportError(
                f"expected one .ort file for {source.name}, got {[p.name for p in produced]}"
            )
        for extra in (Path(tmp) / "out").glob("*.config"):
            os.replace(extra, outdir / extra.name)
        target = outdir / produced[0].name
        os.replace(produced[0], target)  # same filesystem: atomic
    return target


@dataclass(frozen=True)
class EPSupport:
    """onnxruntime's partitioning estimate for one execution provider."""

    ep: str
    supported_nodes: int
    nodes: int
    partitions: int
    unsupported_ops: list[str]
    suitability: str  # onnxruntime's TryWithEP verdict: YES / MAYBE / NO


@dataclass
class MobileReport:
    """Mobile usability of one file: fixed shapes or not, and one :class:`EPSupport` per EP."""

    path: str
    dynamic_inputs: list[str]
    eps: list[EPSupport] = field(default_factory=list)

    @property
    def by_ep(self) -> dict[str, EPSupport]:
        return {e.ep: e for e in self.eps}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        rows = [
            [
                e.ep,
                f"{e.supported_nodes}/{e.nodes}",
                e.partitions,
                ", ".join(e.unsupported_ops) or "-",
                e.suitability,
            ]
            for e in self.eps
        ]
        shape = (
            "fixed input shape"
            if not self.dynamic_inputs
            else f"dynamic inputs {self.dynamic_inputs}: NNAPI/CoreML need fixed shapes"
        )
        headers = ["execution provider", "nodes", "partitions", "unsupported ops", "use it?"]
        return f"{self.path} ({shape})\n" + format_table(headers, rows)


def mobile_usability(path: str | os.PathLike[str]) -> MobileReport:
    """Run onnxruntime's mobile usability checker on ``path`` (after its BASIC optimisation)."""
    try:
        from onnxruntime.tools.mobile_helpers import usability_checker as uc
    except ImportError as e:  # pragma: no cover - depends on the onnxruntime build
        raise ExportError(f"expected onnxruntime.tools.mobile_helpers, got {e}") from e
    source = Path(path)
    if not source.is_file():
        raise ExportError(f"expected an ONNX file at {source}, got no such file")
    checks = {
        "NNAPI": lambda m: uc.check_nnapi_partitions(m, require_fixed_input_sizes=True),
        "CoreML NeuralNetwork": lambda m: uc.check_coreml_partitions(
            m, True, "coreml_supported_neuralnetwork_ops.md"
        ),
        "CoreML MLProgram": lambda m: uc.check_coreml_partitions(
            m, True, "coreml_supported_mlprogram_ops.md"
        ),
    }
    quiet = logging.getLogger("isoproof.exporters.mobile")
    quiet.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="isoproof-mobile-") as tmp:
        optimized = Path(tmp) / source.name  # what the ORT-format conversion would see
        uc.optimize_model(source, optimized, use_external_initializers=True)
        model = uc.ModelProtoWithShapeInfo(optimized).model_with_shape_info
        dynamic, _ = uc.check_shapes(model.graph, quiet)
        report = MobileReport(str(source), [i.name for i in dynamic])
        for ep, check in checks.items():
            info = check(model)
            report.eps.append(
                EPSupport(
                    ep=ep,
                    supported_nodes=int(info.num_supported_nodes),
                    nodes=int(info.num_nodes),
                    partitions=int(info.num_partitions),
                    unsupported_ops=sorted(info.unsupported_ops),
                    suitability=info.suitability().name,
                )
            )
    return report
