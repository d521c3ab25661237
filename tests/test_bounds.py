"""Receipts never overstate exactness (issue 16, items 6-7): the closed-form radial constants
against a dense grid, and the pruning bound against a brute-force worst case on small nets."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model

import isoproof as ip
from isoproof.radial import get_radial

SPECS = ["tanh", "softsign", "log1p", "shifted_relu:0.5", "shifted_relu:2"]


@pytest.mark.parametrize("spec", SPECS)
def test_closed_form_constants_bound_the_grid(spec):
    rad = get_radial(spec)
    r = torch.logspace(-6, 6, 200_001, dtype=torch.float64).requires_grad_(True)
    s = rad(r)
    g = s / r
    ds = torch.autograd.grad(s.sum(), r, retain_graph=True)[0].detach()
    dg = torch.autograd.grad(g.sum(), r)[0].detach()
    s, g = s.detach(), g.detach()
    measured = {
        "lipschitz": float(torch.maximum(g.abs(), ds.abs()).max()),
        "gain_lipschitz": float(dg.abs().max()),
        "gain_bound": float(g.max()),
        "bound": float(s.abs().max()) if math.isfinite(rad.bound) else math.inf,
    }
    for name, value in measured.items():
        claimed = getattr(rad, name)
        assert value <= claimed, (name, value, claimed)
        if not (spec == "tanh" and name == "gain_lipschitz"):  # tanh's is a proven upper bound
            assert value >= 0.999 * claimed, (name, value, claimed)  # and the supremum


def _tight_model(sigma: float) -> ip.IsotropicMLP:
    """[2, 2, 1], tanh, no o, no psi: W0 = diag(1, sigma), W1 = [0, 1]. Removing the sigma neuron
    changes the output by tanh(sigma |x2|), the bound is sigma |x|: tight as sigma |x| -> 0."""
    m = ip.IsotropicMLP([2, 2, 1], intrinsic_length="none", psi="none", dtype=torch.float64)
    with torch.no_grad():
        m.linears[0].weight.copy_(torch.diag(torch.tensor([1.0, sigma], dtype=torch.float64)))
        m.linears[0].bias.zero_()
        m.linears[1].weight.copy_(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
        m.linears[1].bias.zero_()
    return m


def test_prune_bound_is_tight_and_holds():
    """Kills 'halving the bound' and 'layer-0 bound from the mean probe row norm'."""
    model = _tight_model(1e-2)
    probe = torch.tensor([[0.0, 1.0], [0.0, 0.01], [0.01, 0.0]], dtype=torch.float64)
    receipt = ip.prune(model, 0, 1, probe=probe)
    assert receipt.max_abs_change == pytest.approx(math.tanh(1e-2), rel=1e-12)
    assert receipt.max_abs_change <= receipt.bound <= 1.001 * receipt.max_abs_change


def test_input_norm_is_validated():
    probe = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    for bad in (-1.0, 0.0, math.nan, math.inf, "1"):
        model = _tight_model(1e-2)
        with pytest.raises(ip.IsoproofError, match="input_norm"):
            ip.prune(model, 0, 1, input_norm=bad)
        assert model.widths == [2, 2, 1]
    model = _tight_model(1e-2)
    with pytest.raises(ip.IsoproofError, match="input_norm"):
        ip.prune(model, 0, 1, input_norm=0.5, probe=probe)  # a probe row outside the ball
    assert model.widths == [2, 2, 1]
    receipt = ip.prune(model, 0, 1, input_norm=1.0, probe=probe)
    assert receipt.max_abs_change <= receipt.bound


@pytest.mark.parametrize("probe", [torch.full((4, 2), math.nan), torch.tensor([[0.0, math.inf]])])
def test_nonfinite_probe_is_refused(probe):
    model = _tight_model(1e-2)
    with pytest.raises(ip.NonFiniteError, match="probe"):
        ip.prune(model, 0, 1, probe=probe.double())
    with pytest.raises(ip.NonFiniteError, match="probe"):
        ip.rotate(model, 0, torch.eye(2, dtype=torch.float64), probe=probe.double())
    assert model.widths == [2, 2, 1]


def _worst_change(before, after, n_in: int, radius: float, seed: int) -> float:
    """Brute force: random points in and on the ball |x| <= radius, then gradient ascent."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, n_in, generator=g, dtype=torch.float64)
    x = radius * x / x.norm(dim=-1, keepdim=True)
    x = torch.cat([x, x * torch.rand(512, 1, generator=g, dtype=torch.float64)])
    with torch.no_grad():
        worst = (after(x) - before(x)).abs().amax(dim=-1)
    start = x[worst.argsort(descending=True)[:8]].clone().requires_grad_(True)
    opt = torch.optim.Adam([start], lr=0.05 * radius)
    for _ in range(40):
        opt.zero_grad()
        (-(after(start) - before(start)).abs().amax(dim=-1).sum()).backward()
        opt.step()
        with torch.no_grad():
            n = start.norm(dim=-1, keepdim=True).clamp_min(radius)
            start.mul_(radius / n)
    with torch.no_grad():
        return max(float(worst.max()), float((after(start) - before(start)).abs().max()))


@pytest.mark.parametrize("radial", ["tanh", "softsign", "log1p", "shifted_relu:0.5"])
def test_prune_bound_against_brute_force(radial, seed=0):
    """The bound holds for every |x| <= input_norm (not just the probe), every profile."""
    import copy

    model = make_model([3, 4, 4, 2], seed=seed, radial=radial, psi="constant")
    before = copy.deepcopy(model).eval()
    receipt = ip.prune(model, 0, 2, input_norm=2.0)
    worst = _worst_change(before, model.eval(), 3, 2.0, seed)
    assert worst <= receipt.bound, (worst, receipt.bound)


def test_psi_term_of_the_downstream_constant():
    """W1 = 0: layer 0 reaches the output only through psi_0 g_0, so dropping the psi term of
    C_h would give bound 0 for a real change."""
    import copy

    model = make_model([3, 3, 4, 2], seed=3, psi="constant")
    with torch.no_grad():
        model.linears[1].weight.zero_()
        model.linears[0].weight[-1] *= 0.05  # a weak neuron to prune
    before = copy.deepcopy(model).eval()
    receipt = ip.prune(model, 0, 1, input_norm=1.0)
    worst = _worst_change(before, model.eval(), 3, 1.0, 3)
    assert 0 < worst <= receipt.bound


def test_gathering_with_exactly_two_dead_neurons():
    """[3, 3, 5, 2]: hidden layer 1 has 5 rows on 3 inputs, i.e. exactly 2 sigma = 0 neurons with
    their own psi; gathering lets one of them go exactly."""
    model = make_model([3, 3, 5, 2], seed=4)
    x = torch.randn(64, 3, dtype=torch.float64)
    receipt = ip.prune_dead(model, 1, probe=x)
    assert model.widths == [3, 3, 4, 2]
    assert receipt.max_abs_change < 1e-12
