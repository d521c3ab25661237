"""``isoproof spectra MODEL -o spectra.png``: plot the singular values of every affine map.

Example::

    isoproof spectra model.safetensors --threshold 0.95 -o spectra.png
"""

from __future__ import annotations

import argparse

from ._common import add_force, check_output, existing_file, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectra", help="plot the singular values of a saved model (PNG)")
    p.add_argument("model", type=existing_file, help="a .safetensors file written by isoproof")
    p.add_argument(
        "--threshold",
        type=float,
        help="draw this singular value as a line and count neurons at or below it",
    )
    p.add_argument("-o", "--output", required=True, help="the PNG to write")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ...train import layer_spectra
    from ..experiments.plotting import plot_spectra

    check_output(args.output, [args.model], (".png",), force=args.force)
    model = load_model(args.model)
    spectra = layer_spectra(model)
    widths = model.widths
    names = []
    for i, s in enumerate(spectra):
        line = f"map {i} ({widths[i]} -> {widths[i + 1]}): sigma max {float(s.max()):.4g}, "
        line += f"min {float(s.min()):.4g}"
        if args.threshold is not None:
            line += f", {int((s <= args.threshold).sum())} <= {args.threshold:g}"
        print(line)
        names.append(f"map {i} ({widths[i]}->{widths[i + 1]})")
    path = plot_spectra(
        [s.numpy() for s in spectra],
        args.output,
        title=f"{args.model.name}: widths {widths}",
        threshold=args.threshold,
        names=names,
    )
    print(f"wrote {path}")
    return 0
