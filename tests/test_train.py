"""fit(): history, determinism, resizes with the optimiser carried, plain modules, standard MLPs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import isoproof as ip
from isoproof.data import Dataset, load_digits, multitask
from isoproof.exceptions import IsoproofError, NonFiniteError, NotIsotropicError, WidthError
from isoproof.standard import linear_layers, paired_standard, standard_mlp
from isoproof.train import AdaptSchedule, History, WidthSchedule, evaluate, fit, layer_spectra

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits().subset(480, 200)


def small(widths=(64, 12, 12, 10), seed=0, **kw) -> ip.IsotropicMLP:
    return ip.IsotropicMLP(list(widths), generator=torch.Generator().manual_seed(seed), **kw)


# ----------------------------------------------------------------------- basics
def test_fit_learns_and_records_every_epoch(digits):
    model = small()
    h = fit(model, digits, epochs=3, lr=1e-2, seed=0, verbose=False)
    assert isinstance(h, History) and len(h) == 4 and h.epoch == [0, 1, 2, 3]
    assert h.test_accuracy[0] < 0.3 < 0.7 < h.test_accuracy[-1]
    assert h.train_loss[-1] < h.train_loss[1] < h.train_loss[0]
    assert h.widths == [[64, 12, 12, 10]] * 4 and h.parameters[0] == model.count_parameters()
    assert [len(s) for s in h.singular_values[0]] == [12, 12, 10]
    assert h.singular_values[0][1] == pytest.approx([1.0] * 12, abs=1e-5)  # orthogonal init
    assert h.psi_abs_sum[0] == 0.0 < h.psi_abs_sum[-1]
    assert len(h.epoch_seconds) == len(h.resize_seconds) == 4 and h.resize_seconds[-1] == 0.0
    assert h.settings["batch_size"] == 48 and h.settings["optimizer"] == "AdamW"
    assert h.test_accuracy[-1] == pytest.approx(evaluate(model, digits)["accuracy"])
    d = h.to_dict(timings=False)
    assert "epoch_seconds" not in d and d["widths"] == h.widths


def test_same_seed_gives_the_same_history(digits):
    runs = []
    for seed in (3, 3, 4):
        model = small(seed=0)
        runs.append(
            fit(model, digits, epochs=2, adapt=AdaptSchedule(2, 0.97), seed=seed, verbose=False)
        )
    assert runs[0].to_dict(timings=False) == runs[1].to_dict(timings=False)
    assert runs[0].train_loss != runs[2].train_loss  # the seed sets the data order


def test_adapt_every_epoch_carries_the_optimizer(digits):
    model = small((64, 10, 10, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    h = fit(model, digits, epochs=4, adapt=AdaptSchedule(3, 0.999), optimizer=opt, seed=0,
            verbose=False)  # fmt: skip
    assert h.widths[-1] != h.widths[0] and h.widths[-1] == model.widths
    assert all(r for r in h.resizes[1:]) and "adapt" in h.resizes[1][0]
    trainable = [p for p in model.parameters() if p.requires_grad]
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert len(in_opt) == len(trainable)
    assert {id(p) for p in in_opt} == {id(p) for p in trainable}
    assert all(opt.state[p]["exp_avg"].shape == p.shape for p in trainable if p in opt.state)
    assert h.train_loss[-1] < h.train_loss[2] < h.train_loss[1]  # training keeps improving
    # and it can continue with the same optimizer afterwards
    more = fit(model, digits, epochs=1, optimizer=opt, seed=1, verbose=False)
    assert more.train_loss[-1] < h.train_loss[-1]


def test_width_schedule_moves_linearly(digits):
    model = small((64, 4, 16, 10))
    h = fit(model, digits, epochs=4, width_schedule=[12, 8], seed=0, verbose=False)
    assert [w[1:3] for w in h.widths] == [[4, 16], [6, 14], [8, 12], [10, 10], [12, 8]]
    sched = WidthSchedule((20, 4), epochs=2)
    assert sched.widths_at(1, [10, 10], 99) == [15, 7] and sched.widths_at(5, [10, 10], 99) == [
        20,
        4,
    ]
    model = small((64, 6, 6, 10))
    h = fit(model, digits, epochs=3, width_schedule=sched, seed=0, verbose=False)
    assert h.widths[-1] == [64, 20, 4, 10] and h.widths[1] == [64, 13, 5, 10]
    assert any("prune" in r for rs in h.resizes for r in rs)
    assert any("grow" in r for rs in h.resizes for r in rs)


def test_plain_module_and_paired_standard(digits):
    iso = small()
    std = paired_standard(iso)
    x = digits.x_test[:5]
    torch.testing.assert_close(std[0](x), iso.linears[0](x))
    for a, b in zip(layer_spectra(std), layer_spectra(iso), strict=True):
        torch.testing.assert_close(a, b)
    h = fit(std, digits, epochs=2, lr=1e-2, seed=0, verbose=False)
    assert h.test_accuracy[-1] > 0.7 and h.psi_abs_sum == [0.0] * 3
    assert h.widths[0] == [64, 12, 12, 10]
    with pytest.raises(NotIsotropicError):
        fit(std, digits, epochs=1, adapt=AdaptSchedule(), verbose=False)
    with pytest.raises(NotIsotropicError):
        fit(std, digits, epochs=1, width_schedule=[4, 4], verbose=False)


def test_standard_mlp_builder():
    m = standard_mlp([5, 7, 3], "relu", generator=torch.Generator().manual_seed(0))
    assert [type(x).__name__ for x in m] == ["Linear", "ReLU", "Linear"]
    w = m[0].weight.detach()
    torch.testing.assert_close(w.T @ w, torch.eye(5), atol=1e-5, rtol=0)  # orthogonal columns
    assert not m[0].bias.any()
    k = standard_mlp([5, 7, 3], init="kaiming", generator=torch.Generator().manual_seed(0))
    assert k[0].bias.abs().sum() > 0 and len(linear_layers(k)) == 2
    with pytest.raises(IsoproofError, match="activation"):
        standard_mlp([5, 3], "swishy")
    with pytest.raises(IsoproofError, match="init"):
        standard_mlp([5, 3], init="xavier")


def test_paired_standard_refuses_nonzero_psi():
    iso = small()
    with torch.no_grad():
        iso.psi[0].fill_(0.5)
    with pytest.raises(IsoproofError, match="psi = 0"):
        paired_standard(iso)
    assert isinstance(paired_standard(iso, strict=False), nn.Sequential)


def test_multitask_training_with_loss_weights(digits):
    a = digits.subset(240, 100)
    b = Dataset("shifted", -a.x_train, (a.y_train + 3) % 10, -a.x_test, (a.y_test + 3) % 10,
                a.mean, a.std, a.classes)  # fmt: skip
    mt = multitask(a, b)
    model = small((128, 16, 16, 20))
    h = fit(model, mt, epochs=4, task_weights=[(1, 0), (1, 0), (0, 1), (0, 1)], lr=1e-2, seed=0,
            verbose=False)  # fmt: skip
    assert h.task_names == ["digits", "shifted"] and h.task_weights[3] == [0.0, 1.0]
    assert len(h.task_accuracy[0]) == 2
    assert h.task_accuracy[2][0] > 0.5 > h.task_accuracy[2][1]  # only task 0 trained so far
    assert h.task_accuracy[4][1] > h.task_accuracy[2][1]
    with pytest.raises(IsoproofError, match="task weights for every epoch"):
        fit(small((128, 4, 20)), mt, epochs=2, task_weights=[(1, 1)], verbose=False)
    with pytest.raises(IsoproofError, match="only with a MultiTaskDataset"):
        fit(small(), a, epochs=1, task_weights=[(1, 1)], verbose=False)


# ----------------------------------------------------------------------- errors and output
def test_fit_rejects_bad_arguments(digits):
    with pytest.raises(IsoproofError, match="epochs"):
        fit(small(), digits, epochs=0)
    with pytest.raises(IsoproofError, match="lr"):
        fit(small(), digits, epochs=1, lr=-1.0)
    with pytest.raises(WidthError, match="64 features to 10 classes"):
        fit(small((40, 8, 10)), digits, epochs=1)
    with pytest.raises(IsoproofError, match="at most one"):
        fit(small(), digits, epochs=1, adapt=AdaptSchedule(), width_schedule=[4, 4])
    with pytest.raises(WidthError, match="2 target widths"):
        fit(small(), digits, epochs=1, width_schedule=[4])
    with pytest.raises(IsoproofError, match="Dataset"):
        fit(small(), (digits.x_train, digits.y_train), epochs=1)
    with pytest.raises(IsoproofError, match="buffer"):
        AdaptSchedule(buffer=-1)
    with pytest.raises(IsoproofError, match="threshold"):
        AdaptSchedule(threshold=float("nan"))


def test_non_finite_loss_is_reported(digits):
    x = digits.x_train.clone()
    x[7, 3] = float("nan")
    bad = Dataset("bad", x, digits.y_train, digits.x_test, digits.y_test, digits.mean, digits.std)
    with pytest.raises(NonFiniteError, match="finite loss, got nan at epoch 1 step"):
        fit(small(), bad, epochs=1, seed=0, verbose=False)


def test_verbose_prints_one_line_per_epoch(digits, capsys):
    fit(small(), digits, epochs=2, seed=0, verbose=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "widths [64, 12, 12, 10]" in err


def test_device_argument_and_float64(digits):
    model = small(dtype=torch.float64)
    h = fit(copy.deepcopy(model), digits, epochs=1, lr=1e-2, device="cpu", seed=0, verbose=False)
    assert h.test_accuracy[-1] > 0.3
