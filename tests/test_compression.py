"""The compression benchmark's machinery on a tiny model (the full run is ``make bench``).

One module-scoped run: a ``[20, 16, 16, 16, 4]`` isotropic and standard MLP trained for one epoch
on a small synthetic data set, compressed by every method at every budget of the issue.
"""

from __future__ import annotations

import copy
import doctest
import itertools
import json

import numpy as np
import pytest
import torch
from conftest import batch, make_model
from torch import nn

import isoproof as ip
from benchmarks.bench_compression import target_verdict, write_report
from benchmarks.compression import (
    ISSUE_BUDGETS,
    METHODS,
    TOLERANCE,
    Settings,
    compress,
    run,
    search,
    summarise,
)
from isoproof.data import Dataset
from isoproof.ngc import NGCLinear
from isoproof.ops._surgery import Surgery
from isoproof.ops.neurodegeneration import remove_weakest
from isoproof.standard import linear_layers
from isoproof.train import evaluate

SETTINGS = Settings(
    hidden=(16, 16, 16),
    seeds=(0,),
    epochs={"toy": 1},
    finetune_epochs=1,
    budgets=ISSUE_BUDGETS,
    calibration_rows=128,
    keep=("toy", 0),
)


def _toy(n_train: int = 240, n_test: int = 80, features: int = 20, classes: int = 4) -> Dataset:
    """Gaussian blobs: one random centre per class, unit noise."""
    g = torch.Generator().manual_seed(0)
    centres = 1.5 * torch.randn(classes, features, generator=g)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        return centres[y] + torch.randn(n, features, generator=g), y

    (x_tr, y_tr), (x_te, y_te) = split(n_train), split(n_test)
    mean, std = x_tr.mean(0), x_tr.std(0)
    return Dataset("toy", (x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te, mean, std)


@pytest.fixture(scope="module")
def toy() -> Dataset:
    return _toy()


@pytest.fixture(scope="module")
def result(toy: Dataset) -> dict:
    torch.manual_seed(0)
    return run([toy], SETTINGS, log=lambda *_: None)


def test_every_method_and_budget_has_a_row(result: dict) -> None:
    got = [(r["method"], r["budget"]) for r in result["rows"]]
    assert sorted(got) == sorted(itertools.product(METHODS, ISSUE_BUDGETS))


def test_budgets_matched_within_two_percent(result: dict) -> None:
    for r in result["rows"]:
        assert abs(r["match"] - 1) <= TOLERANCE, (r["method"], r["budget"], r["match"])
        if r["budget"] < 1:  # the recorded count is the kept model's real count
            model = result["kept"][(r["method"], r["budget"])]
            assert ip.count_parameters(model) == r["params"]
            assert r["params"] < r["dense_params"]


def test_full_budget_is_the_dense_model(result: dict, toy: Dataset) -> None:
    for r in (r for r in result["rows"] if r["budget"] == 1):
        assert r["params"] == r["dense_params"]
        assert r["accuracy"] == r["dense_accuracy"]
        assert r["max_abs_logit_change"] == 0.0
    iso = result["kept"][("dense-isotropic", 1.0)]
    row = next(r for r in result["rows"] if (r["method"], r["budget"]) == ("isoproof", 1.0))
    assert row["accuracy"] == pytest.approx(100 * evaluate(iso, toy)["accuracy"])


def test_isoproof_sparsify_step_is_exact(result: dict) -> None:
    steps = [
        rec
        for r in result["rows"]
        if r["method"] == "isoproof"
        for rec in r["receipts"]
        if rec["op"] == "sparsify"
    ]
    assert steps, "isoproof never sparsified at any budget"
    assert all(rec["max_abs_change"] < 1e-5 for rec in steps)
    never = [r for r in result["rows"] if r["method"] == "isoproof-prune"]
    assert not any(rec["op"] == "sparsify" for r in never for rec in r["receipts"])


def test_torch_pruning_removed_neurons(result: dict, toy: Dataset) -> None:
    for budget in (0.5, 0.25):
        std = result["kept"][("tp-standard", budget)]
        lins = linear_layers(std)
        hidden = [lin.out_features for lin in lins[:-1]]
        assert sum(hidden) < 48 and len(lins) == 4
        for a, b in itertools.pairwise(lins):  # TP kept the maps consistent
            assert b.in_features == a.out_features == a.weight.shape[0]
        assert std(toy.x_test).shape == (80, 4)
        iso = result["kept"][("tp-isotropic", budget)]
        assert sum(iso.widths[1:-1]) < 48
        assert [p.numel() for p in iso.psi] == iso.widths[2:]


def test_svd_maps_have_their_ranks(result: dict) -> None:
    row = next(r for r in result["rows"] if (r["method"], r["budget"]) == ("svd-standard", 0.25))
    model = result["kept"][("svd-standard", 0.25)]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    factored = [(maps[0], r) for maps, r in row["config"]["ranks"] if r != "dense"]
    assert factored
    i = 0
    for index in range(4):
        rank = dict(factored).get(index)
        if rank is None:
            i += 1
            continue
        first, second = linears[i], linears[i + 1]
        assert first.bias is None and first.weight.shape[0] == rank == second.weight.shape[1]
        assert int(torch.linalg.matrix_rank(second.weight @ first.weight)) == rank
        i += 2
    row = next(r for r in result["rows"] if (r["method"], r["budget"]) == ("svd-isotropic", 0.25))
    iso = result["kept"][("svd-isotropic", 0.25)]
    for maps, r in row["config"]["ranks"]:
        lin = iso.linears[maps[0]]
        assert (lin.rank if isinstance(lin, NGCLinear) else "dense") == r


def test_report_has_every_row(result: dict, tmp_path) -> None:
    md, _ = write_report(result, SETTINGS, tmp_path)
    table = md.split("## toy: test accuracy", 1)[1].split("\n\n")[2]
    header = table.splitlines()[0]
    assert all(f"| {b:.0%} " in header + " " for b in ISSUE_BUDGETS)
    for name in METHODS:
        (line,) = [ln for ln in table.splitlines() if ln.startswith(f"| `{name}` |")]
        assert "n/a" not in line and line.count("→") == len(ISSUE_BUDGETS)
    saved = json.loads((tmp_path / "compression.json").read_text())
    assert len(saved["rows"]) == len(METHODS) * len(ISSUE_BUDGETS)
    assert (tmp_path / "compression.png").stat().st_size > 10_000
    verdict = target_verdict(summarise(result["rows"]), "toy")
    assert set(verdict) >= {"within_1pp", "vs_tp_standard", "vs_tp_isotropic"}


def test_prune_dead_is_exact_where_plain_pruning_is_not() -> None:
    """The exact step of the ``isoproof`` method is the library's public ``prune_dead``."""
    model = make_model([6, 12, 12, 12, 3])  # float64, non-zero biases, psi and o
    x = batch(6, 64)
    y = model(x)
    assert ip.prune_dead(model, 0, limit=12, probe=x).bound <= 1e-12  # rank 6: 6 sigma = 0
    control = copy.deepcopy(model)
    receipt = ip.prune_dead(model, 1, limit=12, probe=x)
    assert model.widths == [6, 6, 7, 12, 3]  # 6 dead, one kept to carry psi*
    assert receipt.max_abs_change < 1e-12
    ip.prune_dead(model, 2, limit=12, probe=x)
    assert model.widths == [6, 6, 7, 8, 3]
    assert float((model(x) - y).abs().max()) < 1e-12
    # the negative control: the same five sigma = 0 neurons without gathering psi* first
    y0 = control(x).detach()
    s = Surgery(control)
    remove_weakest(s, 1, 5, gather_psi=False)
    s.commit("prune", 1)
    assert float((control(x) - y0).abs().max()) > 1e-4


def test_search_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for dims in (1, 2, 3, 4):
        for _ in range(10):
            sizes = [int(n) for n in rng.integers(1, 6, size=dims)]
            w = [rng.integers(1, 30, size=n) for n in sizes]
            v = [rng.random(n) for n in sizes]

            def count(k, w=w):
                return sum(wi[ki] for wi, ki in zip(w, k, strict=True))

            def cost(k, v=v):
                return sum(vi[ki] for vi, ki in zip(v, k, strict=True))

            target = float(rng.integers(10, 60))
            feasible = [
                (float(cost(k)), -float(count(k)), k)
                for k in itertools.product(*(range(n) for n in sizes))
                if abs(count(k) / target - 1) <= 0.02
            ]
            want = min(feasible)[2] if feasible else None
            assert search(sizes, count, cost, target) == want


def test_docstring_examples_hold() -> None:
    import benchmarks._budget
    import benchmarks._methods
    import benchmarks.compression

    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    modules = (benchmarks.compression, benchmarks._budget, benchmarks._methods)
    tests = [
        t for m in modules for t in doctest.DocTestFinder(exclude_empty=True).find(m, globs=vars(m))
    ]
    assert sum(len(t.examples) for t in tests) >= 10
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_select_neurons_is_the_uncorrected_removal() -> None:
    """tp-isotropic's removal (public API only) equals the workspace's selection matrix."""
    from benchmarks._methods import select_neurons

    model = make_model([6, 9, 8, 7, 3])
    x = batch(6, 32)
    drops = [[0, 4], [], [1, 2, 6]]
    small = select_neurons(model, drops)
    control = copy.deepcopy(model)
    for h, drop in enumerate(drops):  # the same removal through the change-of-basis engine
        if drop:
            keep = [i for i in range(control.widths[h + 1]) if i not in drop]
            s = Surgery(control)
            s.change_basis(h, torch.eye(control.widths[h + 1], dtype=torch.float64)[keep])
            s.commit("magnitude_prune", h)
    assert small.widths == control.widths == [6, 7, 8, 4, 3]
    torch.testing.assert_close(small(x), control(x), rtol=0, atol=1e-12)
    assert ip.count_parameters(small) == ip.count_parameters(control)


def test_compress_refuses_the_wrong_family() -> None:
    model = ip.IsotropicMLP([4, 8, 8, 3])
    with pytest.raises(ip.IsoproofError, match="expected a Sequential"):
        compress("tp-standard", model, 0.5, torch.randn(8, 4))
    with pytest.raises(ip.IsoproofError, match="budget fraction"):
        compress("isoproof", model, 1.5, torch.randn(8, 4))
