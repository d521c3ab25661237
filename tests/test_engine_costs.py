"""The cheaper factorisations and bounds of the operation engine keep every guarantee.

* ``Surgery.left_basis`` uses ``eigh(W W^T)`` on wide maps: ``R`` must be orthogonal, ``S`` the
  singular values, removals at ``sigma = 0`` exact; near-zero clusters must fall back to the SVD;
* ``Surgery.singular_values`` is cached until the map changes;
* ``spectral_bound`` is never below the spectral norm, and receipts built from it still bound the
  measured change;
* an ``Embedding`` (selection) is applied by slicing, equal to its matrix product.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

import isoproof as ip
from isoproof.ops import _surgery, neurodegeneration
from isoproof.ops._bounds import exact_bounds, spectral_bound
from isoproof.ops._surgery import EIGH_MIN_WIDTH, Surgery
from isoproof.optim import Embedding, apply_linear

F64 = torch.float64
WIDE = EIGH_MIN_WIDTH + 72
N_IN = EIGH_MIN_WIDTH + 12


def _wide_model(seed: int = 0) -> ip.IsotropicMLP:
    g = torch.Generator().manual_seed(seed)
    model = ip.IsotropicMLP([N_IN, WIDE, WIDE, 5], dtype=F64, generator=g)
    with torch.no_grad():
        for lin in model.linears:
            lin.bias.normal_(generator=g)
        model.psi[0].normal_(generator=g)
    return model


def test_left_basis_is_an_exact_svd_basis_on_wide_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _wide_model()
    s = Surgery(model)
    calls: list[int] = []
    real = torch.linalg.svd
    monkeypatch.setattr(
        torch.linalg, "svd", lambda w, **kw: calls.append(w.shape[0]) or real(w, **kw)
    )
    R, S, _ = s.left_basis(1)
    assert calls == []  # the eigh path ran
    eye = torch.eye(WIDE, dtype=F64)
    assert float((R.T @ R - eye).abs().max()) < 1e-13
    ref = torch.linalg.svdvals(s.matrix(1))
    assert torch.allclose(S, ref, rtol=1e-10, atol=1e-13)
    rows = (R.T @ s.matrix(1)).norm(dim=1)
    assert torch.allclose(rows, S, rtol=1e-9, atol=1e-12)
    # layer 0 is WIDE x N_IN: WIDE - N_IN structural zeros, measured as row norms (not 1e-8)
    _, S0, _ = s.left_basis(0)
    assert calls == []
    assert float(S0[N_IN:].max()) < 1e-13 and float(S0[:N_IN].min()) > 1e-3


@pytest.mark.parametrize("shape", [(WIDE, N_IN), (N_IN, WIDE), (7, 3), (1, 5)])
def test_gram_is_the_lower_triangle_eigh_reads(shape: tuple[int, int]) -> None:
    """``gram`` computes only the lower triangle of ``W W^T`` (block by block); ``eigh`` reads
    only that, so the eigenvalues are those of the full product."""
    W = torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(5))
    full = W @ W.T
    G = _surgery.gram(W)
    assert torch.allclose(torch.tril(G), torch.tril(full), rtol=1e-13, atol=1e-13)
    lam, lam_full = torch.linalg.eigvalsh(G), torch.linalg.eigvalsh(full)
    assert torch.allclose(lam, lam_full, rtol=0, atol=1e-12 * float(lam_full[-1]))


def test_commit_writes_resized_maps_without_random_initialisation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resized map is a fresh module whose parameters the commit writes: it is built without
    drawing an initialisation (``empty_map``), on the model's device and dtype."""
    model = _wide_model(6)
    reference = copy.deepcopy(model)
    x = torch.randn(16, N_IN, dtype=F64)
    draws: list[int] = []
    real = torch.Tensor.uniform_

    def counted(t: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if not t.is_meta:  # a draw into memory (the meta device allocates nothing)
            draws.append(t.numel())
        return real(t, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "uniform_", counted)
    receipt = ip.prune(model, 0, 3, probe=x)
    assert draws == []
    assert model.widths == [N_IN, WIDE - 3, WIDE, 5] and receipt.max_abs_change is not None
    for lin in model.linears:
        assert lin.weight.dtype == F64 and lin.weight.device == reference.linears[0].weight.device
        assert all_finite_params(lin)
    assert receipt.max_abs_change <= receipt.bound
    new = model.empty_map(1, (4, 3))
    assert isinstance(new, torch.nn.Linear) and new.weight.shape == (4, 3)
    assert new.weight.dtype == F64 and new.weight.device.type == "cpu"


def all_finite_params(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def test_prune_dead_on_wide_layers_is_exact() -> None:
    model = _wide_model(1)
    x = torch.randn(64, N_IN, dtype=F64)
    receipt = ip.prune_dead(model, probe=x)
    assert model.widths[1] <= N_IN + 1  # rank N_IN (+1 psi carrier at most)
    assert receipt.max_abs_change is not None and receipt.max_abs_change <= 1e-12
    assert receipt.bound >= receipt.max_abs_change


def test_dead_rows_measured_once_follow_the_psi_gathering(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sigma = 0 rows that ``left_basis`` measures are the removed rows of the removal
    (after the Householder reflection that gathers their psi), not multiplied a second time."""
    from isoproof.ops.neurodegeneration import dead_count, gather_own_psi

    g = torch.Generator().manual_seed(4)
    model = ip.IsotropicMLP([N_IN, WIDE, WIDE + 40, 5], dtype=F64, generator=g)
    with torch.no_grad():
        model.psi[0].normal_(generator=g)  # the 40 dead neurons of layer 1 own psi
    s = Surgery(model)
    R, S, _ = s.left_basis(1)
    dead = dead_count(S)
    assert dead == WIDE + 40 - WIDE
    gathered, carriers = gather_own_psi(s, 1, R, S)
    assert carriers == 1 and gathered is not R
    rows = s.dead_rows(1, gathered)
    assert rows is not None and s.dead_rows(1, R) is None
    direct = gathered[:, -dead:].T @ s.matrix(1)
    assert float((rows - direct).abs().max()) < 1e-14
    assert float(rows.norm(dim=1).max()) < 1e-13
    calls: list[tuple[int, ...]] = []
    real = ip.optim.apply_linear
    monkeypatch.setattr(
        neurodegeneration,
        "apply_linear",
        lambda t, *a, **k: calls.append(tuple(t.shape)) or real(t, *a, **k),
    )
    removed, _ = neurodegeneration.remove_weakest(s, 1, dead - 1, svd=(gathered, S, None))
    assert torch.allclose(removed, direct[1:].norm(dim=1), rtol=0, atol=1e-15)
    assert torch.allclose(removed, rows[1:].norm(dim=1), rtol=1e-12, atol=0)  # the last dead-1
    assert calls == [(WIDE + 40,)]  # their own psi only: no product for the removed rows
    # the reflection's algebra on rows that are not rounding noise: R'_0^T (R_0 X) = H X
    s = Surgery(model)
    X = torch.randn(dead, WIDE, dtype=F64, generator=g)
    s.note_dead_rows(1, R, X)
    gathered, _ = gather_own_psi(s, 1, R, S)
    followed = s.dead_rows(1, gathered)
    assert followed is not None
    want = gathered[:, -dead:].T @ (R[:, -dead:] @ X)
    assert float((followed - want).abs().max()) < 1e-12 and float((X - want).abs().max()) > 1e-3


def test_near_zero_cluster_falls_back_to_the_svd(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _wide_model(2)
    with torch.no_grad():  # one sigma tiny but non-zero, many exactly zero: the grey zone
        W = model.linears[0].weight
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        S[0] = 1e-5
        W.copy_(U @ torch.diag(S) @ Vh)
    s = Surgery(model)
    calls: list[int] = []
    real = torch.linalg.svd
    monkeypatch.setattr(
        torch.linalg, "svd", lambda w, **kw: calls.append(w.shape[0]) or real(w, **kw)
    )
    s.left_basis(0)
    assert calls == [WIDE]  # the SVD of layer 0 (WIDE rows)


def test_singular_values_are_cached_until_the_map_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Surgery(_wide_model(3))
    count = {"n": 0}
    real = torch.linalg.svdvals

    def counting(t: torch.Tensor) -> torch.Tensor:
        count["n"] += 1
        return real(t)

    monkeypatch.setattr(_surgery.torch.linalg, "svdvals", counting)
    first = s.singular_values(1)
    assert torch.equal(s.singular_values(1), first) and count["n"] == 1
    s.change_basis(1, ip.testing.random_orthogonal(WIDE))
    s.singular_values(1)
    assert count["n"] == 2  # W_1 was rotated: recomputed
    s.touch(1)
    s.singular_values(1)
    assert count["n"] == 3


@pytest.mark.parametrize("shape", [(7, 5), (64, 64), (3, 200), (128, 1)])
def test_spectral_bound_is_never_below_the_truth(shape: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    for scale in (1e-8, 1.0, 1e8):
        m = torch.randn(*shape, dtype=F64, generator=g) * scale
        truth = float(torch.linalg.matrix_norm(m, ord=2))
        assert spectral_bound(m) >= truth * (1 - 1e-12)
        with exact_bounds():
            assert spectral_bound(m) == pytest.approx(truth, rel=1e-12)
    rank_one = torch.outer(torch.ones(50, dtype=F64), torch.ones(30, dtype=F64))
    assert spectral_bound(rank_one) == pytest.approx(float(torch.linalg.matrix_norm(rank_one, 2)))


def test_float64_spectral_bound_covers_its_own_rounding() -> None:
    """Constant matrices have the exact norm ``|c| sqrt(ab)`` (50 digits here); the float64 sums
    round below it in 336 of 364 cases unless the bound is enlarged by their worst case."""
    import decimal

    decimal.getcontext().prec = 50
    for a in range(1, 40, 3):
        for b in range(1, 40, 5):
            for c in (0.1, 0.3, 1 / 3, 0.7):
                m = torch.full((a, b), c, dtype=F64)
                truth = decimal.Decimal(c) * decimal.Decimal(a * b).sqrt()
                assert decimal.Decimal(spectral_bound(m)) >= truth, (a, b, c)


def test_a_profile_returning_a_view_of_its_input_leaves_it_alone() -> None:
    """``gain`` divides the profile's result in place only when it is a fresh tensor: a user
    profile returning a view of ``r`` must not overwrite ``r``."""
    radial = ip.radial.Radial("view", lambda r: r.reshape(r.shape))
    r = torch.tensor([[2.0], [3.0]])
    with torch.no_grad():
        g = radial.gain(r)
    assert r.tolist() == [[2.0], [3.0]] and g.tolist() == [[1.0], [1.0]]


@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1.0, 1e8, 1e30])
def test_float32_spectral_bound_is_never_below_the_truth_and_tight(scale: float) -> None:
    """A map read in float32 (no float64 copy) is bounded from float32 sums enlarged by their
    rounding error: never below the float64 truth, within 1e-4 of the float64 route (tiny
    entries whose squares underflow, huge ones whose squares overflow)."""
    g = torch.Generator().manual_seed(3)
    for shape in ((300, 200), (1, 50), (64, 1)):
        m = (torch.randn(*shape, dtype=F64, generator=g) * scale).float()
        exact = m.double()
        truth = float(torch.linalg.matrix_norm(exact, ord=2))
        bound, reference = spectral_bound(m), spectral_bound(exact)
        assert truth <= bound <= reference * (1 + 1e-4) + 1e-17
        with exact_bounds():
            assert spectral_bound(m) == pytest.approx(truth, rel=1e-12)


def test_cheap_bound_still_bounds_an_inexact_prune() -> None:
    model = _wide_model(4)
    x = torch.randn(128, N_IN, dtype=F64)
    cheap = ip.prune(model, 1, 8, probe=x)
    again = _wide_model(4)
    with exact_bounds():
        exact = ip.prune(again, 1, 8, probe=x)
    assert cheap.max_abs_change == pytest.approx(exact.max_abs_change, rel=1e-9)
    assert exact.max_abs_change <= exact.bound <= cheap.bound


@pytest.mark.parametrize("n_old,n_new", [(5, 3), (5, 5), (3, 6)])
def test_embedding_equals_its_matrix(n_old: int, n_new: int) -> None:
    e = Embedding(n_old, n_new)
    t = torch.randn(n_old, 4, 2, dtype=F64)
    assert torch.equal(apply_linear(t, e), torch.tensordot(e.matrix(), t, dims=([1], [0])))
    u = torch.randn(3, n_old, dtype=F64)
    assert torch.equal(apply_linear(u, None, e), u @ e.matrix().T)
    assert torch.equal(apply_linear(t, e, second_moment=True), apply_linear(t, e))


def test_all_finite_is_exact_where_the_sum_is_not() -> None:
    from isoproof._validate import all_finite

    big = torch.full((1000,), 3e38)  # finite entries whose float32 sum overflows
    assert all_finite(big) and all_finite(torch.zeros(0))
    for bad in (math.nan, math.inf, -math.inf):
        t = torch.randn(300, 200, dtype=F64)
        t[123, 45] = bad
        assert not all_finite(t) and not all_finite(t.float())
    both = torch.tensor([math.inf, -math.inf])  # sums to NaN: still refused
    assert not all_finite(both)
    model = _wide_model(3)
    with torch.no_grad():
        model.linears[2].weight[1, 2] = math.nan  # a map the operation never rotates
    with pytest.raises(ip.NonFiniteError, match="layer 2 weight"):
        ip.prune(model, 0, 1)


def test_workspace_copies_and_writes_only_what_an_operation_touches() -> None:
    model = ip.IsotropicMLP([6, 8, 7, 7, 3], dtype=F64)
    before = [(lin.weight._version, lin.bias._version) for lin in model.linears]
    x = torch.randn(16, 6, dtype=F64)
    receipt = ip.prune(model, 2, 1, probe=x)
    after = [(lin.weight._version, lin.bias._version) for lin in model.linears]
    assert after[:2] == before[:2]  # maps 0 and 1: never rotated, never rewritten
    assert model.widths == [6, 8, 7, 6, 3] and receipt.max_abs_change <= receipt.bound
    s = Surgery(model)
    assert s.widths == model.widths and not any(s.W.changed(i) for i in range(4))
    _ = s.W[1] + 0  # a read is not a change
    assert not s.W.changed(1)
    s.matrix(1)[0, 0] += 1.0  # an in-place edit through a view is
    s.b[0] = s.b[0] * 2  # and so is a replacement
    assert s.W.changed(1) and s.b.changed(0) and not s.b.changed(1)


def _dense_kept_basis(R: torch.Tensor, keep: int) -> torch.Tensor:
    return R[:, :keep].T


@pytest.mark.parametrize("k", [1, 3])
def test_few_removals_by_reflections_match_the_dense_removal(
    monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    """``prune(n < width / 3)`` keeps the complement by Householder reflections: the function,
    the receipt and an SGD-momentum step afterwards (exactly rotation-equivariant) must equal
    those of the dense ``R_keep^T``; at sigma = 0 the removal stays exact."""
    from isoproof.ops import neurodegeneration

    x = torch.randn(64, N_IN, dtype=F64, generator=torch.Generator().manual_seed(9))
    y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(10))
    results = []
    for dense in (False, True):
        model = _wide_model(5)
        with torch.no_grad():  # k dead neurons (sigma = 0, biases and psi non-zero)
            model.linears[1].weight[:k] = 0.0
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if dense:
            monkeypatch.setattr(neurodegeneration, "kept_basis", _dense_kept_basis)
        calls: list[int] = []
        real = neurodegeneration.Complement.of
        monkeypatch.setattr(
            neurodegeneration.Complement, "of", lambda N, _c=calls, _r=real: _c.append(1) or _r(N)
        )
        receipt = ip.prune(model, 1, k + 1, optimizer=opt, probe=x)
        assert bool(calls) != dense  # the reflections ran exactly when expected
        monkeypatch.undo()
        with torch.no_grad():
            after_prune = model(x)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        with torch.no_grad():
            results.append((receipt, after_prune, model(x), model.widths))
    (r1, p1, s1, w1), (r2, p2, s2, w2) = results
    assert w1 == w2 and w1[2] == WIDE - k - 1
    assert r1.singular_values == pytest.approx(r2.singular_values, abs=1e-12)
    assert r1.bound == pytest.approx(r2.bound, rel=1e-12)
    assert float((p1 - p2).abs().max()) < 1e-12 and float((s1 - s2).abs().max()) < 1e-10
    assert r1.max_abs_change <= r1.bound + 1e-12
    dead_only = _wide_model(6)
    with torch.no_grad():  # k + 1 dead neurons: gathering leaves the psi on one, k go exactly
        dead_only.linears[1].weight[: k + 1] = 0.0
    exact = ip.prune(dead_only, 1, k, probe=x)
    assert exact.max_abs_change <= 1e-12 and exact.bound <= 1e-12  # rounding level


def test_full_diagonalisation_writes_diag_s_and_still_moves_the_moments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``maps[l]`` becomes ``diag(S)`` without the two products ``R^T W Q``; the result, the
    other maps and the optimiser moments must equal the rotated computation's."""
    x = torch.randn(32, N_IN, dtype=F64, generator=torch.Generator().manual_seed(11))
    y = torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(12))
    real_change, real_set = Surgery.change_basis, Surgery.set_diagonal
    runs = []
    for rotated in (False, True):
        model = _wide_model(7)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if rotated:  # the former path: rotate W_l like every other tensor, keep its diagonal
            monkeypatch.setattr(
                Surgery, "change_basis", lambda s, sp, A, unset=None: real_change(s, sp, A)
            )
            monkeypatch.setattr(Surgery, "set_diagonal", lambda s, i, values=None: real_set(s, i))
        receipt = ip.full_diagonalise(model, 1, optimizer=opt, probe=x)
        monkeypatch.undo()
        d = model.linears[1].diagonal
        runs.append((receipt, model, opt.state[d]["momentum_buffer"].clone(), d.detach().clone()))
    (r1, m1, mom1, d1), (r2, m2, mom2, d2) = runs
    assert r1.max_abs_change <= 1e-12 and r2.max_abs_change <= 1e-12
    assert float((d1 - d2).abs().max()) <= 1e-12 * float(d2.abs().max())
    assert torch.allclose(mom1, mom2, rtol=0, atol=1e-14)
    for a, b in zip(m1.linears, m2.linears, strict=True):
        assert torch.allclose(a.bias, b.bias, atol=1e-12)


def test_downstream_bounds_are_reused_until_a_map_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from isoproof.ops import _bounds

    model = _wide_model(8)  # three maps: C_0 reads maps 1 and 2
    s = Surgery(model)
    calls: list[int] = []
    real = _bounds.operator_norm
    monkeypatch.setattr(
        _bounds, "operator_norm", lambda t, conv: calls.append(t.shape[1]) or real(t, conv)
    )
    first = _bounds.downstream_lipschitz(s, model, 0)
    assert _bounds.downstream_lipschitz(s, model, 0) == first and len(calls) == 2
    s.change_basis(-1, ip.testing.random_orthogonal(N_IN))  # the input: map 0 only
    assert _bounds.downstream_lipschitz(s, model, 0) == first and len(calls) == 2
    s.change_basis(1, ip.testing.random_orthogonal(WIDE))  # maps 1 (rows) and 2 (columns)
    _bounds.downstream_lipschitz(s, model, 0)
    assert len(calls) == 4
    with exact_bounds():
        _bounds.downstream_lipschitz(s, model, 0)
    assert len(calls) == 6  # the exact norms are cached apart from the cheap ones
