"""rotate / left_diagonalise / full_diagonalise / sparsify: exact, structured, and safe."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import TOL, assert_unchanged, batch, make_model, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import isoproof as ip
from isoproof.testing import assert_function_preserved, random_orthogonal

WIDTHS = [6, 9, 7, 8, 5, 3]


@pytest.mark.parametrize("reflection", [False, True])
def test_rotate_preserves_function(dtype, reflection):
    model = make_model(WIDTHS, dtype=dtype)
    ref = copy.deepcopy(model)
    x = batch(6, dtype=dtype)
    for layer, n in enumerate(WIDTHS[1:-1]):
        Q = random_orthogonal(n, reflection=reflection, dtype=dtype)
        r = ip.rotate(model, layer, Q, probe=x)
        assert r.op == "rotate" and r.exact and r.max_abs_change <= TOL[dtype]
    assert_function_preserved(ref, model, x, atol=TOL[dtype])
    # the rotation really happened: first-layer weights moved
    assert not torch.allclose(model.linears[0].weight, ref.linears[0].weight)


def test_left_diagonalise_rows_have_singular_value_norms(dtype):
    model = make_model(WIDTHS, dtype=dtype)
    ref = copy.deepcopy(model)
    x = batch(6, dtype=dtype)
    for layer in range(len(WIDTHS) - 2):
        S = ip.singular_values(model, layer)
        r = ip.left_diagonalise(model, layer, probe=x)
        assert r.max_abs_change <= TOL[dtype]
        torch.testing.assert_close(torch.tensor(r.singular_values, dtype=torch.float64), S)
        W = model.linears[layer].weight.detach().double()
        row_norms = W.norm(dim=1)
        torch.testing.assert_close(row_norms, S, atol=10 * TOL[dtype], rtol=0)
        assert torch.all(S[:-1] >= S[1:])  # descending: the weakest neuron is last
        # rows are mutually orthogonal (W W^T diagonal)
        gram = W @ W.T
        off = gram - torch.diag(torch.diagonal(gram))
        assert float(off.abs().max()) <= 10 * TOL[dtype]
    assert_function_preserved(ref, model, x, atol=TOL[dtype])


def test_full_diagonalise_makes_a_diagonal_layer(dtype):
    model = make_model(WIDTHS, dtype=dtype)
    ref = copy.deepcopy(model)
    x = batch(6, dtype=dtype)
    S = ip.singular_values(model, 2)
    r = ip.full_diagonalise(model, 2, probe=x)
    lin = model.linears[2]
    assert isinstance(lin, ip.DiagonalLinear)
    assert lin.diagonal.numel() == min(WIDTHS[2], WIDTHS[3]) == 7
    assert r.params_before - r.params_after == 7 * 8 - 7
    torch.testing.assert_close(
        lin.diagonal.detach().double(), S[: lin.diagonal.numel()], atol=10 * TOL[dtype], rtol=0
    )
    dense = lin.weight
    assert dense.shape == (WIDTHS[3], WIDTHS[2])
    off_diagonal = dense.clone()
    off_diagonal[range(7), range(7)] = 0
    assert torch.count_nonzero(off_diagonal) == 0
    torch.testing.assert_close(torch.diagonal(dense), lin.diagonal, rtol=0, atol=0)
    y = lin(x_hidden := torch.randn(4, 7, dtype=dtype))
    torch.testing.assert_close(y, x_hidden @ dense.T + lin.bias)
    assert r.max_abs_change <= TOL[dtype]
    assert_function_preserved(ref, model, x, atol=TOL[dtype])


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 6])
def test_sparsify_count_matches_the_formula(K):
    n = 12
    model = make_model([5] + [n] * (K + 1) + [3])
    x = batch(5)
    ref = copy.deepcopy(model)
    before = model.count_parameters(hidden_only=True)
    r = ip.sparsify(model, probe=x)
    assert before == K * n * n
    assert model.count_parameters(hidden_only=True) == (K // 2) * n * n + math.ceil(K / 2) * n
    assert model.diagonal_layers == list(range(1, K + 1, 2))
    assert r.params_before - r.params_after == before - model.count_parameters(hidden_only=True)
    assert r.max_abs_change <= 1e-12
    assert_function_preserved(ref, model, x)
    # idempotent: a second call changes nothing
    r2 = ip.sparsify(model, probe=x)
    assert r2.params_after == r.params_after and r2.max_abs_change <= 1e-12


def test_sparsify_saves_about_half_of_deep_hidden_weights():
    model = ip.IsotropicMLP([16] + [64] * 11 + [4], dtype=torch.float64)
    before = model.count_parameters(hidden_only=True)
    ip.sparsify(model)
    ratio = model.count_parameters(hidden_only=True) / before
    assert 0.5 <= ratio < 0.52  # K = 10: (5 * 64^2 + 5 * 64) / (10 * 64^2)


def test_sparsify_without_interior_maps_is_a_noop():
    model = make_model([4, 5, 2])
    r = ip.sparsify(model)
    assert r.layer == () and r.params_before == r.params_after


@settings(max_examples=100, deadline=None)
@given(
    widths=st.lists(st.integers(1, 7), min_size=3, max_size=6),
    seed=st.integers(0, 2**16),
    op=st.sampled_from(["rotate", "left", "full", "sparsify"]),
    data=st.data(),
)
def test_exact_ops_preserve_function_hypothesis(widths, seed, op, data):
    model = make_model(widths, seed=seed)
    x = batch(widths[0], 16, seed=seed + 1)
    ref = copy.deepcopy(model)
    L = len(widths) - 1
    if op == "rotate":
        layer = data.draw(st.integers(0, L - 2))
        Q = random_orthogonal(
            widths[layer + 1],
            reflection=data.draw(st.booleans()),
            generator=torch.Generator().manual_seed(seed),
        )
        r = ip.rotate(model, layer, Q, probe=x)
    elif op == "left":
        r = ip.left_diagonalise(model, data.draw(st.integers(0, L - 2)), probe=x)
    elif op == "full" and L >= 3:
        r = ip.full_diagonalise(model, data.draw(st.integers(1, L - 2)), probe=x)
    else:
        r = ip.sparsify(model, probe=x)
    assert r.bound == 0.0 and r.max_abs_change <= 1e-12
    assert model.widths == widths
    assert_function_preserved(ref, model, x)


# ---------------------------------------------------------------- bad input changes nothing
def _expect_untouched(model, call, exc, match):
    before = snapshot(model)
    types = [type(m) for m in model.linears]
    with pytest.raises(exc, match=match):
        call()
    assert_unchanged(model, before)
    assert [type(m) for m in model.linears] == types


def test_bad_layer_indices():
    model = make_model([4, 5, 5, 2])
    Q = random_orthogonal(5)
    _expect_untouched(model, lambda: ip.rotate(model, 2, Q), ip.LayerIndexError, r"\[0, 1\]")
    _expect_untouched(model, lambda: ip.rotate(model, -1, Q), ip.LayerIndexError, "got -1")
    _expect_untouched(model, lambda: ip.left_diagonalise(model, 5), ip.LayerIndexError, "got 5")
    _expect_untouched(model, lambda: ip.full_diagonalise(model, 0), ip.LayerIndexError, r"\[1, 1\]")
    _expect_untouched(
        model, lambda: ip.left_diagonalise(model, 1.0), ip.LayerIndexError, "index to be an int"
    )
    shallow = make_model([4, 5, 2])
    _expect_untouched(
        shallow, lambda: ip.full_diagonalise(shallow, 1), ip.LayerIndexError, "no such layer"
    )
    assert issubclass(ip.LayerIndexError, ValueError)


def test_non_orthogonal_and_misshaped_q():
    model = make_model([4, 5, 5, 2])
    shear = torch.eye(5, dtype=torch.float64)
    shear[0, 1] = 0.1
    _expect_untouched(
        model, lambda: ip.rotate(model, 0, shear), ip.NotOrthogonalError, "expected an orthogonal Q"
    )
    _expect_untouched(
        model,
        lambda: ip.rotate(model, 0, torch.eye(4)),
        ip.WidthError,
        r"expected Q of shape \[5, 5\]",
    )
    nan = random_orthogonal(5)
    nan[0, 0] = math.nan
    _expect_untouched(model, lambda: ip.rotate(model, 0, nan), ip.NonFiniteError, "finite Q")
    _expect_untouched(
        model, lambda: ip.rotate(model, 0, [[1.0]]), ip.NotOrthogonalError, "torch.Tensor"
    )
    # a float32 Q on a float64 model would move the output by ~1e-7 under a receipt claiming
    # bound 0 (issue 16, item 6): refused; on a float32 model it is within tolerance
    q32 = random_orthogonal(5, dtype=torch.float32)
    _expect_untouched(
        model, lambda: ip.rotate(model, 0, q32), ip.NotOrthogonalError, "float64 model"
    )
    model32 = make_model([4, 5, 5, 2], dtype=torch.float32)
    accepted = ip.rotate(model32, 0, q32, probe=batch(4, dtype=torch.float32))
    assert accepted.op == "rotate" and accepted.bound == 0.0 and accepted.max_abs_change < 1e-5


def test_non_finite_weights_and_non_isotropic_models():
    model = make_model([4, 5, 5, 2])
    with torch.no_grad():
        model.linears[1].weight[0, 0] = math.inf
    _expect_untouched(model, lambda: ip.sparsify(model), ip.NonFiniteError, "layer 1 weight")
    seq = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    with pytest.raises(ip.NotIsotropicError, match="got Sequential"):
        ip.left_diagonalise(seq, 0)
    with pytest.raises(ip.NotIsotropicError):
        ip.singular_values(seq, 0)


def test_diagonal_layers_are_densified_when_touched():
    model = make_model([4, 6, 6, 6, 2])
    x = batch(4)
    ref = copy.deepcopy(model)
    ip.sparsify(model)
    assert model.diagonal_layers == [1]
    r = ip.left_diagonalise(model, 0, probe=x)  # rotates the input space of the diagonal map
    assert model.diagonal_layers == [] and r.params_after > r.params_before
    assert r.max_abs_change <= 1e-12
    assert_function_preserved(ref, model, x)
