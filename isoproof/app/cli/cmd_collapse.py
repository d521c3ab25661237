"""``isoproof collapse MODEL -o OUT.onnx``: export the collapsed form of a saved MLP.

Builds :func:`isoproof.collapse` of the checkpoint (``docs/method.md`` §2.1), prints its receipt
(stored numbers before/after, measured change on 64 seeded random rows), writes the float32 ONNX
file (one ``MatMul`` with the input, then elementwise ops) and, with ``--verify``, checks it
against both the collapsed and the source model (:func:`exporters.verify_onnx`); exit 1 if a
check fails. ``--save`` also writes the collapsed checkpoint (``isoproof info`` describes it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import CliError
from ._common import add_force, check_output, existing_file, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collapse", help="collapse a saved MLP into one MatMul and export to ONNX")
    p.add_argument("model", type=existing_file, help="a .safetensors IsotropicMLP checkpoint")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--save", type=Path, help="also write the collapsed .safetensors checkpoint")
    p.add_argument("--verify", action="store_true", help="verify the file (ORT + reference)")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from isoproof.exporters import export_onnx, verify_onnx

    from ...collapse import collapse
    from ...io import save

    out = Path(args.output)
    if out.suffix != ".onnx":
        raise CliError(f"expected an output path ending in .onnx, got {str(out)!r}")
    check_output(out, [args.model], (".onnx",), force=args.force)
    if args.save is not None:
        check_output(args.save, [args.model], (".safetensors",), force=args.force, flag="--save",
                     outputs={"-o": out})  # fmt: skip
    model = load_model(args.model)
    probe = torch.randn(64, _input_width(model), generator=torch.Generator().manual_seed(0))
    collapsed, receipt = collapse(model, probe=probe.to(model.dtype))
    print(receipt)
    if args.save is not None:
        print(f"wrote {save(collapsed, args.save)}")
    path = export_onnx(collapsed, out)
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB)")
    if not args.verify:
        return 0
    failed = []
    for name, source in (("collapsed", collapsed), ("source model", model)):
        report = verify_onnx(path, source, raise_on_failure=False)
        print(f"\nagainst the {name}:\n{report.table()}")
        if not report.ok:
            failed.append(name)
    if failed:
        print(f"isoproof collapse: verification FAILED against {failed}", file=sys.stderr)
        return 1
    return 0


def _input_width(model: object) -> int:
    widths = getattr(model, "widths", None)
    return int(widths[0]) if widths else 1  # collapse() refuses a model without widths
