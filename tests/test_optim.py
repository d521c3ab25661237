"""Optimiser state through structural operations (one transform routine for all of them)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_unchanged, batch, make_model, snapshot

import isoproof as ip
from isoproof.testing import random_orthogonal

WIDTHS = [6, 8, 8, 3]


def loss_fn(model, x, y):
    return F.cross_entropy(model(x), y) + model.penalty()


def data(seed=0, rows=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (rows,), generator=g
    )


def step(model, opt, x, y):
    opt.zero_grad()
    loss_fn(model, x, y).backward()
    opt.step()


def params_match(a, b, atol=1e-12):
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=atol, msg=na)


def test_sgd_momentum_commutes_with_rotation_exactly():
    x, y = data()
    model = make_model(WIDTHS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    step(model, opt, x, y)  # momentum buffers exist now
    other = copy.deepcopy(model)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    other_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict shares tensors
    Q = random_orthogonal(8, reflection=True, generator=torch.Generator().manual_seed(5))
    # path A: rotate (with the optimizer), then step
    ip.rotate(model, 1, Q, optimizer=opt)
    step(model, opt, x, y)
    # path B: step, then rotate
    step(other, other_opt, x, y)
    ip.rotate(other, 1, Q)
    params_match(model, other)
    # and it is not trivially true: without the optimizer, path A diverges from path B
    third = copy.deepcopy(other)
    third_opt = torch.optim.SGD(third.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    third_opt.load_state_dict(copy.deepcopy(other_opt.state_dict()))
    ip.rotate(third, 0, random_orthogonal(8, generator=torch.Generator().manual_seed(6)))
    step(third, third_opt, x, y)
    step(other, other_opt, x, y)
    with pytest.raises(AssertionError):
        params_match(third, other, atol=1e-6)


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_adam_moments_follow_the_same_map(cls):
    x, y = data()
    model = make_model(WIDTHS)
    opt = cls(model.parameters(), lr=1e-3, amsgrad=True)
    for _ in range(3):
        step(model, opt, x, y)
    W1, W2 = model.linears[1].weight, model.linears[2].weight
    m1, v1 = opt.state[W1]["exp_avg"].clone(), opt.state[W1]["exp_avg_sq"].clone()
    m2, v2 = opt.state[W2]["exp_avg"].clone(), opt.state[W2]["exp_avg_sq"].clone()
    vmax = opt.state[W1]["max_exp_avg_sq"].clone()
    step_count = opt.state[W1]["step"].clone()
    Q = random_orthogonal(8, generator=torch.Generator().manual_seed(3))
    ip.rotate(model, 1, Q, optimizer=opt)
    st1, st2 = opt.state[model.linears[1].weight], opt.state[model.linears[2].weight]
    torch.testing.assert_close(st1["exp_avg"], Q.T @ m1)  # first moments: exact map
    torch.testing.assert_close(st2["exp_avg"], m2 @ Q)
    torch.testing.assert_close(st1["exp_avg_sq"], (Q.T**2) @ v1)  # second: squared map
    torch.testing.assert_close(st2["exp_avg_sq"], v2 @ (Q**2))
    torch.testing.assert_close(st1["max_exp_avg_sq"], (Q.T**2) @ vmax)
    assert torch.equal(st1["step"], step_count)


def test_growth_gives_new_entries_zero_moments_and_repoints_groups():
    x, y = data()
    model = make_model(WIDTHS)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step(model, opt, x, y)
    old_ids = {id(p) for p in model.parameters()}
    ip.grow(model, 0, n=2, optimizer=opt)
    group_params = opt.param_groups[0]["params"]
    assert [id(p) for p in group_params] == [id(p) for p in model.parameters()]
    assert {id(p) for p in model.parameters()} != old_ids  # resized ones are new Parameters
    W0, W1 = model.linears[0].weight, model.linears[1].weight
    assert torch.count_nonzero(opt.state[W0]["exp_avg"][-2:]) == 0
    assert torch.count_nonzero(opt.state[W1]["exp_avg_sq"][:, -2:]) == 0
    assert opt.state[W0]["exp_avg"].shape == W0.shape
    assert set(opt.state) == set(model.parameters())
    step(model, opt, x, y)  # no stale-parameter error


def test_full_diagonalise_keeps_the_diagonal_of_the_moments():
    x, y = data()
    model = make_model([6, 8, 8, 8, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step(model, opt, x, y)
    ip.full_diagonalise(model, 1, optimizer=opt)
    d = model.linears[1].diagonal
    assert opt.state[d]["momentum_buffer"].shape == d.shape
    assert set(opt.state) == set(model.parameters())
    step(model, opt, x, y)


def test_training_with_adapt_every_epoch_keeps_the_optimizer_consistent():
    x, y = data(rows=256)
    model = make_model([6, 12, 12, 3], seed=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)
    losses = []
    for epoch in range(12):
        for i in range(0, 256, 64):
            step(model, opt, x[i : i + 64], y[i : i + 64])
        ip.adapt(
            model,
            buffer=2,
            threshold=0.3,
            optimizer=opt,
            generator=torch.Generator().manual_seed(epoch),
        )
        assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]
        assert set(opt.state) <= set(model.parameters())
        with torch.no_grad():
            losses.append(float(loss_fn(model, x, y)))
    assert losses[-1] < 0.8 * losses[0], losses


def test_unsupported_optimizer_is_refused_before_anything_changes():
    model = make_model(WIDTHS)
    before = snapshot(model)
    opt = torch.optim.RMSprop(model.parameters())
    with pytest.raises(ip.UnsupportedOptimizerError, match="expected one of SGD, Adam, AdamW"):
        ip.grow(model, 0, optimizer=opt)
    assert_unchanged(model, before)


def test_failed_operation_leaves_the_optimizer_untouched():
    x, y = data()
    model = make_model(WIDTHS)
    opt = torch.optim.Adam(model.parameters())
    step(model, opt, x, y)
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(ip.WidthError):
        ip.prune(model, 0, n=8, optimizer=opt)
    after = opt.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for k, v in state["state"].items():
        for name, t in v.items():
            assert torch.equal(after["state"][k][name], t)


def test_commit_rolls_back_if_writing_fails(monkeypatch):
    model = make_model(WIDTHS)
    ref = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("isoproof.ops._surgery.write_moments", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ip.grow(model, 1, n=2, optimizer=opt)
    assert model.widths == WIDTHS
    x = batch(6)
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in model.parameters()]


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, betas=(0.8, 0.95)),
    ],
    ids=["sgd", "adam_amsgrad", "adamw"],
)
def test_named_state_round_trips_through_a_resize(make):
    """The state by parameter name, written after a grow, loads bit-exactly into a new
    optimiser over a model rebuilt with the grown widths (as a resumed run does)."""
    x, y = data()
    model = make_model(WIDTHS)
    opt = make(model.parameters())
    step(model, opt, x, y)
    ip.grow(model, 1, 2, optimizer=opt)  # new Parameter objects, the same names
    step(model, opt, x, y)
    tensors, description = ip.optim.named_state(opt, model)
    tensors = {k: v.clone() for k, v in tensors.items()}  # views of the live state otherwise
    twin = copy.deepcopy(model)
    again = make(twin.parameters())
    assert ip.optim.check_named_state(again, twin, description, {}).keys() == tensors.keys()
    again.load_state_dict(ip.optim.named_state_dict(again, twin, description, tensors))
    control = copy.deepcopy(twin)  # the same step with a fresh optimiser differs
    for m, o in ((model, opt), (twin, again), (control, make(control.parameters()))):
        step(m, o, x, y)
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(model.linears[0].weight, control.linears[0].weight)


def test_complement_of_a_basis_column_stays_finite() -> None:
    """A column already +-e_j has tau = 0 (an identity reflector): no 1/0 in the compact form."""
    from isoproof.optim import Complement

    for n, cols in ((5, [0]), (6, [0, 3])):
        N = torch.eye(n, dtype=torch.float64)[:, cols]
        c = Complement.of(N)
        C = c.matrix()
        assert bool(torch.isfinite(c.M).all())
        assert float((C @ N).abs().max()) == 0.0
        torch.testing.assert_close(C @ C.T, torch.eye(n - len(cols), dtype=torch.float64))
