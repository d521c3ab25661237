"""The silent side effects of resizes (issue 16), each fixed or tested as the README's
"Reliability" section documents it."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_unchanged, batch, make_model, snapshot

import isoproof as ip


def test_an_optimizer_for_another_model_is_refused():
    model, other = make_model([4, 6, 6, 3]), make_model([4, 6, 6, 3], seed=1)
    opt = torch.optim.Adam(other.parameters())
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ip.UnsupportedOptimizerError, match="another model"):
        ip.sparsify(model, optimizer=opt)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_nonfinite_adam_moments_are_refused():
    model = make_model([4, 6, 6, 6, 3])
    opt = torch.optim.Adam(model.parameters())
    model(batch(4)).sum().backward()
    opt.step()
    opt.state[model.linears[1].weight]["exp_avg"][0, 0] = math.nan
    with pytest.raises(ip.NonFiniteError, match="exp_avg"):
        ip.sparsify(model, optimizer=opt)
    assert int(torch.isnan(opt.state[model.linears[1].weight]["exp_avg"]).sum()) == 1


def test_hooks_do_not_survive_a_resize_of_their_layer():
    """Documented: resized maps are new modules, so hooks on them stop firing."""
    model = make_model([4, 6, 3])
    calls = []
    model.linears[0].register_forward_hook(lambda *a: calls.append(1))
    model(batch(4))
    ip.grow(model, 0, 2)
    model(batch(4))
    assert calls == [1]


def test_pruning_a_sparsified_layer_makes_its_map_dense_again():
    """Documented: prune works in the singular basis, so a diagonal map it touches is dense."""
    model = make_model([4, 6, 6, 6, 3])
    ip.sparsify(model)
    assert 1 in model.diagonal_layers
    ip.prune(model, 0, 1)
    assert 1 not in model.diagonal_layers


@pytest.mark.parametrize(
    "op",
    [
        lambda m: ip.rotate(m, 1, ip.testing.random_orthogonal(6)),
        lambda m: ip.prune(m, 1, 1),
        lambda m: ip.sparsify(m),
    ],
    ids=["rotate", "prune", "sparsify"],
)
def test_tied_weights_are_refused_and_the_model_is_untouched(op):
    """Tied maps cannot follow a change of basis (a rotate once moved the output by 0.81 while
    its receipt said bound 0): refused with the model unchanged."""
    model = make_model([4, 6, 6, 6, 3])
    model.linears[2].weight = model.linears[1].weight
    before = snapshot(model)
    with pytest.raises(ip.IsoproofError, match="tied weights"):
        op(model)
    assert model.linears[2].weight is model.linears[1].weight
    assert_unchanged(model, before)
