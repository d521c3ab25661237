"""``isoproof train``: train an isotropic MLP or CNN on a data set and save it (safetensors).

Example::

    isoproof train --data digits --widths 64,128,128,10 --epochs 20 --adapt 5,0.95 \
        -o model.safetensors

The same command runs on several processes when launched by ``torchrun`` (e.g.
``torchrun --nproc-per-node 2 -m isoproof train ...``): every process trains its shard, resizes
are synchronised (:mod:`isoproof.distributed`), rank 0 prints and writes the files.

Example (a CNN)::

    isoproof train --data digits --conv conv=16:k=3:padding=1,conv=16:k=3,dense=32 \
        --epochs 10 --adapt 5,0.95 -o cnn.safetensors

With ``--checkpoint PATH`` a training checkpoint (model, optimiser state, generators, history;
:mod:`isoproof.checkpoint`) is written after every epoch; the same command with ``--resume``
added continues from it, bit-identically to a run that was never interrupted::

    isoproof train --data digits --widths 64,128,128,10 --epochs 20 --adapt 5,0.95 \
        --checkpoint run.safetensors --resume -o model.safetensors

With ``--conv`` the data set is loaded channels first (digits ``[1, 8, 8]``, MNIST-1D
``[1, 40]``, MNIST ``[1, 28, 28]``) and the model is an :class:`isoproof.IsotropicConvNet`.
"""

from __future__ import annotations

import argparse
from typing import Any

from . import CliError
from ._common import add_force, check_output, load_model, pair, parse_conv_spec, parse_widths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train an isotropic MLP or CNN (optionally with the scaffold buffer) and save it",
        description="Train with AdamW and cross-entropy + psi penalty; see isoproof.train.fit.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="digits | mnist1d | mnist | cifar10:PATH (a folder with the CIFAR-10 python batches)",
    )
    arch = p.add_mutually_exclusive_group(required=True)
    arch.add_argument(
        "--widths",
        type=parse_widths,
        help="an MLP: comma-separated widths, input and output included, e.g. 64,128,128,10",
    )
    arch.add_argument(
        "--conv",
        type=parse_conv_spec,
        metavar="SPEC",
        help="a CNN: layers like conv=16:k=3:padding=1:pool=2,conv=16:k=1,dense=32 (keys k, "
        "stride, padding, dilation, pool; the output layer is added)",
    )
    p.add_argument("--epochs", required=True, type=int, help="number of epochs")
    p.add_argument(
        "--adapt",
        type=pair(int, float, ",", "5,0.95", "--adapt K,THETA"),
        metavar="K,THETA",
        help="run the scaffold buffer after every epoch (paper: 5,0.95)",
    )
    p.add_argument(
        "--width-schedule",
        type=parse_widths,
        metavar="W1,W2,...",
        help="hidden target widths reached linearly at the last epoch (neuroabundance)",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-3, help="AdamW weight decay (1e-3)")
    p.add_argument("--batch-size", type=int, default=48, help="mini-batch size (default 48)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and data-order seed")
    p.add_argument(
        "--psi",
        default="decay",
        choices=("decay", "trainable", "constant", "none"),
        help="psi mode (default decay)",
    )
    p.add_argument(
        "--intrinsic-length",
        default="trainable",
        choices=("trainable", "constant", "none"),
        help="intrinsic length o (default trainable)",
    )
    p.add_argument("--threads", type=int, help="torch threads (small models: 1 is fastest)")
    p.add_argument("--history", metavar="PATH", help="also write the training history as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="write a training checkpoint here after every epoch (model, optimiser state, "
        "generators, history; replaced atomically)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved at --checkpoint (repeat the command that started it; "
        "without --resume an existing checkpoint is refused unless --force)",
    )
    p.add_argument("-o", "--output", required=True, help="where to save the model (.safetensors)")
    add_force(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from ..._validate import check_seed
    from ...distributed import init_from_env, rank

    if args.epochs < 1:
        raise CliError(f"expected --epochs >= 1, got {args.epochs}")
    check_seed(args.seed, "--seed", CliError)  # before the data set and generators use it
    check_output(args.output, [], (".safetensors",), force=args.force)  # before any training
    if args.history:
        check_output(args.history, [], (".json",), force=args.force, flag="--history",
                     outputs={"-o": args.output})  # fmt: skip
    if args.adapt and args.width_schedule:
        raise CliError("expected at most one of --adapt and --width-schedule, got both")
    _check_checkpoint(args)
    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"expected --threads >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    started = init_from_env()  # launched by torchrun: join the process group
    try:
        return _train(args, rank() == 0)
    finally:
        if started:
            dist.destroy_process_group()


def _check_checkpoint(args: argparse.Namespace) -> None:
    """--resume needs --checkpoint; the checkpoint is neither the model nor the history file;
    without --resume (or --force) an existing one is kept, not started over."""
    import os
    from pathlib import Path

    if args.resume and not args.checkpoint:
        raise CliError("expected --checkpoint PATH with --resume, got none")
    if args.checkpoint:
        ckpt = Path(args.checkpoint).resolve()
        others = {"-o": args.output, "--history": args.history}
        check_output(ckpt, [], (".safetensors",), force=args.force, flag="--checkpoint",
                     outputs=others)  # fmt: skip
        if not args.resume and not args.force and os.path.lexists(ckpt):
            raise CliError(
                "expected a new --checkpoint file (or --resume, or --force), got "
                f"{args.checkpoint!r}, which exists (--resume continues the run saved there, "
                "--force starts it again)"
            )


def _train(args: argparse.Namespace, main_process: bool) -> int:
    import json

    from ...data import load_dataset
    from ...distributed import save as save_on_rank0
    from ...files import atomic_write_text
    from ...train import AdaptSchedule, fit

    model = _resumed_model(args) if args.resume else None  # checked before the data loads
    data = load_dataset(args.data, seed=args.seed, conv=args.conv is not None)
    if model is None:
        model = _new_model(args, data)
    adapt = AdaptSchedule(*args.adapt) if args.adapt else None
    history = fit(
        model,
        data,
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        adapt=adapt,
        width_schedule=args.width_schedule,
        seed=args.seed,
        verbose=not args.quiet,
        checkpoint=args.checkpoint,
        resume=args.checkpoint if args.resume else None,
    )
    path = save_on_rank0(model, args.output)
    if not main_process:
        return 0
    if args.history:
        atomic_write_text(args.history, json.dumps(history.to_dict(), indent=1) + "\n")
    print(
        f"{path}: {data.name}, widths {model.widths}, test accuracy "
        f"{history.test_accuracy[-1]:.2%} after {args.epochs} epochs, "
        f"{model.count_parameters()} stored parameters"
    )
    return 0


def _resumed_model(args: argparse.Namespace) -> Any:
    """The model the --checkpoint holds (resized since the start, maybe), once its header says
    it is a training checkpoint of the kind of model --widths / --conv asks for."""
    from ...checkpoint import check_header
    from ...conv import IsotropicConvNet

    check_header(args.checkpoint)
    model = load_model(args.checkpoint)
    if isinstance(model, IsotropicConvNet) != (args.conv is not None):
        raise CliError(
            f"expected a checkpoint of {'a CNN' if args.conv else 'an MLP'} at "
            f"{args.checkpoint}, got {type(model).__name__}"
        )
    return model


def _new_model(args: argparse.Namespace, data: Any) -> Any:
    """The model --widths or --conv describes, initialised with --seed."""
    import torch

    from ...conv import IsotropicConvNet
    from ...mlp import IsotropicMLP

    options = {
        "psi": args.psi,
        "intrinsic_length": args.intrinsic_length,
        "generator": torch.Generator().manual_seed(args.seed),
    }
    if args.conv is not None:
        if len(data.sample_shape) not in (2, 3):
            raise CliError(f"expected image or signal samples for --conv, got {data.name}")
        model = IsotropicConvNet(data.sample_shape, args.conv, data.n_classes, **options)
    elif args.widths[0] != data.n_features or args.widths[-1] != data.n_classes:
        raise CliError(
            f"expected --widths to start with {data.n_features} and end with {data.n_classes} "
            f"for {data.name}, got {','.join(map(str, args.widths))}"
        )
    else:
        model = IsotropicMLP(args.widths, **options)
    return model
