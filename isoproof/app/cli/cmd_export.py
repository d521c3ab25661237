"""``isoproof export MODEL -o model.onnx``: ONNX export, edge variants and verification.

Writes ``model.onnx`` (float32) and, on request, ``model.fp16.onnx`` (float16, isotropic norms in
float32) and ``model.int8.onnx`` (dynamic int8). ``--verify`` checks every written file against the
checkpoint (:func:`exporters.verify_onnx`) and prints the tables; the exit status is 1 if any
check fails, and then nothing is written: with ``--verify`` the files are built in a scratch
folder next to the output and moved into place only once every check passed. ``--data`` takes
real inputs (``.npy``, or ``.npz`` with ``x`` and optional ``y``
labels) for verification and the int8 accuracy change. On a terminal, a progress bar on stderr
names the step under way (:class:`isoproof.progress.Progress`).

``--web DIR`` also writes a static web demo (:func:`exporters.webbundle.web_bundle`): draw a digit
and the model predicts it in the browser with onnxruntime-web; the page shows the widths, the size
and the parity measured here (onnxruntime, the reference evaluator and, where installed, the
browser itself). The pixel statistics come from ``--dataset`` (default: ``digits`` for 64 inputs,
``mnist`` for 784). Without ``-o`` the file is ``DIR/model.onnx``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ...files import check_folder
from ...progress import Progress
from . import CliError
from ._common import add_force, check_output, existing_file, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a saved model to ONNX (fp32, fp16, int8) and verify")
    p.add_argument("model", type=existing_file, help="a .safetensors file written by isoproof")
    p.add_argument("-o", "--output", type=Path, help="the .onnx file to write")
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
    p.add_argument("--web", type=Path, metavar="DIR", help="also write a draw-a-digit web demo")
    p.add_argument("--dataset", help="pixel statistics of the web demo (default by input size)")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.output is None and args.web is None:
        raise CliError("expected -o model.onnx or --web DIR, got neither")
    out = Path(args.output) if args.output is not None else args.web / "model.onnx"
    if out.suffix != ".onnx":
        raise CliError(f"expected an output path ending in .onnx, got {str(out)!r}")
    if args.web is not None and args.output is not None:  # else check_output checks it below
        check_folder(args.web, "--web")
    check_output(out, [args.model, args.data], (".onnx",), force=args.force)
    for kind in ("fp16", "int8"):  # out.fp16.onnx, out.int8.onnx: outputs too
        if getattr(args, kind):
            check_output(_derived(out, kind), [args.model, args.data], (".onnx",),
                         force=args.force, flag=f"--{kind}")  # fmt: skip
    model = load_model(args.model)
    x, y = read_data(args.data)
    _check_data_shape(model, x)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = 1 + args.fp16 + args.int8
    steps = files * (1 + args.verify) + (args.web is not None)
    with Progress("export", steps, transient=True) as bar:  # drawn only on a terminal
        if not args.verify:
            _write(args, model, out, x, y, bar)
        elif not _write_verified(args, model, out, x, y, bar):
            return 1
        return 1 if args.web is not None and _web(args, model, out, bar) else 0


def _write_verified(args: argparse.Namespace, model, out: Path, x, y, bar: Progress) -> bool:
    """With --verify: build everything in a scratch folder and move it into place only if it
    passes; ``False`` (nothing written) otherwise."""
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".isoproof-export-") as tmp:
        written = _write(args, model, Path(tmp) / out.name, x, y, bar)
        failed = _verify(written, model, x, y, bar)
        if failed:
            print(
                f"isoproof export: verification FAILED for {', '.join(failed)}; nothing written",
                file=sys.stderr,
            )
            return False
        for path in written:
            os.replace(path, out.parent / path.name)
            print(f"verified and moved into place: {out.parent / path.name}")
    return True


def _check_data_shape(model, x) -> None:
    """Refuse ``--data`` whose samples the model does not take (before anything is written)."""
    if x is None:
        return
    shapes = model.sample_shapes() if hasattr(model, "sample_shapes") else ((model.widths[0],),)
    if x.ndim < 2 or tuple(x.shape[1:]) not in shapes:
        want = " or ".join(f"[rows, {', '.join(map(str, s))}]" for s in shapes)
        raise CliError(f"expected --data x of shape {want}, got {list(x.shape)}")


def _write(args: argparse.Namespace, model, out: Path, x, y, bar: Progress) -> list[Path]:
    from isoproof.exporters import export_onnx, quantize_int8, to_float16

    bar.begin(f"write {out.name}")
    written = [export_onnx(model, out, batch=args.batch, opset=args.opset)]
    print(f"wrote {written[0].name} ({written[0].stat().st_size / 1024:.1f} KiB)")
    if args.fp16:
        bar.begin(f"write {_derived(out, 'fp16').name}")
        written.append(to_float16(written[0], _derived(out, "fp16")))
        print(f"wrote {written[-1].name} ({written[-1].stat().st_size / 1024:.1f} KiB)")
    if args.int8:
        labelled = (x, y) if x is not None and y is not None else None
        bar.begin(f"quantise {_derived(out, 'int8').name}")
        report = quantize_int8(written[0], _derived(out, "int8"), labelled=labelled)
        written.append(Path(report.path))
        print(report.table())
    return written


def _derived(out: Path, kind: str) -> Path:
    """The ``--fp16`` / ``--int8`` file next to ``out``: ``m.onnx`` -> ``m.int8.onnx``."""
    return out.with_suffix(f".{kind}.onnx")


def _verify(written: list[Path], model, x, y, bar: Progress) -> list[str]:
    from isoproof.exporters import verify_onnx

    failed = []
    for path in written:
        bar.begin(f"verify {path.name}")
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


_DATASETS = {64: "digits", 784: "mnist"}


def _web(args: argparse.Namespace, model, onnx_path: Path, bar: Progress) -> bool:
    """Verify, then write the web bundle; ``True`` if verification failed (no bundle then)."""
    from isoproof.data import load_dataset
    from isoproof.exporters import verify_onnx
    from isoproof.exporters.browser import browser_problem
    from isoproof.exporters.webbundle import web_bundle

    bar.begin("web demo")
    runtimes = ["onnxruntime", "reference"] + ([] if browser_problem() else ["browser"])
    report = verify_onnx(onnx_path, model, evaluators=runtimes, raise_on_failure=False)
    if not report.ok:
        print(report.table())
        print("isoproof export: verification FAILED; no web demo written", file=sys.stderr)
        return True
    n_in = int(model.widths[0]) if hasattr(model, "widths") else 0
    name = args.dataset or _DATASETS.get(n_in)
    if name is None:
        raise CliError(f"expected --dataset for a model with {n_in} inputs, got none")
    data = load_dataset(name)
    raw_max = (data.x_train.double() * data.std.double() + data.mean.double()).max()
    pixel_max = float(f"{float(raw_max):.6g}")  # 16 for digits, not 16.000002 (float32 stats)
    parity = {k: v["max_abs"] for k, v in report.runtimes().items()}
    index = web_bundle(
        onnx_path,
        args.web,
        mean=data.mean,
        std=data.std,
        pixel_max=pixel_max,
        parity=parity,
        dataset=name,
    )
    print(f"wrote the web demo {index}; parity {parity}")
    print(f"serve it: python -m http.server --bind 127.0.0.1 --directory {args.web} 8000")
    return False
