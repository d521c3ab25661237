"""``isoproof verify model.onnx MODEL``: check an ONNX file against its checkpoint.

Runs :func:`exporters.verify_onnx` (onnxruntime CPU and the ONNX reference evaluator vs torch, on
random, real and adversarial inputs; tolerances follow the file's kind: float32, float16 or int8)
and prints the report. Exit status 0 if it passes, 1 if not, or if the file's recorded source
checksum differs from MODEL's (unless ``--allow-different-source``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ._common import check_output, existing_file, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check an exported ONNX file against its checkpoint")
    p.add_argument("onnx", type=existing_file, help="the .onnx file")
    p.add_argument("model", type=existing_file, help="the .safetensors checkpoint it came from")
    p.add_argument(
        "--data", type=existing_file, help="real inputs: .npy, or .npz with x (and y labels)"
    )
    p.add_argument("--atol", type=float, help="absolute tolerance (default by file kind)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default by file kind)")
    p.add_argument(
        "--evaluators",
        default="onnxruntime,reference",
        help="comma-separated subset of onnxruntime,reference (default both)",
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.add_argument("--force", action="store_true", help="overwrite a non-JSON file at --json")
    p.add_argument(
        "--allow-different-source",
        action="store_true",
        help="pass even if the file's recorded source checksum differs from MODEL's",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isoproof.exporters import verify_onnx
    from isoproof.files import atomic_write_text

    from .cmd_export import read_data

    if args.json is not None:
        check_output(args.json, [args.onnx, args.model, args.data], (".json",), force=args.force)
    model = load_model(args.model)
    x, y = read_data(args.data)
    report = verify_onnx(
        args.onnx,
        model,
        inputs=x,
        labels=y,
        atol=args.atol,
        rtol=args.rtol,
        evaluators=[e.strip() for e in args.evaluators.split(",") if e.strip()],
        raise_on_failure=False,
    )
    print(report.table())
    if args.json is not None:
        text = json.dumps(_jsonable(report.to_dict()), indent=2, allow_nan=False)
        atomic_write_text(args.json, text + "\n")
    if report.source_digest_match is False and not args.allow_different_source:
        print(
            "isoproof verify: the ONNX file was exported from a different model (source checksum "
            "differs); pass --allow-different-source to accept that",
            file=sys.stderr,
        )
        return 1
    return 0 if report.ok else 1


def _jsonable(value: object) -> object:
    """Strict JSON: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
