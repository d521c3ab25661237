"""``isoproof verify model.onnx MODEL``: check an ONNX file against its checkpoint.

Runs :func:`exporters.verify_onnx` (by default onnxruntime CPU and the ONNX reference evaluator vs
torch, on random, real and adversarial inputs; tolerances follow the file's kind: float32, float16
or int8) and prints the report. ``--runtime`` picks the runtimes (``ort``, ``reference``,
``openvino``, ``browser`` = onnxruntime-web in headless Chromium), each reported with its max
error vs torch and vs float64 and its median latency at batch 1 and 64. Exit status 0 if it
passes, 1 if not, or if the file's recorded source checksum differs from MODEL's (unless
``--allow-different-source``), 2 (one line) if a requested runtime is not installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_force, check_output, existing_file, load_model


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
        "--runtime",
        "--evaluators",
        dest="runtime",
        default="ort,reference",
        help="comma-separated runtimes from ort,reference,openvino,browser (default ort,reference)",
    )
    p.add_argument(
        "--latency",
        type=int,
        default=50,
        metavar="RUNS",
        help="calls timed per runtime at batch 1 and 64 (default 50; 0 = no timing)",
    )
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    add_force(p)
    p.add_argument(
        "--allow-different-source",
        action="store_true",
        help="pass even if the file's recorded source checksum differs from MODEL's",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from isoproof.exporters import verify_onnx
    from isoproof.files import atomic_write_text
    from isoproof.strict_json import dumps

    from .cmd_export import read_data

    if args.json is not None:
        inputs = [args.onnx, args.model, args.data]
        check_output(args.json, inputs, (".json",), force=args.force, flag="--json")
    model = load_model(args.model)
    x, y = read_data(args.data)
    report = verify_onnx(
        args.onnx,
        model,
        inputs=x,
        labels=y,
        atol=args.atol,
        rtol=args.rtol,
        evaluators=[e.strip() for e in args.runtime.split(",") if e.strip()],
        latency_runs=args.latency,
        raise_on_failure=False,
    )
    print(report.table())
    if args.json is not None:
        text = dumps(report.to_dict(), indent=2)
        atomic_write_text(args.json, text + "\n")
    if report.source_digest_match is False and not args.allow_different_source:
        print(
            "isoproof verify: the ONNX file was exported from a different model (source checksum "
            "differs); pass --allow-different-source to accept that",
            file=sys.stderr,
        )
        return 1
    return 0 if report.ok else 1
