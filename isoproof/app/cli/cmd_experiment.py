"""``isoproof experiment NAME``: run one of the paper's experiments at laptop scale.

Writes ``<out>/<name>.md``, ``.json`` and ``.png``; ``all`` runs every experiment in turn.

Example::

    isoproof experiment invariance --quick --out /tmp/results
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ...files import check_folder
from ..experiments import EXPERIMENTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="run a paper experiment (tables, JSON and plots in a fresh folder or --out)",
    )
    p.add_argument("name", choices=(*EXPERIMENTS, "all"), help="which experiment, or all")
    p.add_argument("--quick", action="store_true", help="tiny settings (seconds; for tests)")
    p.add_argument(
        "--out",
        help="output folder (default: a new folder isoproof-experiment-<time> in the current "
        "directory; never the committed docs/results unless given explicitly)",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..experiments import run_experiment

    names = list(EXPERIMENTS) if args.name == "all" else [args.name]
    if args.out is None:
        import time

        args.out = f"isoproof-experiment-{time.strftime('%Y%m%d-%H%M%S')}"
        while Path(args.out).exists():
            args.out += "-1"
    check_folder(args.out, "--out")
    for name in names:
        paths = run_experiment(
            name, quick=args.quick, out=args.out, seed=args.seed, verbose=not args.quiet
        )
        print(f"{name}: wrote {', '.join(str(p) for p in paths)}")
    return 0
