"""Neuronal Group Communication (NGC): weights as interactions of shared neuron-state embeddings.

Maths (``docs/ngc-method.md``; Pei, Huang, Wang, arXiv 2510.16851). A *group* is a set
of affine maps ``k = 1..K`` that read inputs of the same width ``n``. Each member keeps its own
*output states* ``B_k`` (``[m_k, r]``) and all members share one matrix of *input states* ``P``
(``[n, r]``)::

    W_k ~= B_k P^T,        y_k = (x P) B_k^T + b_k        (two matmuls; W_k is never rebuilt)

A group stores ``r (n + S)`` weights instead of ``n S`` (``S = sum_k m_k``; biases unchanged), and
the rank follows from the kept fraction ``rho`` of the group's weights::

    r = round(rho n S / (n + S)),   1 <= r <= min(n, S)      (nearest integer, halves up)

Closed-form initialisation from calibration data
------------------------------------------------
``X_k`` (``[N, n]``) is what member ``k`` reads on the calibration batch (collected from the
original model) and ``G_k = X_k^T X_k / N``. NGC minimises the stacked output error::

    E(P, B) = sum_k |X_k (W_k - B_k P^T)^T|_F^2 / N = sum_k tr(D_k G_k D_k^T),   D_k = W_k - B_k P^T

1. *Whitened SVD of the stacked outputs.* With the pooled Gram ``G = sum_k G_k = S S^T``
   (Cholesky) and ``W = [W_1; ...; W_K]`` (rows stacked), take the rank-``r`` SVD
   ``W S = U Sigma V^T`` and set ``B = U_r Sigma_r`` (split by rows into the ``B_k``),
   ``P = S^{-T} V_r``. Since ``|X A^T|_F^2 / N = |A S|_F^2`` when ``X^T X / N = S S^T``, this is the
   global minimiser of ``E`` (Eckart-Young) **exactly when every member reads the same input**
   (``G_k = G / K``): the SVD of the stacked outputs ``[X W_1^T, ..., X W_K^T]`` in whitened
   coordinates. With one member it *is* activation-aware SVD (SVD-LLM):
   ``W ~= U_r Sigma_r V_r^T S^{-1}``. At full rank ``r = rank(W S)`` it reconstructs ``W`` exactly.
2. *Different inputs* (consecutive layers: the ``G_k`` differ). Step 1 then minimises the pooled
   objective, an approximation, and is refined by ``refine`` rounds of alternating exact least
   squares, each of which cannot increase ``E``:

   * shared input states given the ``B_k``: ``dE/dP = 0`` is the joint normal equation
     ``sum_k G_k P C_k = sum_k G_k W_k^T B_k`` with ``C_k = B_k^T B_k``, a symmetric positive
     definite linear map of ``P``, solved by conjugate gradients preconditioned with
     ``R -> K G^{-1} R C^{-1}`` (``C = sum_k C_k``; exact in one step when the ``G_k`` agree);
   * each member's output states given ``P``: ``B_k = W_k G_k P (P^T G_k P)^{-1}``.

   Refinement stops early once a round lowers ``E`` by less than a relative 1e-9.
   Finally the gauge ``P -> P T``, ``B_k -> B_k T^{-T}`` (which leaves every ``B_k P^T``
   unchanged) is fixed to the minimum-norm split ``P^T P = B^T B = diag(s)`` (``s`` the singular
   values of the stacked product), so neither factor is large when the other is small: this is
   what fine-tuning starts from.
3. *Dense fallback.* A member whose relative error
   ``e_k = sqrt(tr(D_k G_k D_k^T) / tr(W_k G_k W_k^T))`` exceeds ``dense_factor`` times the group
   mean stays dense, and the group is fitted again without it (one pass).

Conditioning. Hidden states of an isotropic MLP wider than its input lie in a subspace of
dimension at most ``n0 + 1 + 2l`` (each layer only rescales ``W a + b + psi g``), so most
eigenvalues of their Gram are rounding noise of relative size ``u^2`` (``u`` the machine epsilon
of the model's dtype). Every ``G_k`` therefore gets a ridge ``delta_k I`` with
``delta_k = u^1.5 mean(diag G_k)``: a factor ``u^-0.5`` above that noise floor and ``u^0.5`` below
the dtype's resolution (4e-11 in float32; 3e-24 in float64, where it changes nothing measurable).
It is raised (1e-12 .. 1e-2) if the Gram is still not positive definite. Everything runs in
float64; the factors are cast to the model's dtype. Reported errors ``e_k`` use the Grams without
the ridge.

Groups for an :class:`~isoproof.IsotropicMLP` (affine maps ``linears[0..L-1]``) or an
``nn.Sequential`` MLP (its top-level ``nn.Linear`` layers, numbered the same way): the *hidden
maps* are ``1 .. L-2`` (the maps between two activations). ``groups="consecutive"`` puts each
maximal run of consecutive hidden maps of equal input width in one group (the NGC paper's "same
projection across consecutive layers"); ``"none"`` makes each hidden map its own group (that is
activation-aware SVD per layer); a list of lists of map indices (any map, including the first and
last) sets the groups explicitly.

Example::

    >>> model = IsotropicMLP([8, 32, 32, 32, 4], dtype=torch.float64)
    >>> x = torch.randn(256, 8, dtype=torch.float64)
    >>> small, report = ngc_compress(model, keep=0.5, calibration=x)
    >>> report.ranks, small.linears[1].P is small.linears[2].P
    ((11,), True)
    >>> report.params_after < report.params_before
    True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_int
from .exceptions import IsoproofError, LayerIndexError, NonFiniteError, WidthError
from .mlp import IsotropicMLP, count_parameters
from .standard import linear_layers
from .table import format_table

__all__ = [
    "NGCGroup",
    "NGCLinear",
    "NGCMember",
    "NGCReport",
    "affine_inputs",
    "affine_maps",
    "fit_group",
    "ngc_compress",
    "ngc_rank",
]

F64 = torch.float64
GROUPINGS: tuple[str, ...] = ("consecutive", "none")


# ---------------------------------------------------------------------------- the layer
class NGCLinear(nn.Module):
    """One group member: ``y = (x P) B^T + b`` with ``P`` (``[n, r]``) shared by the group.

    Args:
        states: the group's input states ``P``, an ``nn.Parameter`` of shape ``[n, r]``. Pass the
            same object to every member: it is then one parameter for the optimiser, the state
            and the ONNX file.
        output_states: ``B`` (``[m, r]``, copied), or the number ``m`` of output neurons for a
            fresh ``B`` initialised like ``nn.Linear`` (Kaiming-uniform).
        bias: ``b`` (``[m]``, copied), ``True`` for a fresh uniform bias, or ``False``/``None``.

    ``.weight`` is the dense ``[m, n]`` product ``B P^T``, computed on demand for reading; the
    forward never builds it.

    Example::

        >>> P = nn.Parameter(torch.randn(6, 2))
        >>> a, b = NGCLinear(P, 4), NGCLinear(P, torch.randn(5, 2), torch.zeros(5))
        >>> x = torch.randn(3, 6)
        >>> torch.allclose(a(x), x @ a.weight.T + a.bias), a.P is b.P
        (True, True)
    """

    def __init__(
        self,
        states: nn.Parameter,
        output_states: int | torch.Tensor,
        bias: bool | torch.Tensor | None = True,
    ) -> None:
        super().__init__()
        if not isinstance(states, nn.Parameter) or states.dim() != 2:
            raise IsoproofError(
                "expected the shared input states P as a 2-D nn.Parameter [in, rank], got "
                f"{type(states).__name__} of shape {tuple(getattr(states, 'shape', ()))}"
            )
        n, r = states.shape
        factory: dict[str, Any] = {"dtype": states.dtype, "device": states.device}
        self.P = states
        if isinstance(output_states, torch.Tensor):
            if output_states.dim() != 2 or output_states.shape[1] != r:
                raise WidthError(
                    f"expected output states of shape [m, {r}], got {tuple(output_states.shape)}"
                )
            B = output_states.detach().to(**factory).clone()
        elif isinstance(output_states, int) and not isinstance(output_states, bool):
            if output_states < 1:
                raise WidthError(f"expected out_features >= 1, got {output_states}")
            B = torch.empty(output_states, r, **factory)
            nn.init.kaiming_uniform_(B, a=math.sqrt(5))
        else:
            raise IsoproofError(
                f"expected output states as a tensor [m, r] or an int m, got {output_states!r}"
            )
        self.B = nn.Parameter(B)
        m = B.shape[0]
        if isinstance(bias, torch.Tensor):
            if bias.shape != (m,):
                raise WidthError(f"expected a bias of shape [{m}], got {tuple(bias.shape)}")
            self.bias = nn.Parameter(bias.detach().to(**factory).clone())
        elif bias is True:
            bound = 1 / math.sqrt(n)
            self.bias = nn.Parameter(torch.empty(m, **factory).uniform_(-bound, bound))
        elif bias is False or bias is None:
            self.register_parameter("bias", None)
        else:
            raise IsoproofError(f"expected bias as a tensor, a bool or None, got {bias!r}")

    @property
    def in_features(self) -> int:
        return int(self.P.shape[0])

    @property
    def out_features(self) -> int:
        return int(self.B.shape[0])

    @property
    def rank(self) -> int:
        return int(self.P.shape[1])

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``[m, n]`` weight ``B P^T`` (for reading; not a Parameter)."""
        return self.B @ self.P.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two matmuls, r (n + m) multiply-adds per row; ONNX: MatMul(x, P) then Gemm/MatMul(B).
        return F.linear(torch.matmul(x, self.P), self.B, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, bias={self.bias is not None}"
        )


# ---------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class NGCMember:
    """One compressed (or kept dense) affine map.

    ``error`` is the relative output error ``e_k`` of what the new model stores (0 for a dense
    member) on the calibration inputs; ``rejected_error`` is the error that made a member stay
    dense (``None`` otherwise).
    """

    layer: int
    group: int
    in_features: int
    out_features: int
    error: float
    dense: bool = False
    rejected_error: float | None = None


@dataclass(frozen=True)
class NGCGroup:
    """One group: its members, rank and weight counts (``weights_after`` includes dense
    members; ``rank`` is 0 if no member was factored)."""

    layers: tuple[int, ...]
    in_features: int
    rank: int
    weights_before: int
    weights_after: int


@dataclass(frozen=True)
class NGCReport:
    """What :func:`ngc_compress` did.

    ``params_*`` count the elements of the model's unique ``nn.Parameter`` s (a shared ``P``
    once); ``output_change`` is ``|f_new(X) - f(X)|_F / |f(X)|_F`` on the calibration batch.
    """

    keep: float | None
    groups: tuple[NGCGroup, ...]
    members: tuple[NGCMember, ...]
    params_before: int
    params_after: int
    calibration_rows: int
    output_change: float

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(g.rank for g in self.groups)

    @property
    def dense_members(self) -> tuple[int, ...]:
        return tuple(m.layer for m in self.members if m.dense)

    @property
    def param_ratio(self) -> float:
        return self.params_after / self.params_before if self.params_before else float("nan")

    def table(self) -> str:
        """A plain-text table: one row per member, then the totals."""
        ranks = {i: g.rank for i, g in enumerate(self.groups)}
        rows = [
            [
                m.layer,
                m.group,
                f"{m.in_features}->{m.out_features}",
                "dense" if m.dense else ranks[m.group],
                m.error,
                m.rejected_error,
            ]
            for m in self.members
        ]
        head = format_table(["map", "group", "shape", "rank", "rel. error", "rejected"], rows)
        return (
            f"{head}\nparameters {self.params_before} -> {self.params_after} "
            f"({100 * self.param_ratio:.1f}%), relative output change {self.output_change:.3g} "
            f"on {self.calibration_rows} calibration rows"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (groups, members, counts)."""
        out = asdict(self)
        out["ranks"] = list(self.ranks)
        out["dense_members"] = list(self.dense_members)
        return out


# ---------------------------------------------------------------------------- model access
def affine_maps(
    model: nn.Module,
) -> tuple[list[nn.Module], Callable[[nn.Module, int, nn.Module], None]]:
    """The affine maps of a supported model and a setter ``(model, index, module) -> None``.

    Supported: :class:`~isoproof.IsotropicMLP` (``model.linears``) and ``nn.Sequential`` (its
    top-level ``nn.Linear`` / :class:`NGCLinear` / :class:`~isoproof.DiagonalLinear` children,
    in order). Raises :class:`~isoproof.IsoproofError` otherwise.
    """
    if isinstance(model, IsotropicMLP):

        def set_iso(m: nn.Module, i: int, module: nn.Module) -> None:
            m.linears[i] = module  # type: ignore[index]

        return list(model.linears), set_iso
    if isinstance(model, nn.Sequential):
        maps = {id(m) for m in linear_layers(model)}
        slots = [j for j, m in enumerate(model) if id(m) in maps]
        if not slots:
            raise IsoproofError("expected an nn.Sequential with nn.Linear layers, got none")

        def set_seq(m: nn.Module, i: int, module: nn.Module) -> None:
            m[slots[i]] = module  # type: ignore[index]

        return [model[j] for j in slots], set_seq
    raise IsoproofError(
        "expected an isoproof.IsotropicMLP or an nn.Sequential MLP (nn.Linear layers and "
        f"activations), got {type(model).__name__}"
    )


@torch.no_grad()
def affine_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every affine map for the batch ``x``: ``[x, h_0, ..., h_{L-2}]``.

    ``h_l`` is hidden state ``l``: ``a_l`` of an :class:`~isoproof.IsotropicMLP`, or the output of
    whatever follows the ``l``-th ``nn.Linear`` of an ``nn.Sequential`` (its activation).
    """
    if isinstance(model, IsotropicMLP):
        return [x] + [a for a, _ in model.hidden_states(x)]
    maps = {id(m) for m in affine_maps(model)[0]}  # validates
    inputs: list[torch.Tensor] = []
    h = x
    for m in model:  # type: ignore[attr-defined]
        if id(m) in maps:
            inputs.append(h)
        h = m(h)
    return inputs


# ---------------------------------------------------------------------------- the fit
def ngc_rank(keep: float, in_features: int, out_features: Sequence[int]) -> int:
    """``r = round(keep n S / (n + S))`` clipped to ``[1, min(n, S)]`` (``S = sum m_k``)."""
    n, s = int(in_features), int(sum(out_features))
    r = math.floor(keep * n * s / (n + s) + 0.5)
    return max(1, min(r, n, s))


def _ridge(G: torch.Tensor, relative: float = 0.0) -> torch.Tensor:
    """``G + delta I`` with ``delta = relative * mean(diag G)``, raised (1e-12 .. 1e-2 times the
    mean diagonal) until the result is positive definite."""
    scale = float(torch.diagonal(G).mean().clamp_min(torch.finfo(G.dtype).tiny))
    eye = torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    for delta in (relative, *(10.0**k for k in range(-12, -1))):
        if delta < relative:
            continue
        Gd = G + (scale * delta) * eye if delta > 0 else G
        if torch.linalg.cholesky_ex(Gd).info == 0:
            return Gd
    raise NonFiniteError(f"expected a finite calibration Gram matrix, got one of scale {scale:g}")


def _cholesky(A: torch.Tensor) -> torch.Tensor:
    return torch.linalg.cholesky(_ridge(A))


def _balance(P: torch.Tensor, Bs: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The minimum-norm split of ``B P^T`` (same product): ``P^T P = B^T B = diag(s)``."""
    sizes = [B.shape[0] for B in Bs]
    Qp, Rp = torch.linalg.qr(P)
    Qb, Rb = torch.linalg.qr(torch.cat(Bs))
    U, s, Vh = torch.linalg.svd(Rb @ Rp.T)  # B P^T = Qb (U s Vh) Qp^T
    root = s.sqrt()
    return (Qp @ Vh.T) * root, list(((Qb @ U) * root).split(sizes))


def _solve_states(
    grams: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor],
    outs: Sequence[torch.Tensor],
    P: torch.Tensor,
    *,
    tol: float = 1e-13,
    max_iter: int = 500,
) -> torch.Tensor:
    """Least-squares shared input states: solve ``sum_k G_k P C_k = sum_k G_k W_k^T B_k``.

    Preconditioned conjugate gradients on the Frobenius inner product, warm-started at ``P``.
    """
    C = [B.T @ B for B in outs]
    rhs = sum(G @ W.T @ B for G, W, B in zip(grams, weights, outs, strict=True))
    LG, LC = _cholesky(sum(grams)), _cholesky(sum(C))  # type: ignore[arg-type]
    K = len(grams)

    def apply(X: torch.Tensor) -> torch.Tensor:
        return sum(G @ X @ Ck for G, Ck in zip(grams, C, strict=True))  # type: ignore[return-value]

    def precondition(R: torch.Tensor) -> torch.Tensor:
        return K * torch.cholesky_solve(torch.cholesky_solve(R, LG).T, LC).T

    r = rhs - apply(P)
    z = precondition(r)
    d = z
    rz = float((r * z).sum())
    stop = tol * float(torch.linalg.norm(rhs))
    for _ in range(max_iter):
        if float(torch.linalg.norm(r)) <= stop:
            break
        Ad = apply(d)
        alpha = rz / float((d * Ad).sum())
        P = P + alpha * d
        r = r - alpha * Ad
        z = precondition(r)
        rz, rz_old = float((r * z).sum()), rz
        d = z + (rz / rz_old) * d
    return P


def _errors(
    grams: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], approx: Sequence[torch.Tensor]
) -> list[float]:
    """Relative output errors ``sqrt(tr(D G D^T) / tr(W G W^T))`` per member."""
    out = []
    for G, W, A in zip(grams, weights, approx, strict=True):
        D = W - A
        num = float(((D @ G) * D).sum().clamp_min(0))
        den = float(((W @ G) * W).sum())
        out.append(math.sqrt(num / den) if den > 0 else (0.0 if num == 0 else math.inf))
    return out


def fit_group(
    weights: Sequence[torch.Tensor],
    grams: Sequence[torch.Tensor],
    rank: int,
    *,
    refine: int = 10,
    ridge: float | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """Fit one group: returns ``(P [n, r], [B_k [m_k, r]], relative errors e_k)`` in float64.

    ``weights``: the dense ``W_k`` (``[m_k, n]``); ``grams``: ``G_k = X_k^T X_k / N`` (``[n, n]``).
    Steps 1-2 of the module docstring; ``refine`` alternating rounds (stopping early once ``E``
    stalls) are only run when the ``G_k`` differ, since step 1 is otherwise the exact optimum.
    ``ridge``: each ``G_k`` gets ``ridge * mean(diag G_k) * I`` (default ``u^1.5``, ``u`` the
    machine epsilon of the weights' dtype: see "Conditioning" in the module docstring).
    """
    Ws = [W.detach().to(F64) for W in weights]
    if ridge is None:
        ridge = torch.finfo(weights[0].dtype).eps ** 1.5
    raw = [G.detach().to(F64) for G in grams]
    Gs = [_ridge(G, ridge) for G in raw]
    n = Ws[0].shape[1]
    if any(W.shape[1] != n for W in Ws) or any(G.shape != (n, n) for G in Gs):
        raise WidthError(
            f"expected every member to read {n} inputs, got weights {[tuple(W.shape) for W in Ws]}"
        )
    sizes = [W.shape[0] for W in Ws]
    G = sum(Gs)
    S = torch.linalg.cholesky(G)  # type: ignore[arg-type]
    U, sigma, Vh = torch.linalg.svd(torch.cat(Ws) @ S, full_matrices=False)
    B = U[:, :rank] * sigma[:rank]
    # P = S^{-T} V_r  (triangular solve S^T P = V_r)
    P = torch.linalg.solve_triangular(S.T, Vh[:rank].T, upper=True)
    Bs = list(B.split(sizes))
    if len(Gs) > 1 and not all(torch.equal(Gs[0], Gk) for Gk in Gs[1:]):
        last = _objective(Gs, Ws, Bs, P)
        for _ in range(refine):
            P = _solve_states(Gs, Ws, Bs, P)
            Bs = [
                torch.linalg.solve(P.T @ Gk @ P, (W @ Gk @ P).T).T
                for W, Gk in zip(Ws, Gs, strict=True)
            ]
            now = _objective(Gs, Ws, Bs, P)
            if now >= last * (1 - 1e-9):
                break
            last = now
    P, Bs = _balance(P, Bs)
    return P, Bs, _errors(raw, Ws, [Bk @ P.T for Bk in Bs])


def _objective(Gs, Ws, Bs, P) -> float:  # type: ignore[no-untyped-def]
    """``E = sum_k tr(D_k G_k D_k^T)``."""
    return sum(
        float((((W - B @ P.T) @ G) * (W - B @ P.T)).sum())
        for G, W, B in zip(Gs, Ws, Bs, strict=True)
    )


# ---------------------------------------------------------------------------- the verb
def _resolve_groups(
    groups: str | Sequence[Sequence[int]], maps: list[nn.Module]
) -> list[list[int]]:
    L = len(maps)
    hidden = [i for i in range(1, L - 1) if type(maps[i]) is nn.Linear]
    if isinstance(groups, str):
        if groups not in GROUPINGS:
            raise IsoproofError(
                f"expected groups in {GROUPINGS} or a list of lists, got {groups!r}"
            )
        if groups == "none":
            out = [[i] for i in hidden]
        else:
            out = []
            for i in hidden:
                prev = out[-1][-1] if out else None
                if prev == i - 1 and maps[i].in_features == maps[prev].in_features:
                    out[-1].append(i)
                else:
                    out.append([i])
        if not out:
            raise IsoproofError(
                "expected at least one hidden-to-hidden nn.Linear (maps 1..L-2) to compress, got "
                f"{L} affine maps; pass groups=[[0], ...] to compress the first or last map"
            )
        return out
    try:
        out = [[_index(i) for i in g] for g in groups]
    except TypeError:
        raise IsoproofError(f"expected groups as a list of lists of ints, got {groups!r}") from None
    seen: set[int] = set()
    for g in out:
        if not g:
            raise IsoproofError(f"expected non-empty groups, got {groups!r}")
        for i in g:
            if not 0 <= i < L:
                raise LayerIndexError(f"expected map indices in [0, {L - 1}], got {i}")
            if i in seen:
                raise IsoproofError(f"expected each map in at most one group, got {i} twice")
            seen.add(i)
            if type(maps[i]) is not nn.Linear:
                raise IsoproofError(
                    f"expected map {i} to be a dense nn.Linear, got {type(maps[i]).__name__}"
                )
        widths = sorted({maps[i].in_features for i in g})
        if len(widths) > 1:
            raise WidthError(
                f"expected the maps of group {g} to read inputs of one width, got widths {widths}"
            )
    if not out:
        raise IsoproofError("expected at least one group, got an empty list")
    return out


def _index(i: object) -> int:
    try:
        return check_int(i, "a layer index")
    except IsoproofError:
        raise TypeError from None


def _check_args(keep: float, rank: int | None, dense_factor: float | None, refine: int) -> None:
    if not (isinstance(keep, int | float) and 0 < keep <= 1):
        raise IsoproofError(f"expected keep in (0, 1], got {keep!r}")
    if rank is not None:
        check_int(rank, "rank (None or an int)", lo=1)
    if dense_factor is not None and not (
        isinstance(dense_factor, int | float) and math.isfinite(dense_factor) and dense_factor >= 1
    ):
        raise IsoproofError(
            f"expected dense_factor None or a finite number >= 1, got {dense_factor!r}"
        )
    check_int(refine, "refine", lo=0)


def _grams(
    model: nn.Module, x: torch.Tensor, layers: Sequence[int], chunk: int = 4096
) -> dict[int, torch.Tensor]:
    """``G_i = X_i^T X_i / N`` (float64) of the inputs of the affine maps ``layers``."""
    grams: dict[int, torch.Tensor] = {}
    rows = 0
    for part in x.split(chunk):
        inputs = affine_inputs(model, part)
        for i in layers:
            Xi = inputs[i].reshape(-1, inputs[i].shape[-1]).to(F64)
            grams[i] = grams[i] + Xi.T @ Xi if i in grams else Xi.T @ Xi
        rows += part.reshape(-1, part.shape[-1]).shape[0]
    return {i: G / rows for i, G in grams.items()}


def ngc_compress(
    model: nn.Module,
    *,
    calibration: torch.Tensor,
    keep: float = 0.5,
    groups: str | Sequence[Sequence[int]] = "consecutive",
    rank: int | None = None,
    dense_factor: float | None = 2.0,
    refine: int = 10,
) -> tuple[nn.Module, NGCReport]:
    """Replace groups of affine maps by :class:`NGCLinear` members sharing input states.

    Args:
        model: a trained :class:`~isoproof.IsotropicMLP` or ``nn.Sequential`` MLP. Not modified.
        calibration: a batch of real inputs ``[..., n0]`` (cast to the model's dtype/device).
        keep: fraction ``rho`` of each group's weights kept (sets the rank, module docstring).
        groups: ``"consecutive"``, ``"none"`` or a list of lists of affine-map indices.
        rank: use this rank for every group instead of the one from ``keep`` (clipped to
            ``min(n, S)``).
        dense_factor: members with error above ``dense_factor`` times the group mean stay dense;
            ``None`` disables the check.
        refine: alternating least-squares rounds for groups whose members read different inputs.

    Returns:
        ``(new_model, report)``: a deep copy with the factored maps replaced (same class, same
        forward), and an :class:`NGCReport`. The shared ``P`` of a group is one ``nn.Parameter``
        held by every member, so optimisers, ``parameters()`` and ONNX see it once.

    Note: isoproof's structural operations (``prune``, ``sparsify``, ...) and :func:`isoproof.save`
    only handle dense or diagonal maps; they refuse a model holding :class:`NGCLinear` layers.
    """
    _check_args(keep, rank, dense_factor, refine)
    new = copy.deepcopy(model)
    maps, set_map = affine_maps(new)
    plan = _resolve_groups(groups, maps)
    ref = next(iter(new.parameters()))
    x = _check_calibration(calibration, maps[0].in_features, ref)
    was_training = new.training
    new.eval()
    with torch.no_grad():
        y_before = new(x).to(F64)
        grams = _grams(new, x, [i for g in plan for i in g])
        group_reports, members = [], []
        for gi, layers in enumerate(plan):
            fit = _fit_with_outliers(maps, grams, layers, keep, rank, dense_factor, refine)
            group_reports.append(_install(new, set_map, maps, gi, layers, fit, ref, members))
        y_after = new(x).to(F64)
    new.train(was_training)
    denom = float(torch.linalg.norm(y_before))
    change = float(torch.linalg.norm(y_after - y_before)) / denom if denom > 0 else 0.0
    members.sort(key=lambda m: m.layer)
    report = NGCReport(
        keep=None if rank is not None else float(keep),
        groups=tuple(group_reports),
        members=tuple(members),
        params_before=count_parameters(model),
        params_after=count_parameters(new),
        calibration_rows=int(x.reshape(-1, x.shape[-1]).shape[0]),
        output_change=change,
    )
    return new, report


def _check_calibration(calibration: object, n0: int, ref: torch.Tensor) -> torch.Tensor:
    """The calibration batch ``[..., n0]`` in the model's dtype/device, finite and non-empty."""
    if not isinstance(calibration, torch.Tensor) or calibration.dim() < 1:
        raise IsoproofError(
            f"expected calibration as a tensor [N, n0], got {type(calibration).__name__}"
        )
    if calibration.shape[-1] != n0 or calibration.numel() == 0:
        raise WidthError(
            f"expected a non-empty calibration batch [..., {n0}], "
            f"got shape {tuple(calibration.shape)}"
        )
    x = calibration.to(dtype=ref.dtype, device=ref.device)
    if not torch.isfinite(x).all():
        raise NonFiniteError("expected a finite calibration batch, got NaN/Inf")
    return x


@dataclass(frozen=True)
class _GroupFit:
    rank: int
    factored: list[int]  # the maps that share P
    P: torch.Tensor
    Bs: list[torch.Tensor]
    errors: list[float]
    rejected: dict[int, float]  # map -> error of the maps kept dense


def _fit_with_outliers(
    maps: list[nn.Module],
    grams: dict[int, torch.Tensor],
    layers: list[int],
    keep: float,
    rank: int | None,
    dense_factor: float | None,
    refine: int,
) -> _GroupFit:
    """Fit one group; members with error above ``dense_factor`` times the mean stay dense and
    the rest are refitted once without them."""
    n = maps[layers[0]].in_features
    factored, rejected = list(layers), {}
    while True:
        outs = [maps[i].out_features for i in factored]
        r = min(rank, n, sum(outs)) if rank is not None else ngc_rank(keep, n, outs)
        P, Bs, errs = fit_group(
            [maps[i].weight for i in factored], [grams[i] for i in factored], r, refine=refine
        )
        mean = sum(errs) / len(errs)
        worse = [
            i
            for i, e in zip(factored, errs, strict=True)
            if dense_factor is not None and mean > 0 and e > dense_factor * mean
        ]
        if rejected or not worse:
            return _GroupFit(r, factored, P, Bs, errs, rejected)  # one pass at most
        rejected = {i: e for i, e in zip(factored, errs, strict=True) if i in worse}
        factored = [i for i in factored if i not in worse]


def _install(
    new: nn.Module,
    set_map: Callable[[nn.Module, int, nn.Module], None],
    maps: list[nn.Module],
    gi: int,
    layers: list[int],
    fit: _GroupFit,
    ref: torch.Tensor,
    members: list[NGCMember],
) -> NGCGroup:
    """Replace the factored maps of group ``gi`` by :class:`NGCLinear` sharing one ``P``; append
    the members (factored and dense) to ``members``; return the group's record."""
    n = maps[layers[0]].in_features
    factored = fit.factored
    states = nn.Parameter(fit.P.to(ref.dtype), requires_grad=maps[factored[0]].weight.requires_grad)
    for i, Bk, e in zip(factored, fit.Bs, fit.errors, strict=True):
        old = maps[i]
        lin = NGCLinear(states, Bk, old.bias)
        lin.B.requires_grad_(old.weight.requires_grad)
        if old.bias is not None:
            lin.bias.requires_grad_(old.bias.requires_grad)
        set_map(new, i, lin)
        members.append(NGCMember(i, gi, n, old.out_features, e))
    for i, e in fit.rejected.items():
        members.append(NGCMember(i, gi, n, maps[i].out_features, 0.0, True, e))
    S = sum(maps[i].out_features for i in factored)
    dense_w = sum(maps[i].weight.numel() for i in fit.rejected)
    dense = n * sum(maps[i].out_features for i in layers)
    return NGCGroup(tuple(layers), n, fit.rank, dense, fit.rank * (n + S) + dense_w)
