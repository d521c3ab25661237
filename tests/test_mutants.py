"""Boundary cases a mutation run found untested (issue 16): each test here fails under one of
the single realistic bugs applied by ``benchmarks/mutation.py``."""

from __future__ import annotations

import torch

import isoproof as ip

F64 = torch.float64


def _diag_model(d0, d1) -> ip.IsotropicMLP:
    n = len(d0)
    m = ip.IsotropicMLP([n, n, n, 2], intrinsic_length="constant", psi="constant", dtype=F64)
    with torch.no_grad():
        m.linears[0].weight.copy_(torch.diag(torch.tensor(d0, dtype=F64)))
        m.linears[1].weight.copy_(torch.diag(torch.tensor(d1, dtype=F64)))
    return m


def test_adapt_sweeps_last_layer_first():
    """Layer 1 is pruned before layer 0 (the paper's order): its weak neuron (0.1) is removed
    first; sweeping first to last removes layer 0's (0.2) first, which changes layer 1."""
    model = _diag_model([1.0, 1.0, 0.2], [1.0, 1.0, 0.1])
    receipt = ip.adapt(model, buffer=0, threshold=0.25)
    assert receipt.singular_values[:2] == (0.1, 0.2)
    assert model.widths == [3, 2, 2, 2]


def test_adapt_counts_sigma_equal_to_threshold_as_weak():
    model = _diag_model([1.0, 1.0, 0.5], [1.0, 1.0, 1.0])
    receipt = ip.adapt(model, buffer=0, threshold=0.5)
    assert receipt.singular_values[0] == 0.5 and model.widths[1] == 2


def test_float32_norm_near_the_float32_limit():
    """100 entries of 5e37: |z| = 5e38 overflows float32, so the norm must switch to float64
    (it does from max|z| >= 1e30); f(z) = tanh(N)/N z = z/|z| = 0.1 each."""
    act = ip.IsotropicActivation("tanh", intrinsic_length="none", dtype=torch.float32)
    z = torch.full((1, 100), 5e37, dtype=torch.float32, requires_grad=True)
    y = act(z)
    y.sum().backward()
    assert torch.allclose(y.detach(), torch.full_like(y, 0.1), rtol=1e-6)
    assert bool(torch.isfinite(z.grad).all())


def test_export_mode_clamps_the_squared_norm_at_eps_squared():
    """|z|^2 = 1e-4 lies between eps^2 = 1e-6 and eps = 1e-3: the plain form must not clamp it."""
    act = ip.IsotropicActivation("tanh", intrinsic_length="none", dtype=F64)
    z = torch.tensor([[6e-3, 8e-3]], dtype=F64)  # |z| = 1e-2
    with ip.export_mode(act):
        plain = act(z)
    assert torch.allclose(plain, act(z), rtol=1e-14, atol=0)


def test_gain_ema_weights():
    """gain_means <- 0.9 * old + 0.1 * new (the first batch sets it)."""
    model = ip.IsotropicMLP([3, 4, 2], psi="none", dtype=F64)
    x1, x2 = torch.randn(8, 3, dtype=F64), 3 * torch.randn(8, 3, dtype=F64)
    model.train()
    model(x1)
    first = model.gains(x1)[0].mean()
    model.train()
    model(x2)
    second = model.gains(x2)[0].mean()
    assert torch.allclose(model.gain_means[0], 0.9 * first + 0.1 * second, rtol=1e-12)


def test_every_mutant_still_matches_the_code_it_breaks():
    """``make mutation`` is only a check while each mutant's original code occurs exactly once
    (six had gone stale after refactors: reported, never run)."""
    from benchmarks.mutation import MUTANTS, ROOT

    for name, file, old, new, tests in MUTANTS:
        assert (ROOT / file).read_text().count(old) == 1, name
        assert old != new, name
        for t in tests:
            assert (ROOT / t.split("::")[0]).is_file(), (name, t)
