"""grow / prune / prune_below / adapt / task neurons: exactness, bounds and negative controls."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import TOL, assert_unchanged, batch, make_model, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import isoproof as ip
from isoproof.ops._surgery import Surgery
from isoproof.ops.neurodegeneration import remove_weakest
from isoproof.testing import assert_function_preserved, random_orthogonal

WIDTHS = [6, 8, 7, 7, 3]


def weak_model(layer: int, k: int, sigma: float, *, own_psi: float = 0.0, seed: int = 0):
    """A random model whose hidden layer ``layer`` has ``k`` neurons with singular value ``sigma``
    (and own psi entry ``own_psi``) in its diagonalised basis; biases of those neurons non-zero."""
    model = make_model(WIDTHS, seed=seed)
    ip.left_diagonalise(model, layer)
    with torch.no_grad():
        W = model.linears[layer].weight
        W[-k:] = W[-k:] / W[-k:].norm(dim=1, keepdim=True) * sigma
        model.linears[layer].bias[-k:] = torch.linspace(0.5, 1.0, k, dtype=W.dtype)
        if layer >= 1:
            model.psi[layer - 1][-k:] = own_psi
    return model


# ---------------------------------------------------------------- neurogenesis
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_grow_is_exact_for_any_outgoing_column(dtype, layer):
    model = make_model(WIDTHS, dtype=dtype)
    ref = copy.deepcopy(model)
    x = batch(6, dtype=dtype)
    r = ip.grow(
        model, layer, n=3, init_scale=5.0, generator=torch.Generator().manual_seed(0), probe=x
    )
    assert model.widths[layer + 1] == WIDTHS[layer + 1] + 3 and r.exact
    assert r.max_abs_change <= TOL[dtype]
    new_cols = model.linears[layer + 1].weight[:, -3:]
    assert float(new_cols.abs().min()) > 0  # really non-zero outgoing columns
    assert torch.count_nonzero(model.linears[layer].weight[-3:]) == 0
    assert torch.count_nonzero(model.linears[layer].bias[-3:]) == 0
    if layer >= 1:
        assert torch.count_nonzero(model.psi[layer - 1][-3:]) == 0
    assert_function_preserved(ref, model, x, atol=TOL[dtype])


@pytest.mark.parametrize(("scale", "nonzero"), [(0.01, True), (0.0, False)])
def test_new_rows_get_gradient_only_with_nonzero_outgoing_columns(scale, nonzero):
    model = make_model(WIDTHS)
    ip.grow(model, 1, n=2, init_scale=scale, generator=torch.Generator().manual_seed(1))
    x, y = batch(6, 64), torch.randint(0, 3, (64,), generator=torch.Generator().manual_seed(2))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    g = model.linears[1].weight.grad[-2:]
    if nonzero:
        assert float(g.abs().max()) > 1e-6
    else:
        assert float(g.abs().max()) == 0.0


# ---------------------------------------------------------------- neurodegeneration
@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_prune_at_sigma_zero_is_exact(layer, k):
    model = weak_model(layer, k, 0.0)
    ref = copy.deepcopy(model)
    x = batch(6, 64)
    o_before = float(model.activations[layer].o.detach())
    b_star = model.linears[layer].bias[-k:].detach().clone()
    r = ip.prune(model, layer, n=k, probe=x)
    assert model.widths[layer + 1] == WIDTHS[layer + 1] - k
    assert r.max_abs_change <= 1e-12 and r.bound <= 1e-12
    assert r.singular_values == pytest.approx([0.0] * k, abs=1e-12)
    # o <- o + sum b*^2 (exact: see proofs/neurodegeneration.py)
    o_after = float(model.activations[layer].o.detach())
    assert o_after == pytest.approx(o_before + float((b_star**2).sum()), rel=1e-10)
    assert_function_preserved(ref, model, x)


@pytest.mark.parametrize("layer", [1, 2])  # layer 0 is wider than its input: sigma = 0 rows exist
def test_prune_error_is_linear_in_sigma_and_under_the_bound(layer):
    x = batch(6, 128)
    changes = []
    for sigma in (1e-2, 1e-3, 1e-4):
        model = weak_model(layer, 2, sigma)
        r = ip.prune(model, layer, n=2, probe=x)
        assert 0 < r.max_abs_change <= r.bound
        changes.append(r.max_abs_change)
    ratios = [changes[i] / changes[i + 1] for i in range(2)]
    assert all(8 < q < 12.5 for q in ratios), ratios  # first order: 10x sigma -> ~10x error


def test_negative_control_without_o_update_leaves_an_error_floor():
    x = batch(6, 64)
    for flag in ("correct_o", "correct_psi"):
        floors = []
        for sigma in (1e-4, 1e-8, 0.0):
            model = weak_model(1, 2, sigma)
            y0 = model(x).detach()
            s = Surgery(model)
            _, bound = remove_weakest(s, 1, 2, **{flag: False})
            s.commit("prune", 1)
            floors.append(float((model(x) - y0).abs().max()))
            assert bound == math.inf
        # the error does not shrink with sigma: it is set by |b*|, not sigma
        assert min(floors) > 1e-3, (flag, floors)
        assert floors[-1] > 0.5 * floors[0], (flag, floors)


def test_nonzero_own_psi_makes_pruning_inexact_but_bounded():
    x = batch(6, 64)
    model = weak_model(2, 1, 0.0, own_psi=0.3)
    r = ip.prune(model, 2, probe=x)
    assert r.max_abs_change > 1e-4  # psi* g_{l-1} is input-dependent: not removable exactly
    assert r.max_abs_change <= r.bound
    exact = weak_model(2, 1, 0.0, own_psi=0.0)
    assert ip.prune(exact, 2, probe=x).max_abs_change <= 1e-12


def test_prune_below_removes_every_weak_neuron_last_layer_first():
    model = weak_model(1, 2, 1e-9)
    ref = copy.deepcopy(model)
    x = batch(6)
    r = ip.prune_below(model, 1e-6, probe=x)
    assert model.widths == [6, 6, 5, 7, 3]  # layer 0 also had two structural sigma = 0 rows
    assert r.op == "prune_below" and len(r.singular_values) == 4
    assert r.max_abs_change <= r.bound and r.max_abs_change < 1e-7
    assert_function_preserved(ref, model, x, atol=1e-7)
    # layer 2 (7 neurons) now reads only 5 inputs: two new sigma = 0 rows, found by a second pass
    again = ip.prune_below(model, 1e-6, probe=x)
    assert again.widths_after == (6, 6, 5, 5, 3)
    assert again.max_abs_change <= again.bound
    assert ip.prune_below(model, 1e-6).widths_after == again.widths_after


def test_refusals_change_nothing():
    model = make_model(WIDTHS)
    before = snapshot(model)
    with pytest.raises(ip.WidthError, match="at most 7 of the 8 neurons"):
        ip.prune(model, 0, n=8)
    with pytest.raises(ip.WidthError, match="at most"):
        ip.prune(model, 0, n=20)
    with pytest.raises(ip.WidthError, match="int >= 1"):
        ip.prune(model, 0, n=0)
    with pytest.raises(ip.WidthError, match="would remove all"):
        ip.prune_below(model, 100.0)
    with pytest.raises(ip.LayerIndexError):
        ip.grow(model, 3)
    with pytest.raises(ip.IsoproofError, match="init_scale"):
        ip.grow(model, 0, init_scale=-1.0)
    with pytest.raises(ip.IsoproofError, match="threshold"):
        ip.prune_below(model, -1.0)
    assert_unchanged(model, before)
    assert model.widths == WIDTHS


def test_expectation_mode_uses_the_recorded_mean_gain():
    model = make_model(WIDTHS, psi="none")
    ip.left_diagonalise(model, 1)
    with torch.no_grad():
        model.linears[1].weight[-1] = 0.0
        model.linears[1].bias[-1] = 0.8
    x = batch(6, 64)
    with pytest.raises(ip.MissingGainError, match="record_gains"):
        ip.prune(model, 1)
    model.record_gains(x)
    ref = copy.deepcopy(model)
    r = ip.prune(model, 1, probe=x)
    # approximate (g varies per sample) but small, and within the bound
    assert 0 < r.max_abs_change <= r.bound
    assert_function_preserved(ref, model, x, atol=0.05)


# ---------------------------------------------------------------- scaffold buffer
@pytest.mark.parametrize("buffer", [0, 2, 5])
def test_adapt_leaves_exactly_buffer_weak_neurons(buffer):
    model = weak_model(1, 3, 1e-3)
    x = batch(6)
    r = ip.adapt(model, buffer=buffer, threshold=0.05, probe=x)
    for h in range(len(model.widths) - 2):
        s = ip.singular_values(model, h)
        assert int((s <= 0.05).sum()) == buffer, (h, s)
    assert r.max_abs_change <= max(r.bound, 1e-12)


def test_adapt_counts_structural_zero_rows():
    model = make_model([3, 8, 2])  # 8 neurons but rank <= 3: five sigma = 0 rows
    assert int((ip.singular_values(model, 0) <= 1e-9).sum()) == 5
    ip.adapt(model, buffer=1, threshold=1e-9, probe=batch(3))
    assert model.widths == [3, 4, 2]


# ---------------------------------------------------------------- task neurons
def test_task_neurons():
    model = make_model(WIDTHS)
    ref = copy.deepcopy(model)
    x = batch(6)
    r = ip.add_inputs(model, 2, probe=x)
    assert model.widths[0] == 8 and r.exact and r.max_abs_change == 0.0
    extra = torch.randn(len(x), 2, dtype=x.dtype)
    torch.testing.assert_close(model(torch.cat([x, extra], -1)), ref(x), rtol=0, atol=1e-12)
    r = ip.remove_inputs(model, 2, probe=torch.cat([x, extra], -1))
    assert r.max_abs_change <= 1e-12  # the removed inputs had zero weights
    r = ip.add_outputs(model, 4)
    assert model.widths[-1] == 7
    y = model(x)
    torch.testing.assert_close(y[:, :3], ref(x), rtol=0, atol=1e-12)
    assert torch.count_nonzero(y[:, 3:]) == 0
    ip.remove_outputs(model, 5)
    torch.testing.assert_close(model(x), ref(x)[:, :2], rtol=0, atol=1e-12)
    # removing trained inputs is not exact, but bounded
    r = ip.remove_inputs(model, 3, probe=x)
    assert 0 < r.max_abs_change <= r.bound
    with pytest.raises(ip.WidthError, match="at most 1 of the 2 outputs"):
        ip.remove_outputs(model, 2)


# ---------------------------------------------------------------- properties
@settings(max_examples=100, deadline=None)
@given(
    widths=st.lists(st.integers(2, 8), min_size=3, max_size=5).map(
        lambda w: [w[0] + 8, *sorted(w[1:-1], reverse=True), w[-1]]
    ),
    seed=st.integers(0, 2**16),
    n=st.integers(1, 4),
    scale=st.floats(0.0, 3.0),
    data=st.data(),
)
def test_grow_then_prune_returns_the_original_function(widths, seed, n, scale, data):
    model = make_model(widths, seed=seed)
    ref = copy.deepcopy(model)
    x = batch(widths[0], 16, seed=seed)
    layer = data.draw(st.integers(0, len(widths) - 3))
    g = ip.grow(model, layer, n, init_scale=scale, generator=torch.Generator().manual_seed(seed))
    p = ip.prune(model, layer, n, probe=x)
    assert model.widths == widths
    assert g.max_abs_change is None and p.max_abs_change <= 1e-11
    assert_function_preserved(ref, model, x, atol=1e-11)


@settings(max_examples=100, deadline=None)
@given(
    widths=st.lists(st.integers(2, 7), min_size=3, max_size=5),
    seed=st.integers(0, 2**16),
    ops=st.lists(
        st.sampled_from(["grow", "prune", "rotate", "left", "full", "sparsify", "zero"]),
        min_size=1,
        max_size=6,
    ),
    data=st.data(),
)
def test_random_sequences_stay_within_tolerance_or_bound(widths, seed, ops, data):
    model = make_model(widths, seed=seed)
    x = batch(widths[0], 16, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for op in ops:
        L = len(model.widths) - 1
        h = data.draw(st.integers(0, L - 2))
        width = model.widths[h + 1]
        if op == "grow":
            r = ip.grow(model, h, data.draw(st.integers(1, 3)), generator=gen, probe=x)
        elif op == "prune" and width > 1:
            r = ip.prune(model, h, data.draw(st.integers(1, width - 1)), probe=x)
        elif op == "zero" and width > 1:  # make the weakest neuron dead, then prune it: exact
            ip.left_diagonalise(model, h)
            with torch.no_grad():
                model.linears[h].weight[-1] = 0.0
                if h >= 1:
                    model.psi[h - 1][-1] = 0.0
            r = ip.prune(model, h, 1, probe=x)
            assert r.max_abs_change <= 1e-11
        elif op == "rotate":
            Q = random_orthogonal(width, reflection=True, generator=gen)
            r = ip.rotate(model, h, Q, probe=x)
        elif op == "full" and L >= 3:
            r = ip.full_diagonalise(model, data.draw(st.integers(1, L - 2)), probe=x)
        elif op == "left":
            r = ip.left_diagonalise(model, h, probe=x)
        else:
            r = ip.sparsify(model, probe=x)
        if r.exact:
            assert r.max_abs_change <= 1e-11, r
        else:
            assert r.op == "prune" and r.max_abs_change <= r.bound * (1 + 1e-9) + 1e-12, r


# ---------------------------------------------------------------- dead neurons
def test_prune_dead_is_exact_and_keeps_one_psi_carrier():
    model = make_model([6, 12, 12, 12, 3])  # every layer wider than the rank of its input map
    ref = copy.deepcopy(model)
    x = batch(6, 64)
    r = ip.prune_dead(model, probe=x)
    # layer 0: rank 6 -> 6 dead (no psi there); layer 1: 6 dead, one keeps the gathered psi;
    # layer 2: now reads 7 neurons -> 5 dead, one carrier
    assert model.widths == [6, 6, 7, 8, 3]
    assert r.op == "prune_dead" and r.max_abs_change <= 1e-12 and r.bound <= 1e-9
    assert_function_preserved(ref, model, x)
    assert ip.prune_dead(model).widths_after == (6, 6, 7, 8, 3)  # nothing left to remove


def test_gathering_psi_makes_pruning_dead_neurons_exact_and_its_absence_does_not():
    x = batch(6, 64)
    model = make_model([6, 12, 12, 12, 3])
    ip.prune_dead(model, 0)
    control = copy.deepcopy(model)
    # prune gathers the sigma = 0 subspace's psi into one neuron first: five of six go exactly
    assert ip.prune(model, 1, 5, probe=x).max_abs_change <= 1e-12
    # negative control: without gathering, the same five neurons carry psi*: not exact
    y0 = control(x).detach()
    s = Surgery(control)
    remove_weakest(s, 1, 5, gather_psi=False)
    s.commit("prune", 1)
    assert float((control(x) - y0).abs().max()) > 1e-4


def test_prune_dead_limit_and_errors():
    model = make_model([4, 9, 3])
    r = ip.prune_dead(model, 0, limit=2)
    assert model.widths == [4, 7, 3] and r.layer == 0
    with pytest.raises(ip.WidthError, match="limit"):
        ip.prune_dead(model, limit=0)
    with pytest.raises(ip.LayerIndexError):
        ip.prune_dead(model, 1)
