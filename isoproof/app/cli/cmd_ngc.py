"""``isoproof ngc``: compress a saved model with Neuronal Group Communication, export it to ONNX.

The hidden-to-hidden maps are factored into groups sharing input states (:mod:`isoproof.ngc`),
initialised in closed form from the first ``--rows`` training rows of ``--data``. The report (rank
per group, per-map calibration error, maps kept dense, parameters), the test accuracy before and
after, and the stability proxy (:mod:`isoproof.stability`) are printed. An NGC model is not a
safetensors checkpoint (its maps are not dense), so the output is an ONNX file with each shared
``P`` stored once, checked against the model in onnxruntime before the command reports success.
On a terminal, a progress bar on stderr names the step under way
(:class:`isoproof.progress.Progress`).

Example::

    isoproof ngc model.safetensors --keep 0.5 --data digits -o small.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...progress import Progress
from . import CliError
from ._common import add_force, check_output, existing_file, load_model


def _keep(value: str) -> float:
    try:
        keep = float(value)
    except ValueError:
        keep = float("nan")
    if not 0 < keep <= 1:
        raise argparse.ArgumentTypeError(f"expected --keep in (0, 1], got {value!r}")
    return keep


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ngc", help="NGC-compress a saved model and export it to ONNX")
    p.add_argument("model", type=existing_file, help="a .safetensors file written by isoproof")
    p.add_argument(
        "--keep", type=_keep, default=0.5, help="fraction of each group's weights kept (0.5)"
    )
    p.add_argument(
        "--groups",
        choices=("consecutive", "none"),
        default="consecutive",
        help="consecutive: share P across runs of equal-width hidden maps; none: per-map SVD",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="digits | mnist1d | cifar10:PATH: calibration rows and test accuracy",
    )
    p.add_argument(
        "--rows", type=int, default=1024, help="calibration rows from the training split (1024)"
    )
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ...data import load_dataset
    from ...ngc import ngc_compress
    from ...train import evaluate

    output = Path(args.output)
    if output.suffix != ".onnx":
        raise CliError(f"expected an .onnx output path (NGC models export to ONNX), got {output}")
    if args.rows < 1:
        raise CliError(f"expected --rows >= 1, got {args.rows}")
    check_output(output, [args.model], (".onnx",), force=args.force)
    try:
        from isoproof.exporters import export_onnx, verify_onnx
    except ImportError as e:
        raise CliError(f"expected the onnx extra (pip install isoproof[onnx]), got {e}") from None

    with Progress("ngc", 5, transient=True) as bar:  # drawn only on a terminal
        bar.begin("load")
        model = load_model(args.model)
        data = load_dataset(args.data)
        bar.begin("compress")
        small, report = ngc_compress(
            model,
            calibration=data.x_train[: args.rows].to(model.dtype),
            keep=args.keep,
            groups=args.groups,
        )
        print(report.table())
        bar.begin("evaluate")
        before, after = evaluate(model, data)["accuracy"], evaluate(small, data)["accuracy"]
        print(f"test accuracy ({data.name}): {before:.2%} -> {after:.2%} (no fine-tune)")
        x = data.x_test.to(model.dtype)
        bar.begin("stability")
        _print_stability(model, small, x)
        bar.begin(f"export and verify {output.name}")
        path = export_onnx(small, output)
        check = verify_onnx(path, small, inputs=x[:256])
    print(
        f"saved {path} ({check.stored_numbers} stored numbers, max |ORT - torch| "
        f"{check.max_abs:.2g})"
    )
    return 0


def _print_stability(model, small, x) -> None:
    from ...stability import stability

    for name, m in (("before", model), ("after", small)):
        try:
            print(f"stability proxy {name}: {stability(m, x).overall:.4g} (depth; < 0 contracting)")
        except ValueError as e:  # too few equal-width hidden layers: not an error of the command
            print(f"stability proxy {name}: n/a ({e})")
