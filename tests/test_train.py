"""fit(): history, determinism, resizes with the optimiser carried, plain modules, standard MLPs."""

from __future__ import annotations

import copy
import itertools
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import isoproof as ip
from isoproof.data import Dataset, load_digits, multitask
from isoproof.exceptions import (
    CheckpointError,
    IsoproofError,
    NonFiniteError,
    NotIsotropicError,
    WidthError,
)
from isoproof.optim import named_state
from isoproof.standard import linear_layers, paired_standard, standard_mlp
from isoproof.train import AdaptSchedule, History, WidthSchedule, evaluate, fit, layer_spectra

sys.path.insert(0, str(Path(__file__).parent))
from conftest import assert_unchanged, forge_checkpoint, snapshot

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
    for seed in (-1, 2**63, 10**23, True, 1.5):  # 10**23: "Overflow when unpacking long long"
        with pytest.raises(
            IsoproofError, match=r"expected seed to be an int"
        ):
            fit(small(), digits, epochs=1, seed=seed, verbose=False)


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


# ----------------------------------------------------------------------- checkpoint and resume
# [64, 8, 8, 10] with this schedule prunes after epoch 3 and grows after epoch 4 (measured)
RESUME = {
    "lr": 3e-2,
    "adapt": AdaptSchedule(buffer=3, threshold=0.9),
    "seed": 0,
    "verbose": False,
}


def adam(model: nn.Module) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=3e-2, weight_decay=1e-3)


def state_bits(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Parameters, buffers and optimiser state (moments and steps) by name."""
    out = {f"param.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out |= {f"optim.{k}": v.clone() for k, v in named_state(opt, model)[0].items()}
    return out


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| over every entry (inf if names or shapes differ); NaN == NaN."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    diffs = [(a[k].double() - b[k].double()).nan_to_num(0.0).abs() for k in a]
    return max(float(d.max()) for d in diffs if d.numel())


def bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    def raw(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(-1).view(torch.uint8)  # NaN == NaN, -0.0 != 0.0

    same = a.keys() == b.keys()
    return same and all(a[k].dtype == b[k].dtype and torch.equal(raw(a[k]), raw(b[k])) for k in a)


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """fit(epochs=4) uninterrupted; fit(epochs=2, checkpoint) then fit(epochs=4, resume)."""
    folder = tmp_path_factory.mktemp("resume")
    whole = small((64, 8, 8, 10), dtype=torch.float64)
    opt = adam(whole)
    h = fit(whole, digits, epochs=4, optimizer=opt, checkpoint=folder / "whole.st", **RESUME)
    half = small((64, 8, 8, 10), dtype=torch.float64)
    fit(half, digits, epochs=2, optimizer=adam(half), checkpoint=folder / "half.st", **RESUME)
    torch.manual_seed(12345)  # fit must not depend on the global RNG
    resumed = ip.load(folder / "half.st")
    opt2 = adam(resumed)
    h2 = fit(resumed, digits, epochs=4, optimizer=opt2, resume=folder / "half.st",
             checkpoint=folder / "resumed.st", **RESUME)  # fmt: skip
    return {"folder": folder, "whole": (whole, opt, h), "resumed": (resumed, opt2, h2)}


def test_resumed_run_is_bit_identical_through_growth_and_pruning(runs):
    (whole, opt, h), (resumed, opt2, h2) = runs["whole"], runs["resumed"]
    pairs = itertools.pairwise(h.widths[2:])  # the resizes after the checkpoint
    steps = [b - a for w0, w1 in pairs for a, b in zip(w0, w1, strict=True)]
    assert min(steps) < 0 < max(steps), h.widths  # it pruned and grew after resuming
    a, b = state_bits(whole, opt), state_bits(resumed, opt2)
    assert any(k.endswith("/exp_avg_sq") for k in a) and any(k.endswith("/step") for k in a)
    assert max_diff(a, b) == 0.0 and bit_identical(a, b)
    assert h2.to_dict(timings=False) == h.to_dict(timings=False)
    assert opt2.param_groups[0]["lr"] == 3e-2 and len(h2) == 5
    # the last checkpoints agree too, generator states included
    last, last2 = (load_file(runs["folder"] / n) for n in ("whole.st", "resumed.st"))
    gens = [k for k in last if k.startswith("train/generator/")]
    assert sorted(gens) == ["train/generator/neurons", "train/generator/shuffle"]
    assert bit_identical({k: last[k] for k in last if k != "train/history"},
                         {k: last2[k] for k in last2 if k != "train/history"})  # fmt: skip


def test_resuming_with_fresh_moments_differs(runs, digits, tmp_path):
    """Negative control: the same checkpoint without its optimiser state (a fresh AdamW at the
    checkpoint's hyper-parameters) ends elsewhere, so the identity above can fail."""

    def drop_state(tensors, training):
        for k in [k for k in tensors if k.startswith("train/optimizer/")]:
            del tensors[k]
        training["optimizer"]["state"] = {}

    forge_checkpoint(runs["folder"] / "half.st", tmp_path / "fresh.st", drop_state)
    model = ip.load(tmp_path / "fresh.st")
    opt = adam(model)
    fit(model, digits, epochs=4, optimizer=opt, resume=tmp_path / "fresh.st", **RESUME)
    delta = max_diff(runs["whole"][0].state_dict(), model.state_dict())
    print(f"fresh moments: max |delta| of the parameters = {delta:.3g}")
    assert delta > 1e-3  # inf when the widths differ too


def test_resume_refuses_another_model_or_other_settings(runs, digits):
    path = runs["folder"] / "half.st"
    model = ip.load(path)
    opt = torch.optim.AdamW(model.parameters(), lr=0.0)  # moments, but the weights stay the file's
    model(digits.x_train[:8].double()).sum().backward()
    opt.step()
    before = snapshot(model)
    opt_before = {k: v.clone() for k, v in named_state(opt, model)[0].items()}
    with pytest.raises(CheckpointError, match=r"setting lr=0\.03, got lr=0\.01"):
        fit(model, digits, epochs=4, optimizer=opt, resume=path, **(RESUME | {"lr": 1e-2}))
    with pytest.raises(CheckpointError, match="setting seed=0, got seed=1"):
        fit(model, digits, epochs=4, optimizer=opt, resume=path, **(RESUME | {"seed": 1}))
    with pytest.raises(CheckpointError, match="expected the class SGD, got 'AdamW'"):
        fit(model, digits, epochs=4, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            resume=path, **RESUME)  # fmt: skip
    with pytest.raises(IsoproofError, match="expected epochs >= 2"):
        fit(model, digits, epochs=1, optimizer=opt, resume=path, **RESUME)
    assert_unchanged(model, before)
    assert bit_identical(named_state(opt, model)[0], opt_before)  # the optimiser too
    assert opt.param_groups[0]["lr"] == 0.0 and opt_before
    fresh = small((64, 8, 8, 10), dtype=torch.float64)  # the constructor's model, not the file's
    with pytest.raises(CheckpointError, match="expected a checkpoint of this model"):
        fit(fresh, digits, epochs=4, optimizer=adam(fresh), resume=path, **RESUME)
    with pytest.raises(CheckpointError, match="expected a training checkpoint"):
        fit(model, digits, epochs=4, optimizer=opt, resume=ip.save(model, runs["folder"] / "m.st"),
            **RESUME)  # fmt: skip


def test_checkpoint_needs_a_saveable_model(digits, tmp_path):
    plain = nn.Sequential(nn.Linear(64, 10))
    with pytest.raises(NotIsotropicError, match="saveable class"):
        fit(plain, digits, epochs=1, checkpoint=tmp_path / "c.st", verbose=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(IsoproofError, match="expected checkpoint to be a file path"):
        fit(small(), digits, epochs=1, checkpoint=3, verbose=False)


@pytest.mark.parametrize("kind", ["tensor_lr", "foreign_parameter"])
def test_checkpoint_refuses_an_unsaveable_optimiser_before_training(digits, tmp_path, kind):
    """What write_checkpoint would raise after the first epoch is raised before it."""
    model = small()
    if kind == "tensor_lr":
        opt, match = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3)), "lr=tensor"
    else:
        foreign = nn.Parameter(torch.zeros(3))
        opt, match = torch.optim.AdamW([*model.parameters(), foreign]), r"shapes \[\(3,\)\]"
    before, epochs = snapshot(model), []
    with pytest.raises(IsoproofError, match=match):
        fit(model, digits, epochs=2, optimizer=opt, checkpoint=tmp_path / "c.st", verbose=False,
            callbacks=[lambda e, m, h: epochs.append(e)])  # fmt: skip
    assert epochs == [] and not opt.state and list(tmp_path.iterdir()) == []
    assert_unchanged(model, before)


def test_resumed_width_schedule_keeps_its_starting_widths(digits, tmp_path):
    """A WidthSchedule moves from the *starting* widths, which the checkpoint keeps."""
    kw = RESUME | {"adapt": None, "width_schedule": WidthSchedule((14, 4), epochs=4)}
    whole = small((64, 8, 8, 10), dtype=torch.float64)
    opt = adam(whole)
    h = fit(whole, digits, epochs=4, optimizer=opt, **kw)
    first = small((64, 8, 8, 10), dtype=torch.float64)
    fit(first, digits, epochs=2, optimizer=adam(first), checkpoint=tmp_path / "c.st", **kw)
    resumed = ip.load(tmp_path / "c.st")
    opt2 = adam(resumed)
    h2 = fit(resumed, digits, epochs=4, optimizer=opt2, resume=tmp_path / "c.st", **kw)
    assert h.widths[2] == [64, 11, 6, 10] and h.widths[-1] == [64, 14, 4, 10]
    assert bit_identical(state_bits(whole, opt), state_bits(resumed, opt2))
    assert h2.to_dict(timings=False) == h.to_dict(timings=False)


def test_width_schedule_over_the_whole_run_keeps_its_epochs(digits, tmp_path):
    """WidthSchedule(epochs=None) spans fit's epochs: resuming with another total would move the
    widths on another line (the CLI's --width-schedule is one), so it is refused."""
    first = small((64, 8, 8, 10), dtype=torch.float64)
    kw = RESUME | {"adapt": None, "width_schedule": (14, 4)}
    fit(first, digits, epochs=2, optimizer=adam(first), checkpoint=tmp_path / "c.st", **kw)
    model = ip.load(tmp_path / "c.st")
    opt = adam(model)
    before = snapshot(model)
    with pytest.raises(CheckpointError, match=r"setting epochs=2, got epochs=4 \(a WidthSchedule"):
        fit(model, digits, epochs=4, optimizer=opt, resume=tmp_path / "c.st", **kw)
    assert_unchanged(model, before)
    assert not opt.state
    h = fit(model, digits, epochs=2, optimizer=opt, resume=tmp_path / "c.st", **kw)
    assert len(h) == 3 and h.widths[-1] == [64, 14, 4, 10]


def test_a_run_stopped_by_a_callback_stays_stopped(digits, tmp_path):
    """A callback stopped the run after epoch 2 of 5: resuming it trains no further epoch."""
    calls = []
    stop = lambda epoch, model, history: calls.append(epoch) or epoch == 2  # noqa: E731
    first = small((64, 8, 8, 10), dtype=torch.float64)
    opt1 = adam(first)
    h = fit(first, digits, epochs=5, optimizer=opt1, checkpoint=tmp_path / "c.st",
            callbacks=[stop], **RESUME)  # fmt: skip
    assert len(h) == 3 and calls == [1, 2]
    model = ip.load(tmp_path / "c.st")
    opt = adam(model)
    before = snapshot(model)
    h2 = fit(model, digits, epochs=5, optimizer=opt, resume=tmp_path / "c.st", callbacks=[stop],
             **RESUME)  # fmt: skip
    assert h2.to_dict(timings=False) == h.to_dict(timings=False) and calls == [1, 2]
    assert_unchanged(model, before)
    assert bit_identical(state_bits(model, opt), state_bits(first, opt1))
