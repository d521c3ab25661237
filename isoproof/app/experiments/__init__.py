"""The paper's experiments at laptop scale (``isoproof experiment NAME``).

=========================  =====  ==========================================================
name                       paper  what it shows
=========================  =====  ==========================================================
``invariance``             Exp 1  growth is exact, pruning error grows with removed sigma mass
``sparsification``         Exp 5  alternating full diagonalisation: fewer stored numbers, same
                                  accuracy
``neuroabundance``         Exp 4  linear width schedules from a start to a target width
``tasks``                  Exp 3  task appending/removal with the scaffold buffer vs static net
``spectra``                Exp 2  singular values per epoch, isotropic vs standard tanh
``standard-vs-isotropic``  Exp 6  paired-initialisation comparison on digits and MNIST-1D
``cnn-vs-mlp``             Exp 6  isotropic CNN vs paired tanh CNN vs isotropic MLP on digits,
                                  MNIST-5k and MNIST-1D
``cnn-channels``           Exp 4/5  the scaffold buffer on channels; sparsified 1x1 convolutions
=========================  =====  ==========================================================

Each writes ``<out>/<name>.md``, ``<out>/<name>.json`` and ``<out>/<name>.png`` (default
``docs/results``). ``quick=True`` runs the same machinery on tiny subsets for a few epochs (tests).

Example::

    >>> paths = run_experiment("sparsification", quick=True, out=tmp_path, verbose=False)
    >>> sorted(p.suffix for p in paths)
    ['.json', '.md', '.png']
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

from ...exceptions import IsoproofError

__all__ = ["EXPERIMENTS", "experiment_module", "run_experiment"]

EXPERIMENTS: dict[str, str] = {
    "invariance": "invariance",
    "sparsification": "sparsification",
    "neuroabundance": "neuroabundance",
    "tasks": "tasks",
    "spectra": "spectra",
    "standard-vs-isotropic": "standard_vs_isotropic",
    "cnn-vs-mlp": "cnn",
    "cnn-channels": "cnn_channels",
}


def experiment_module(name: str) -> ModuleType:
    """The module implementing experiment ``name`` (see :data:`EXPERIMENTS`)."""
    if name not in EXPERIMENTS:
        raise IsoproofError(f"expected an experiment in {sorted(EXPERIMENTS)}, got {name!r}")
    return importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")


def run_experiment(
    name: str,
    *,
    quick: bool = False,
    out: str | os.PathLike[str] = "docs/results",
    seed: int = 0,
    verbose: bool = True,
) -> list[Path]:
    """Run one experiment (single-threaded) and write its results under ``out``.

    Returns the written paths (Markdown, JSON, PNGs).
    """
    from .common import single_thread, write_result  # torch/data imports happen here

    module = experiment_module(name)
    out = Path(out)
    with single_thread():
        result = module.run(quick=quick, seed=seed, out=out, verbose=verbose)
    return write_result(result, out)
