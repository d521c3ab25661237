"""Models and the Torch-Pruning step the benchmarks share (one home for each)."""

from __future__ import annotations

import torch
from torch import nn

import isoproof as ip
from isoproof.standard import linear_layers

__all__ = ["tp_magnitude_pruner", "trained_like"]


def trained_like(widths: list[int], seed: int = 0) -> ip.IsotropicMLP:
    """Orthogonal init with spread singular values and non-zero biases/psi (a trained layer's
    spectrum decays; all-equal sigma would make every choice a tie)."""
    g = torch.Generator().manual_seed(seed)
    model = ip.IsotropicMLP(widths, generator=g)
    with torch.no_grad():
        for lin in model.linears:
            U, _, Vh = torch.linalg.svd(lin.weight.double(), full_matrices=False)
            S = torch.logspace(0, -1.5, min(lin.weight.shape), dtype=torch.float64)
            lin.weight.copy_(U @ torch.diag(S) @ Vh)
            lin.bias.normal_(std=0.1, generator=g)
        for p in model.psi:
            p.normal_(std=0.01, generator=g)
    return model


def tp_magnitude_pruner(model: nn.Module, example: torch.Tensor, ratio: float) -> object:
    """Torch-Pruning's ``MagnitudePruner`` (L2 magnitude, the output map kept whole) set to
    remove ``ratio`` of every prunable layer of ``model`` in place at ``.step()`` (the dependency
    graph is built here, so a benchmark can time the step alone)."""
    import torch_pruning as tp

    return tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[linear_layers(model)[-1]],
    )
