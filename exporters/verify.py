"""``verify_onnx``: check an exported file against its source model, on hostile inputs too.

The file is run by two independent evaluators, onnxruntime's CPU provider (explicitly selected)
and ``onnx.reference.ReferenceEvaluator`` (plain numpy, no fused kernels, no silent upcasts), and
both are compared with the torch model evaluated in float64 (eval mode, the default max-scaled
norm), which is the function the stored parameters define. Input sets:

==========  ==========================================================================
``random``  64 seeded ``N(0, 1)`` rows
``data``    the caller's ``inputs`` (real data), if given; with ``labels``, accuracies
``zeros``   all-zero rows (the isotropic norm's ``0/0`` point, clamped by ``eps``)
``tiny``    random directions with norms 1e-12, 1e-8, 1e-4
``large``   random directions with norms 1e2, 1e3, 1e4
``batch1``  a single row  (dynamic-batch files only)
``batch7``  seven rows    (dynamic-batch files only)
==========  ==========================================================================

A fixed-batch file is fed in zero-padded chunks of its batch size. A set passes when every output
is finite and ``|y_onnx - y_torch| <= atol + rtol |y_torch|`` elementwise (``numpy.allclose``; a
zero output is held to ``atol`` alone: :func:`allowed_error`); ``max rel`` in the report is
``max |y_onnx - y_torch| / max |y_torch|`` over the set (int8: over the output scale below). The
file also fails when it uses an operator outside ``allow`` (default
:data:`~exporters.graph.OP_ALLOWLIST`), and, with labels, when it loses more accuracy than
``max_accuracy_drop``.

Default tolerances follow the file's kind (:data:`TOLERANCES`): float32 ``1e-5`` (the parity
target: max abs error <= 1e-5 on outputs of order 1), float64 ``1e-10``, float16 ``1e-2`` (norms
kept in float32 by :func:`~exporters.float16.to_float16`).

**int8 criterion.** Quantisation errors are not small in absolute terms, so an int8 file is held
to two conditions, each checked for every evaluator on every input set except ``large`` (norms
100-10000 times the data's: outside the one activation range per tensor that int8 represents,
so only checked for NaN/Inf, its errors reported):

1. *error relative to the output scale*: ``max |y_int8 - y_float| <= c * max(floor, S)`` on each
   set, where ``S = max |y_float|`` over all those sets (the model's output scale),
   ``c =`` :data:`INT8_MAX_RELATIVE_ERROR` ``= 0.5`` and ``floor =`` :data:`INT8_SCALE_FLOOR`
   ``= 1e-3``. The floor keeps a model whose outputs are all (near) zero from dividing by zero:
   it is compared with the absolute bound ``c * floor``, which its exact zeros meet;
2. *top-1 agreement with the float model*: the int8 file's top class is the float model's top
   class, or within ``floor`` of it in the float model's outputs (a tie), on at least
   :data:`INT8_MIN_AGREEMENT` ``= 0.8`` of those rows; with labels, in addition, at most
   :data:`INT8_MAX_ACCURACY_DROP` ``= 1`` percentage point of accuracy is lost on the data.

A file whose quantised weights were zeroed fails both (its error is about ``S``, its agreement
near chance); honest exports of the test models pass with errors of at most ``0.27 S`` and
agreement >= 0.94 (``docs/export.md``, "What verification checks").

Example::

    >>> report = verify_onnx(export_onnx(model, "m.onnx"), model)  # doctest: +SKIP
    >>> report.ok, report.max_abs < 1e-5  # doctest: +SKIP
    (True, True)
    >>> print(report.table())  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from isoproof._validate import check_int
from isoproof.exceptions import one_line
from isoproof.io import model_digest
from isoproof.mlp import count_parameters
from isoproof.table import format_table
from isoproof.testing import default_atol

from .backends import ALIASES, BACKENDS, Backend, BackendLoadError, canonical, open_backend
from .errors import VerificationError
from .export import read_onnx_metadata
from .graph import (
    OP_ALLOWLIST,
    QUANTIZED_OPS,
    disallowed_ops,
    ops_used,
    opset_of,
    stored_numbers,
)
from .runtime import input_signature, run_batched

__all__ = [
    "EVALUATORS",
    "INT8_MAX_ACCURACY_DROP",
    "INT8_MAX_RELATIVE_ERROR",
    "INT8_MIN_AGREEMENT",
    "INT8_SCALE_FLOOR",
    "INT8_UNBOUNDED_SETS",
    "LATENCY_BATCHES",
    "TOLERANCES",
    "InputSetResult",
    "VerificationReport",
    "allowed_error",
    "file_kind",
    "top1_agreement",
    "verify_onnx",
]

EVALUATORS: tuple[str, ...] = ("onnxruntime", "reference")
"""The default runtimes; every runtime is listed in :data:`~exporters.backends.BACKENDS`."""
TOLERANCES: dict[str, float] = {  # from the one table, isoproof.testing.default_atol
    "float64": default_atol(torch.float64, across_runtimes=True),
    "float32": default_atol(torch.float32),
    "float16": default_atol(torch.float16),
    "int8": math.inf,
}
"""Default ``atol`` = ``rtol`` by file kind (float16 / int8 from the ``isoproof.variant`` metadata,
else the input dtype). float16 (norms kept in float32): measured max abs 5e-3 on digits logits up
to 4 with inputs of norm up to 1e3; int8: no elementwise ``atol + rtol |y|`` bound by default
(dynamic quantisation depends on the other rows of the batch): the int8 criterion of the module
docstring applies instead."""

INT8_MAX_ACCURACY_DROP = 1.0
"""Percentage points an int8 file may lose on labelled data before verification fails."""
INT8_MAX_RELATIVE_ERROR = 0.5
"""``c`` of the int8 bound ``max |y_int8 - y_float| <= c * max(INT8_SCALE_FLOOR, S)`` (per input
set, ``S`` the float model's output scale). Measured on honest exports: up to 0.24 S dynamic and
0.27 S static QDQ (a pruned, sparsified digits model); a file with zeroed weights: about 1.0 S."""
INT8_SCALE_FLOOR = 1e-3
"""Smallest output scale the int8 bound divides by, and the margin under which two top classes of
the float model count as tied: outputs below it are compared in absolute terms."""
INT8_MIN_AGREEMENT = 0.8
"""Smallest fraction of rows on which an int8 file must pick the float model's top class (ties
within :data:`INT8_SCALE_FLOOR` agree). Measured on honest exports: 0.94 to 1.0 (static QDQ on
random rows is the lowest); files with zeroed weights: about 0.08 on the digits model, chance
for 10 classes (``docs/export.md``; the tests assert < 0.2)."""
INT8_UNBOUNDED_SETS: tuple[str, ...] = ("large",)
"""Input sets an int8 file is only checked for NaN/Inf on (outside int8's activation range)."""


@dataclass(frozen=True)
class InputSetResult:
    """Errors of one evaluator on one input set."""

    name: str
    rows: int
    evaluator: str
    max_abs: float
    max_rel: float
    nonfinite: int
    ok: bool
    max_abs_torch: float = math.nan
    """vs torch in the model's own dtype (float32 for a float32 model) on the same rows; the
    check itself is against float64 torch (``max_abs``)."""


@dataclass
class VerificationReport:
    """What :func:`verify_onnx` measured. ``ok`` is ``True`` when ``failures`` is empty."""

    path: str
    kind: str
    file_size: int
    stored_numbers: int
    model_parameters: int
    ops: dict[str, int]
    disallowed_ops: list[str]
    opset: int
    batch: str
    atol: float
    rtol: float
    results: list[InputSetResult] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    source_digest_match: bool | None = None
    max_accuracy_drop: float | None = None
    agreement: dict[str, float] = field(default_factory=dict)
    """Per evaluator: the fraction of rows (every set but ``large``) whose top class is the float
    model's (ties within :data:`INT8_SCALE_FLOOR` agree); checked for int8 files only."""
    output_scale: float | None = None
    """int8: ``S = max |y_float|`` over every set but ``large``; ``max rel`` is relative to it."""
    max_relative_error: float | None = None
    """int8: ``c`` of the bound ``max |error| <= c * max(INT8_SCALE_FLOOR, S)``."""
    min_agreement: float | None = None
    """int8: the smallest top-1 agreement that passes."""
    latency: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def max_abs(self) -> float:
        """Largest absolute error over every input set and evaluator."""
        return max((r.max_abs for r in self.results), default=0.0)

    @property
    def int8_limit(self) -> float | None:
        """int8: the largest max abs error allowed on a set, ``c * max(floor, S)``."""
        if self.max_relative_error is None or self.output_scale is None:
            return None
        return self.max_relative_error * max(INT8_SCALE_FLOOR, self.output_scale)

    @property
    def accuracy_change(self) -> dict[str, float]:
        """Accuracy change (percentage points) of each evaluator vs torch, if labels were given."""
        if "torch" not in self.accuracy:
            return {}
        base = self.accuracy["torch"]
        return {k: 100.0 * (v - base) for k, v in self.accuracy.items() if k != "torch"}

    def runtimes(self) -> dict[str, dict[str, float]]:
        """Per runtime: max abs error vs float64 torch and vs torch in the model's dtype over
        every input set, and its median latency (seconds per call) at each timed batch."""
        out: dict[str, dict[str, float]] = {}
        for r in self.results:
            row = out.setdefault(r.evaluator, {"max_abs": 0.0, "max_abs_torch": 0.0})
            row["max_abs"] = max(row["max_abs"], r.max_abs)
            row["max_abs_torch"] = max(row["max_abs_torch"], r.max_abs_torch)
        for name, times in self.latency.items():
            out.setdefault(name, {}).update({f"seconds_{k}": v for k, v in times.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            ok=self.ok,
            max_abs=self.max_abs,
            accuracy_change_pp=self.accuracy_change,
            int8_limit=self.int8_limit,
            runtimes=self.runtimes(),
        )
        return out

    def table(self) -> str:
        """A plain-text summary: header, per-set errors, accuracy, verdict."""
        ops = ", ".join(f"{k} {v}" for k, v in self.ops.items())
        lines = [
            f"{self.path}  ({self.kind}, {self.file_size / 1024:.1f} KiB, "
            f"{self.stored_numbers} stored numbers, {self.model_parameters} model parameters, "
            f"opset {self.opset}, batch {self.batch})",
            f"ops: {ops}",
            "outside the op allow-list: "
            + (", ".join(self.disallowed_ops) if self.disallowed_ops else "none"),
        ]
        if self.source_digest_match is not None:
            lines.append(
                "source checksum: "
                + ("matches the model" if self.source_digest_match else "DIFFERS from the model")
            )
        rows = [
            [r.name, r.rows, r.evaluator, r.max_abs, r.max_rel, r.nonfinite, _check(r.ok)]
            for r in self.results
        ]
        headers = ["input set", "rows", "evaluator", "max abs", "max rel", "non-finite", "check"]
        lines += ["", format_table(headers, rows)]
        if self.latency:
            lines += ["", self._runtime_table()]
        if self.accuracy:
            parts = [f"torch {100 * self.accuracy['torch']:.2f}%"] + [
                f"{k} {100 * self.accuracy[k]:.2f}% ({d:+.2f} pp)"
                for k, d in self.accuracy_change.items()
            ]
            lines += ["", "accuracy on labelled data: " + ", ".join(parts)]
        if self.min_agreement is not None:
            parts = [f"{k} {v:.3f}" for k, v in self.agreement.items()]
            lines += ["", "top-1 agreement with torch: " + ", ".join(parts)]
        verdict = f"PASS ({self._criterion()})" if self.ok else "FAIL: " + "; ".join(self.failures)
        lines += ["", f"verification: {verdict}"]
        return "\n".join(lines)

    def _criterion(self) -> str:
        """The conditions that were checked, in words."""
        parts = []
        if math.isfinite(self.atol) and math.isfinite(self.rtol):
            parts.append(f"|error| <= {self.atol:g} + {self.rtol:g} |y|")
        if self.int8_limit is not None:
            unbounded = ", ".join(repr(s) for s in INT8_UNBOUNDED_SETS)
            parts.append(
                f"max |error| <= {self.max_relative_error:g} x max({INT8_SCALE_FLOOR:g}, output "
                f"scale {self.output_scale:.3g}) = {self.int8_limit:.3g} but on {unbounded}"
            )
        if self.min_agreement is not None:
            parts.append(f"top-1 agreement >= {self.min_agreement:g}")
        if self.max_accuracy_drop is not None and self.accuracy:
            parts.append(f"accuracy drop <= {self.max_accuracy_drop:g} pp")
        return "; ".join(parts) or "errors reported, not bounded"

    def _runtime_table(self) -> str:
        keys = sorted({k for t in self.latency.values() for k in t}, key=lambda k: int(k[5:]))
        rows = [
            [name, row.get("max_abs", math.nan), row.get("max_abs_torch", math.nan)]
            + [1e3 * row.get(f"seconds_{k}", math.nan) for k in keys]
            for name, row in self.runtimes().items()
        ]
        headers = ["runtime", "max abs vs float64", "max abs vs torch"]
        return format_table(headers + [f"ms/call {k}" for k in keys], rows)


def verify_onnx(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    inputs: torch.Tensor | np.ndarray | None = None,
    labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    evaluators: Iterable[str] = EVALUATORS,
    allow: Iterable[str] | None = None,
    max_accuracy_drop: float | None = None,
    latency_runs: int = 0,
    raise_on_failure: bool = True,
) -> VerificationReport:
    """Compare the ONNX file at ``path`` with ``model`` (see the module docstring).

    Args:
        path: an ONNX file whose single input is ``[batch, n_in]`` or ``[batch, C, H(, W)]``.
        model: the source ``nn.Module`` (not modified; evaluated on a float64 copy).
        inputs: optional real data ``[rows, *sample]``; ``labels`` (``[rows]``) adds accuracies.
        rtol, atol: tolerances; default :data:`TOLERANCES` of the file's kind (float32: 1e-5).
        seed: seed of the random input sets.
        evaluators: runtimes from :data:`~exporters.backends.BACKENDS` (``"onnxruntime"`` alias
            ``"ort"``, ``"reference"``, ``"openvino"``, ``"browser"``); default
            :data:`EVALUATORS`.
        allow: the op allow-list; default :data:`~exporters.graph.OP_ALLOWLIST`, plus
            :data:`~exporters.graph.QUANTIZED_OPS` for int8 files.
        max_accuracy_drop: with labels, fail if an evaluator loses more percentage points than
            this (default: 1.0 for int8 files, unchecked otherwise). int8 files are also held to
            the error bound and top-1 agreement of the module docstring ("int8 criterion"):
            ``max |error| <= 0.5 * max(1e-3, S)`` per set (``S`` the float outputs' largest
            magnitude; not on ``large``) and top-1 agreement >= 0.8.
        latency_runs: if > 0, each runtime's median seconds per call at batch 1 and 64 over
            this many calls (``report.latency``).
        raise_on_failure: raise :class:`VerificationError` (default) or return the report.

    Returns:
        The :class:`VerificationReport`.

    Raises:
        VerificationError: bad arguments, an unreadable file, or (``raise_on_failure``) a failure.
        RuntimeUnavailableError: a requested runtime is not installed ("install X with Y").
    """
    path, proto, evaluators = _load_checked(path, model, evaluators)
    report = _new_report(path, proto, model, atol=atol, rtol=rtol, allow=allow)
    in_dtype, sample, fixed = input_signature(proto)
    sets = _input_sets(sample, seed, inputs, dynamic=fixed is None)
    if labels is not None and inputs is None:
        raise VerificationError("expected inputs= together with labels=, got labels only")
    y_true = None if labels is None else _labels(labels, sets["data"].shape[0])
    latency_runs = check_int(latency_runs, "latency_runs", lo=0, error=VerificationError)
    runtimes = _open_runtimes(report, evaluators, path, proto)
    _compare_sets(report, model, sets, runtimes, in_dtype, fixed, y_true)
    _check_top1(report, max_accuracy_drop)
    if latency_runs:
        _measure_latency(report, runtimes, in_dtype, sample, fixed, latency_runs)
    if raise_on_failure and not report.ok:
        raise VerificationError(
            f"{path.name} does not reproduce {type(model).__name__}: " + "; ".join(report.failures),
            report,
        )
    return report


def _load_checked(
    path: str | os.PathLike[str], model: nn.Module, evaluators: Iterable[str]
) -> tuple[Path, onnx.ModelProto, tuple[str, ...]]:
    """Validate the arguments and parse the file (a damaged file is a VerificationError)."""
    path = Path(path)
    if not path.is_file():
        raise VerificationError(f"expected an ONNX file at {path}, got no such file")
    if not isinstance(model, nn.Module):
        raise VerificationError(f"expected a torch.nn.Module, got {type(model).__name__}")
    names = tuple(canonical(e) for e in evaluators)
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names:
        raise VerificationError(
            f"expected evaluators from {BACKENDS} (or {sorted(ALIASES)}), got {tuple(evaluators)!r}"
        )
    try:
        proto = onnx.load(str(path))
        # a file that parses can still be no model (empty, or names that are not UTF-8 text)
        onnx.checker.check_model(proto)
    except Exception as e:  # protobuf's DecodeError, truncated files, ValidationError, ...
        raise VerificationError(
            f"expected an ONNX file at {path}, got an unreadable one ({type(e).__name__}: "
            f"{one_line(e, limit=200)})"
        ) from e
    return path, proto, tuple(dict.fromkeys(names))


def _new_report(
    path: Path,
    proto: onnx.ModelProto,
    model: nn.Module,
    *,
    atol: float | None,
    rtol: float | None,
    allow: Iterable[str] | None,
) -> VerificationReport:
    """The report header: file facts, tolerances by kind, op allow-list and source checksum."""
    _, _, fixed = input_signature(proto)
    meta = read_onnx_metadata(proto)
    kind = file_kind(proto)
    default = TOLERANCES[kind]
    if allow is None:
        allow = OP_ALLOWLIST | QUANTIZED_OPS if kind == "int8" else OP_ALLOWLIST
    atol = default if atol is None else float(atol)
    rtol = default if rtol is None else float(rtol)
    if not (atol >= 0 and rtol >= 0):
        raise VerificationError(f"expected atol, rtol >= 0, got atol={atol}, rtol={rtol}")
    report = VerificationReport(
        path=str(path),
        kind=kind,
        file_size=path.stat().st_size,
        stored_numbers=stored_numbers(proto),
        model_parameters=count_parameters(model),
        ops=ops_used(proto),
        disallowed_ops=disallowed_ops(proto, allow),
        opset=opset_of(proto),
        batch="dynamic" if fixed is None else str(fixed),
        atol=atol,
        rtol=rtol,
    )
    if "isoproof.source_sha256" in meta:
        report.source_digest_match = meta["isoproof.source_sha256"] == model_digest(model)
    if report.disallowed_ops:
        report.failures.append(f"ops outside the allow-list: {', '.join(report.disallowed_ops)}")
    return report


def _open_runtimes(
    report: VerificationReport, names: tuple[str, ...], path: Path, proto: onnx.ModelProto
) -> dict[str, Backend]:
    """Open the file in each runtime; one that rejects it is that runtime's failure."""
    runtimes = {}
    for name in names:
        try:
            runtimes[name] = open_backend(name, path, proto)
        except BackendLoadError as e:
            report.failures.append(str(e))
    return runtimes


def _compare_sets(
    report: VerificationReport,
    model: nn.Module,
    sets: dict[str, np.ndarray],
    runtimes: dict[str, Backend],
    in_dtype: type,
    fixed: int | None,
    y_true: np.ndarray | None,
) -> None:
    """Run every input set through torch (float64 and the model's own dtype) and each runtime."""
    reference = _torch_reference(model)
    own = _torch_reference(model, dtype=_model_dtype(model))
    refs = {name: reference(x) for name, x in sets.items()}
    if report.kind == "int8":
        _set_int8_scale(report, refs)
    agrees: dict[str, list[np.ndarray]] = {ev: [] for ev in runtimes}
    for name, x in sets.items():
        y_ref = refs[name]
        y_own = own(x.astype(in_dtype))
        if not np.isfinite(y_ref).all():
            report.failures.append(f"torch itself gives NaN/Inf on input set {name!r}")
        if name == "data" and y_true is not None:
            report.accuracy["torch"] = _accuracy(y_ref, y_true)
        for ev, backend in runtimes.items():
            y = _run_set(report, ev, backend, name, x.astype(in_dtype), fixed, y_ref, y_own)
            if y is None:
                continue
            if report.kind == "int8" and name not in INT8_UNBOUNDED_SETS:
                agrees[ev].append(top1_agreement(y, y_ref, INT8_SCALE_FLOOR))
            if name == "data" and y_true is not None:
                report.accuracy[ev] = _accuracy(y, y_true)
    report.agreement = {ev: float(np.concatenate(a).mean()) for ev, a in agrees.items() if a}


def _set_int8_scale(report: VerificationReport, refs: dict[str, np.ndarray]) -> None:
    """Record the int8 criterion's output scale ``S`` (finite outputs, every set but ``large``)."""
    bounded = [np.abs(y[np.isfinite(y)]) for k, y in refs.items() if k not in INT8_UNBOUNDED_SETS]
    report.output_scale = max((float(a.max()) for a in bounded if a.size), default=0.0)
    report.max_relative_error = INT8_MAX_RELATIVE_ERROR


def _run_set(
    report: VerificationReport,
    ev: str,
    backend: Backend,
    name: str,
    x: np.ndarray,
    fixed: int | None,
    y_ref: np.ndarray,
    y_own: np.ndarray,
) -> np.ndarray | None:
    """One runtime on one input set: its result and failures go into ``report``; returns its
    outputs (float64), or ``None`` if it could not run or gave the wrong shape."""
    try:
        y = run_batched(backend.run, x, fixed).astype(np.float64)
    except BackendLoadError as e:
        report.failures.append(f"{e} on {name!r}")
        return None
    if y.shape != y_ref.shape:
        report.failures.append(
            f"{ev} on {name!r}: expected output shape {y_ref.shape}, got {y.shape}"
        )
        return None
    limit = None if name in INT8_UNBOUNDED_SETS else report.int8_limit
    scale = None if report.output_scale is None else max(INT8_SCALE_FLOOR, report.output_scale)
    r = _compare(name, ev, y, y_ref, report.atol, report.rtol, y_own, limit=limit, scale=scale)
    report.results.append(r)
    if r.nonfinite:
        report.failures.append(f"{ev} gives {r.nonfinite} NaN/Inf on {name!r}")
    elif not r.ok and limit is not None:  # _compare held the set to the int8 limit
        report.failures.append(
            f"{ev} on {name!r}: expected max abs error <= {limit:.3g} (int8: "
            f"{report.max_relative_error:g} x max({INT8_SCALE_FLOOR:g}, output scale "
            f"{report.output_scale:.3g})), got {r.max_abs:.3g} ({r.max_rel:.3g} x the scale)"
        )
    elif not r.ok:
        report.failures.append(
            f"{ev} on {name!r}: max abs error {r.max_abs:.3g} exceeds "
            f"{report.atol:g} + {report.rtol:g} |y|"
        )
    return y


def _check_top1(report: VerificationReport, max_accuracy_drop: float | None) -> None:
    """The accuracy drop (with labels) and, for int8 files, the top-1 agreement."""
    if report.kind == "int8":
        report.min_agreement = INT8_MIN_AGREEMENT
        for ev, agreement in report.agreement.items():
            if agreement < INT8_MIN_AGREEMENT:
                report.failures.append(
                    f"{ev}: expected top-1 agreement with the float model >= "
                    f"{INT8_MIN_AGREEMENT:g}, got {agreement:.3f}"
                )
    if max_accuracy_drop is None and report.kind == "int8":
        max_accuracy_drop = INT8_MAX_ACCURACY_DROP
    report.max_accuracy_drop = max_accuracy_drop
    if max_accuracy_drop is not None:
        for ev, change in report.accuracy_change.items():
            if change < -max_accuracy_drop:
                report.failures.append(
                    f"{ev} accuracy drops {-change:.2f} pp, expected at most {max_accuracy_drop} pp"
                )


LATENCY_BATCHES: tuple[int, ...] = (1, 64)
"""Batch sizes of ``report.latency`` (a fixed-batch file is timed at its own batch only)."""


def _measure_latency(
    report: VerificationReport,
    runtimes: dict[str, Backend],
    in_dtype: type,
    sample: tuple[int, ...],
    fixed: int | None,
    runs: int,
) -> None:
    batches = LATENCY_BATCHES if fixed is None else (fixed,)
    dims = {f"batch{b}": [b, *sample] for b in batches}
    for name, backend in runtimes.items():
        try:
            report.latency[name] = backend.latency(dims, in_dtype, runs)
        except BackendLoadError as e:
            report.failures.append(f"{e} (latency)")


def file_kind(proto: onnx.ModelProto) -> str:
    """``"float16"`` / ``"int8"`` for the edge variants (their metadata), else the input dtype."""
    variant = read_onnx_metadata(proto).get("isoproof.variant", "")
    for kind in ("float16", "int8"):
        if variant.startswith(kind):
            return kind
    dtype = np.dtype(input_signature(proto)[0]).name
    return dtype if dtype in TOLERANCES else "float32"


# ---------------------------------------------------------------------------- helpers
def _directions(
    rng: np.random.Generator, norms: Sequence[float], sample: tuple[int, ...]
) -> np.ndarray:
    """Random samples ``[len(norms), *sample]`` whose whole-sample norms are ``norms``."""
    d = rng.standard_normal((len(norms), math.prod(sample)))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return (d * np.asarray(norms)[:, None]).reshape(len(norms), *sample)


def _input_sets(
    sample: tuple[int, ...], seed: int, inputs: torch.Tensor | np.ndarray | None, *, dynamic: bool
) -> dict[str, np.ndarray]:
    """The input sets of the module docstring, each ``[rows, *sample]``."""
    rng = np.random.default_rng(seed)
    sets = {"random": rng.standard_normal((64, *sample))}
    if inputs is not None:
        data = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
        data = np.asarray(data, dtype=np.float64)
        if data.shape[1:] != sample or data.shape[0] == 0:
            want = ", ".join(map(str, sample))
            raise VerificationError(f"expected inputs of shape [rows, {want}], got {data.shape}")
        sets["data"] = data
    sets["zeros"] = np.zeros((4, *sample))
    sets["tiny"] = _directions(rng, [1e-12, 1e-8, 1e-4], sample)
    sets["large"] = _directions(rng, [1e2, 1e3, 1e4], sample)
    if dynamic:
        sets["batch1"] = rng.standard_normal((1, *sample))
        sets["batch7"] = rng.standard_normal((7, *sample))
    return sets


def _torch_reference(
    model: nn.Module, dtype: torch.dtype = torch.float64
) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> model(x)`` on a CPU copy of ``model`` in ``dtype`` (eval mode), as float64 numpy."""
    ref = copy.deepcopy(model).to(device="cpu", dtype=dtype).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(x)).to(dtype)
            return ref(x).to(torch.float64).numpy()

    return run


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter (float32 if it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _compare(
    name: str,
    evaluator: str,
    y: np.ndarray,
    y_ref: np.ndarray,
    atol: float,
    rtol: float,
    y_own: np.ndarray | None = None,
    *,
    limit: float | None = None,
    scale: float | None = None,
) -> InputSetResult:
    """Errors of ``y`` against ``y_ref``: elementwise ``atol + rtol |y_ref|``, and ``max abs <=
    limit`` if given (int8); ``max rel`` is over ``scale`` if given, else over the set's own
    ``max |y_ref|`` (over nothing, i.e. absolute, where that is 0)."""
    finite = np.isfinite(y)
    with np.errstate(all="ignore"):
        diff = np.where(finite, np.abs(y - y_ref), np.inf)
    max_abs = float(diff.max()) if diff.size else 0.0
    if scale is None:
        scale = float(np.abs(y_ref).max()) if y_ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    ok = bool(finite.all() and np.all(diff <= allowed_error(y_ref, atol, rtol)))
    ok = ok and (limit is None or max_abs <= limit)
    vs_own = math.nan
    if y_own is not None and y.size:
        with np.errstate(all="ignore"):
            vs_own = float(np.where(finite, np.abs(y - y_own), np.inf).max())
    return InputSetResult(
        name, int(y.shape[0]), evaluator, max_abs, max_rel, int(y.size - finite.sum()), ok, vs_own
    )


def allowed_error(y_ref: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """``atol + rtol |y_ref|`` elementwise, where a zero output is held to ``atol`` alone.

    ``rtol |y_ref|`` is taken as 0 where ``y_ref == 0``, so an infinite ``rtol`` (or ``atol``,
    e.g. int8's defaults) never meets a zero output as ``inf * 0 = NaN``, a bound nothing passes.

    Examples:
        >>> allowed_error(np.array([0.0, 2.0]), 1e-3, math.inf).tolist()
        [0.001, inf]
    """
    magnitude = np.abs(y_ref)
    with np.errstate(invalid="ignore"):
        relative = np.where(magnitude > 0, rtol * magnitude, 0.0)
    return atol + relative


def top1_agreement(y: np.ndarray, y_ref: np.ndarray, tie: float) -> np.ndarray:
    """Per row: does ``y``'s top class score within ``tie`` of ``y_ref``'s top score in ``y_ref``?

    Exact agreement of the top classes, except that classes the reference scores within ``tie``
    of its best count as tied (so an all-zero model agrees with itself whatever the rounding).
    Outputs with more than one axis after the rows are flattened first.

    Examples:
        >>> ref = np.array([[0.0, 1.0], [0.0, 0.0], [2.0, 1.0]])
        >>> top1_agreement(np.array([[0.0, 1.0], [0.0, 1e-9], [0.0, 1.0]]), ref, 1e-3).tolist()
        [True, True, False]
    """
    y, y_ref = y.reshape(y.shape[0], -1), y_ref.reshape(y_ref.shape[0], -1)  # [rows, outputs]
    picked = np.take_along_axis(y_ref, y.argmax(axis=1)[:, None], axis=1)[:, 0]
    return picked >= y_ref.max(axis=1) - tie


def _check(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def _labels(labels: torch.Tensor | np.ndarray | Sequence[int], rows: int) -> np.ndarray:
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (rows,):
        raise VerificationError(f"expected labels of shape [{rows}], got {y.shape}")
    return y


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())
