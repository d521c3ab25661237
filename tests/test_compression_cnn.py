"""The CNN track of the compression benchmark on a tiny setting: budgets met, methods distinct."""

from __future__ import annotations

import pytest
import torch

import isoproof as ip
from benchmarks import compression_cnn as cc
from isoproof.data import load_digits
from isoproof.standard import paired_standard


@pytest.fixture(scope="module")
def nets():
    g = torch.Generator().manual_seed(0)
    iso = ip.IsotropicConvNet([1, 8, 8], [{"conv": 8, "padding": 1}, {"conv": 8, "pool": 2}], 10,
                              generator=g, dtype=torch.float64)  # fmt: skip
    with torch.no_grad():
        for m in iso.maps:
            m.bias.normal_(0, 0.3, generator=g)
    return iso, paired_standard(iso)


@pytest.mark.parametrize("budget", [0.5, 0.25])
def test_every_method_meets_the_budget(nets, budget):
    iso, tanh = nets
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    pruned = {
        "isoproof": cc.prune_isoproof(iso, budget),
        "tp": cc.prune_tp(tanh, budget, x),
        "magnitude": cc.prune_magnitude(tanh, budget, x),
    }
    for name, model in pruned.items():
        count, dense = ip.count_parameters(model), ip.count_parameters(iso if name == "isoproof"
                                                                       else tanh)  # fmt: skip
        assert count <= budget * dense, name
        assert count > 0.5 * budget * dense, name  # the largest fraction that fits, not a tiny net
        assert model(x).shape == (2, 10)
    assert pruned["isoproof"].widths[0] == 1 and pruned["isoproof"].widths[-1] == 10
    assert iso.widths == [1, 8, 8, 10]  # the source is left alone


def test_isoproof_pruning_at_sigma_zero_is_exact(nets):
    iso, _ = nets
    twin = ip.IsotropicConvNet.from_config(iso.config())  # a copy grown by zero channels
    twin.load_state_dict(iso.state_dict())
    ip.grow(twin, 0, 2)  # two zero channels per conv layer: sigma 0, [10, 10]
    ip.grow(twin, 1, 2)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    small = cc.prune_isoproof(twin, ip.count_parameters(iso) / ip.count_parameters(twin))
    assert small.widths == iso.widths
    torch.testing.assert_close(small(x), iso(x), atol=1e-12, rtol=0)


@pytest.mark.slow  # trains two tiny CNNs and fine-tunes six pruned ones
def test_run_records_rows_for_every_method(isolated_cache):
    data = load_digits(conv=True).subset(200, 100)
    cfg = {**cc.SETTINGS, "epochs": 1, "finetune_epochs": 1, "latency_runs": 0,
           "layers": [{"conv": 6, "padding": 1}, {"conv": 6, "pool": 2}]}  # fmt: skip
    result = cc.run(cfg, data=data, budgets=[0.5], log=lambda *_: None)
    methods = {(r["method"], r["budget"]) for r in result["summary"]}
    assert methods == {("dense (iso)", 1.0), ("dense (tanh)", 1.0)} | {(m, 0.5) for m in cc.METHODS}
    for r in result["rows"]:
        assert 0 <= r["accuracy"] <= 100
