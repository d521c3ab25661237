"""``isoproof export MODEL -o model.onnx``: ONNX export, edge variants and verification.

Writes ``model.onnx`` (float32) and, on request, ``model.fp16.onnx`` (float16, isotropic norms in
float32) and ``model.int8.onnx`` (dynamic int8). ``--verify`` checks every written file against the
checkpoint (:func:`exporters.verify_onnx`) and prints the tables; the exit status is 1 if any
check fails, and then nothing is written: with ``--verify`` the files are built in a scratch
folder next to the output and moved into place only once every check passed. ``--data`` takes
real inputs (``.npy``, or ``.npz`` with ``x`` and optional ``y``
labels) for verification and the int8 accuracy change.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from . import CliError
from ._common import check_output, existing_file, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a saved model to ONNX (fp32, fp16, int8) and verify")
    p.add_argument("model", type=existing_file, help="a .safetensors file written by isoproof")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--batch",
        type=_batch,
        default="dynamic",
        help="a fixed batch size (NNAPI/CoreML need one) or 'dynamic' (default)",
    )
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--fp16", action="store_true", help="also write <output>.fp16.onnx")
    p.add_argument("--int8", action="store_true", help="also write <output>.int8.onnx")
    p.add_argument("--verify", action="store_true", help="verify every written file")
    p.add_argument(
        "--data", type=existing_file, help="real inputs: .npy, or .npz with x (and y labels)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    x, y = read_data(args.data)
    out = Path(args.output)
    if out.suffix != ".onnx":
        raise CliError(f"expected an output path ending in .onnx, got {str(out)!r}")
    check_output(out, [args.model, args.data], (".onnx",))
    n_in = getattr(model, "widths", [None])[0]
    if x is not None and n_in is not None and (x.ndim != 2 or x.shape[1] != n_in):
        raise CliError(f"expected --data x of shape [rows, {n_in}], got {list(x.shape)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.verify:
        _write(args, model, out, x, y)
        return 0
    # with --verify, build everything in a scratch folder and move it into place only if it passes
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".isoproof-export-") as tmp:
        written = _write(args, model, Path(tmp) / out.name, x, y)
        failed = _verify(written, model, x, y)
        if failed:
            print(
                f"isoproof export: verification FAILED for {', '.join(failed)}; nothing written",
                file=sys.stderr,
            )
            return 1
        for path in written:
            os.replace(path, out.parent / path.name)
            print(f"verified and moved into place: {out.parent / path.name}")
    return 0


def _write(args: argparse.Namespace, model, out: Path, x, y) -> list[Path]:
    from isoproof.exporters import export_onnx, quantize_int8, to_float16

    written = [export_onnx(model, out, batch=args.batch, opset=args.opset)]
    print(f"wrote {written[0].name} ({written[0].stat().st_size / 1024:.1f} KiB)")
    if args.fp16:
        written.append(to_float16(written[0], out.with_suffix(".fp16.onnx")))
        print(f"wrote {written[-1].name} ({written[-1].stat().st_size / 1024:.1f} KiB)")
    if args.int8:
        labelled = (x, y) if x is not None and y is not None else None
        report = quantize_int8(written[0], out.with_suffix(".int8.onnx"), labelled=labelled)
        written.append(Path(report.path))
        print(report.table())
    return written


def _verify(written: list[Path], model, x, y) -> list[str]:
    from isoproof.exporters import verify_onnx

    failed = []
    for path in written:
        report = verify_onnx(path, model, inputs=x, labels=y, raise_on_failure=False)
        print()
        print(report.table())
        if not report.ok:
            failed.append(path.name)
    return failed


def read_data(path: Path | None):
    """``(x, y)`` from ``.npy`` (x only) or ``.npz`` (``x``, optional ``y``); pickles refused."""
    import numpy as np

    if path is None:
        return None, None
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CliError(f"expected a .npy or .npz array file, got {str(path)!r} ({e})") from None
    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded:
        if "x" not in loaded.files:
            raise CliError(f"expected arrays 'x' (and 'y') in {path}, got {loaded.files}")
        return loaded["x"], (loaded["y"] if "y" in loaded.files else None)


def _batch(value: str) -> int | str:
    if value == "dynamic":
        return value
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch < 1:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or an int >= 1, got {value!r}")
    return batch
