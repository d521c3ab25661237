"""``isoproof resize``: prune, grow or sparsify a saved model and save the result.

Exactly one operation per call; the receipt (widths, parameters, bound, and the measured logit
change when ``--data`` is given) is printed.

Example::

    isoproof resize model.safetensors --prune-below 0.1 --data digits -o small.safetensors
"""

from __future__ import annotations

import argparse

from ._common import add_force, check_output, existing_file, load_model, pair


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resize", help="prune, grow or sparsify a saved model")
    p.add_argument("model", type=existing_file, help="a .safetensors file written by isoproof")
    op = p.add_mutually_exclusive_group(required=True)
    op.add_argument(
        "--prune-below",
        type=float,
        metavar="T",
        help="remove every hidden neuron with singular value <= T",
    )
    op.add_argument(
        "--grow",
        type=pair(int, int, ":", "1:5", "--grow LAYER:N"),
        metavar="L:N",
        help="add N scaffold neurons to hidden layer L (exact)",
    )
    op.add_argument(
        "--sparsify", action="store_true", help="fully diagonalise maps 1, 3, 5, ... (exact)"
    )
    p.add_argument(
        "--data",
        metavar="SPEC",
        help="digits | mnist1d | mnist | cifar10:PATH: report test accuracy and logit change",
    )
    p.add_argument("-o", "--output", required=True, help="where to save the resized model")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ...conv import IsotropicConvNet
    from ...data import load_dataset
    from ...io import save
    from ...ops.diagonalisation import sparsify
    from ...ops.neurodegeneration import prune_below
    from ...ops.neurogenesis import grow
    from ...train import evaluate

    check_output(args.output, [args.model], (".safetensors",), force=args.force)
    model = load_model(args.model)
    conv = isinstance(model, IsotropicConvNet)  # channels-first samples for a CNN
    data = load_dataset(args.data, conv=conv) if args.data else None
    probe = data.x_test.to(model.dtype) if data is not None else None
    before = evaluate(model, data)["accuracy"] if data is not None else None
    if args.prune_below is not None:
        receipt = prune_below(model, args.prune_below, probe=probe)
    elif args.grow is not None:
        receipt = grow(model, args.grow[0], args.grow[1], probe=probe)
    else:
        receipt = sparsify(model, probe=probe)
    path = save(model, args.output)
    print(receipt)
    if data is not None:
        after = evaluate(model, data)["accuracy"]
        print(f"test accuracy ({data.name}): {before:.2%} -> {after:.2%}")
    print(f"saved {path}")
    return 0
