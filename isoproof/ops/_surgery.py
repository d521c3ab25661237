"""``Surgery``: the transactional workspace behind every structural operation.

An operation never edits the model while it works. It opens a ``Surgery``, which holds float64
copies of every weight, bias, psi vector and intrinsic length (and of the optimiser's moments),
edits those copies, and calls :meth:`Surgery.commit`, which writes everything back in one step and
returns the :class:`~isoproof.receipt.Receipt`. Any error before the commit leaves the model and
optimiser untouched; an error during it is rolled back.

The one primitive that all exact operations are built from is a change of basis of one *space*:

* space ``-1`` is the input, ``0 .. L-2`` the hidden layers (output of ``maps[h]``), ``L-1``
  the output. A matrix ``A`` of shape ``[n_new, n_old]`` maps the space's coordinates (features
  of a dense layer, channels of a convolution);
* every map is held as a tensor whose axis 0 is its output space and axis 1 its input space:
  dense ``[out, in]``, conv ``[C_out, C_in, *k]``, the first dense map after a flatten
  ``[out, C, *spatial]``; its psi term has the map's shape without axis 1 (``[out]``, the psi
  kernel ``[C_out, *k]``, the psi matrix ``[out, *spatial]``);
* incoming side (spaces >= 0): ``A`` on axis 0 of ``W_h``, ``b_h`` and ``psi[h-1]``;
* outgoing side (spaces < L-1): ``A`` on axis 1 of ``W_{h+1}`` (``W_{h+1} A^T`` for a matrix).

A channel rotation acts at every position alike, so on a kernel it is exactly a dense input
rotation applied at every tap (``docs/method.md`` §1-§3, convolutions). The SVD of a map reads it
as the matrix ``[out, -1]``.

For orthogonal ``A`` this is the reparameterisation
``W2 f(W1 a + b1) = (W2 Q) f(Q^T W1 a + Q^T b1)`` (exact: see ``proofs/reparameterisation.py``);
zero rows of ``A`` append neurons, dropped rows remove them. Moments follow through
:func:`isoproof.optim.apply_linear`, so optimiser state is handled by one routine for every
operation.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._validate import all_finite, check_int
from ..diagonal import DiagonalConv, DiagonalLinear
from ..exceptions import (
    IsoproofError,
    LayerIndexError,
    NonFiniteError,
    NotIsotropicError,
    UnsynchronisedError,
    WidthError,
)
from ..network import IsotropicNet, count_parameters
from ..optim import (
    FIRST_MOMENTS,
    Embedding,
    Map,
    apply_linear,
    check_optimizer,
    read_moments,
    write_moments,
)
from ..receipt import Receipt

__all__ = [
    "Surgery",
    "agreed",
    "check_layer",
    "check_maps",
    "check_model",
    "check_synchronised",
    "embedding",
    "output_change",
    "pad_to_rows",
]

F64 = torch.float64
EIGH_MIN_WIDTH = 128
"""Maps with fewer rows or columns take the SVD in :meth:`Surgery.left_basis` (cheap anyway)."""
EIGH_GAP = 1e-4
"""A non-zero ``sigma^2`` below ``EIGH_GAP * sigma_max^2`` sends :meth:`Surgery.left_basis` to
the SVD (keeps removals at ``sigma = 0`` exact to rounding)."""

Tensors = tuple[torch.Tensor, ...]
T = TypeVar("T")
AGREE: ContextVar[Callable[[Callable[[], Tensors]], Tensors] | None] = ContextVar(
    "isoproof_agree", default=None
)
"""Set by :func:`isoproof.distributed.synchronised` (rank 0 computes, every rank receives)."""
REPLICATED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
"""Models wrapped by :func:`isoproof.distributed.wrap`: structural operations on them must run
inside :func:`isoproof.distributed.synchronised`."""


def agreed(compute: Callable[[], Tensors]) -> Tensors:
    """Run ``compute``: a factorisation or a random draw, the only inputs of an operation on which
    replicas of one model could disagree (SVD signs and orderings are not fixed across processes).
    In one process this is ``compute()``; inside :func:`isoproof.distributed.synchronised`, rank 0
    computes and broadcasts, so every rank then applies the identical change of basis."""
    hook = AGREE.get()
    return compute() if hook is None else hook(compute)


def check_model(model: object) -> IsotropicNet:
    """Return ``model`` if it is an isotropic network (:class:`IsotropicMLP`,
    :class:`~isoproof.IsotropicConvNet`), else raise :class:`NotIsotropicError`."""
    if not isinstance(model, IsotropicNet):
        raise NotIsotropicError(
            "expected an isoproof.IsotropicMLP or IsotropicConvNet (its activations commute "
            f"with rotations), got {type(model).__name__}"
        )
    return model


_STORED_MAPS = (nn.Linear, DiagonalLinear, nn.Conv1d, nn.Conv2d, DiagonalConv)


def check_maps(model: IsotropicNet) -> IsotropicNet:
    """Raise :class:`NotIsotropicError` unless every affine map is an ``nn.Linear``, a conv or a
    diagonal map (a commit or a checkpoint would silently densify any other map, such as
    :class:`isoproof.ngc.NGCLinear`; reading ``.weight`` is fine)."""
    for i, lin in enumerate(model.maps):
        if not isinstance(lin, _STORED_MAPS):
            raise NotIsotropicError(
                f"expected linears[{i}] to be an nn.Linear or DiagonalLinear, got "
                f"{type(lin).__name__} (structural operations and save would densify it)"
            )
    return model


def check_layer(layer: object, widths: list[int], *, lo: int = 0, hi: int | None = None) -> int:
    """Validate a layer index in ``[lo, hi]`` (default: hidden layers ``[0, L-2]``)."""
    hi = len(widths) - 3 if hi is None else hi
    check_int(layer, "the layer index", error=LayerIndexError)
    if not lo <= layer <= hi:
        if hi < lo:
            raise LayerIndexError(
                f"expected a model with a layer index in [{lo}, {lo}], but widths "
                f"{widths} have no such layer (got layer {layer})"
            )
        raise LayerIndexError(f"expected layer in [{lo}, {hi}] for widths {widths}, got {layer}")
    return layer


def pad_to_rows(S: torch.Tensor, rows: int) -> torch.Tensor:
    """Singular values padded with zeros to one per row (rows beyond the rank: sigma = 0)."""
    return torch.cat([S, S.new_zeros(rows - S.numel())]) if S.numel() < rows else S


def embedding(n_old: int, n_new: int) -> Embedding:
    """``[n_new, n_old]`` change of basis keeping the first ``min(n_old, n_new)`` coordinates:
    zero rows append neurons (``n_new > n_old``), missing rows drop the last ones. Applied by
    slicing (:class:`isoproof.optim.Embedding`), not by a matrix product."""
    return Embedding(n_old, n_new)


def check_synchronised(model: object) -> None:
    """Raise :class:`UnsynchronisedError` for a ``DistributedDataParallel`` wrapper, or for a
    replicated model outside :func:`isoproof.distributed.synchronised`: the change would reach one
    process only and the wrapper would keep synchronising the old parameters."""
    how = (
        "run it on every process through isoproof.distributed.synchronise(wrapper, op, ...), "
        "which changes every replica identically and rebuilds the wrapper"
    )
    if isinstance(model, DistributedDataParallel):
        raise UnsynchronisedError(
            "expected an IsotropicMLP, got a DistributedDataParallel wrapper: a structural "
            f"operation replaces the parameters the wrapper synchronises; {how}"
        )
    if model in REPLICATED and AGREE.get() is None:
        raise UnsynchronisedError(
            "expected a structural operation on a DistributedDataParallel-replicated model to "
            f"be synchronised, got a direct call; {how}"
        )


class Surgery:
    """Float64 working copy of a model (and optimiser moments) with a transactional commit."""

    def __init__(self, model: object, optimizer: torch.optim.Optimizer | None = None) -> None:
        check_synchronised(model)
        self.model = check_model(model)
        check_optimizer(optimizer)
        self.optimizer = optimizer
        self.widths_before = tuple(self.model.widths)
        self.params_before = count_parameters(self.model)
        m = self.model
        maps = m.maps
        shapes = [m.map_shape(i) for i in range(len(maps))]
        self.device = m.device
        _check_model_finite(m)
        # float64 copies made on first access: an operation converts, checks and writes back
        # only the maps it touches (a prune of one layer reads 2-3 of them)
        self.W = Workspace([lambda i=i: maps[i].weight for i in range(len(maps))], shapes)
        self.b = Workspace([lambda i=i: maps[i].bias for i in range(len(maps))])
        self.psi = Workspace(
            [lambda i=i: m.psi[i] for i in range(len(m.psi))],
            [_psi_shape(shape) for shape in shapes[1:]],
        )
        with torch.no_grad():
            self.o = [act.o.detach().to(F64).clone() for act in m.activations]
        self.diagonal = [isinstance(mp, DiagonalLinear | DiagonalConv) for mp in maps]
        self._diagonal_before = list(self.diagonal)
        self._version = [0] * len(maps)  # bumped when W_i changes (invalidates caches)
        self._memo: dict[Hashable, tuple[int, Any]] = {}
        self._params = self._slot_params()
        _check_untied(self._params)
        moments = read_moments(optimizer, self._params)
        for (kind, i), ms in moments.items():
            for name, v in ms.items():
                if kind == "W" and self.diagonal[i]:  # the workspace is dense: embed the diagonal
                    ms[name] = _embed_diagonal(v, self.W.shape(i))
                elif kind in ("W", "psi"):
                    ms[name] = v.reshape((self.W if kind == "W" else self.psi).shape(i))
        self.moments: dict[Hashable, dict[str, torch.Tensor]] = moments

    # ----------------------------------------------------------------- reading
    @property
    def num_layers(self) -> int:
        return len(self.W)

    @property
    def widths(self) -> list[int]:
        W = self.W
        return [W.shape(0)[1]] + [W.shape(i)[0] for i in range(len(W))]

    def check_hidden(self, layer: object, *, lo: int = 0, hi: int | None = None) -> int:
        """Validate a hidden-layer index in ``[lo, hi]`` (default ``[0, L-2]``)."""
        return check_layer(layer, self.widths, lo=lo, hi=hi)

    def matrix(self, i: int) -> torch.Tensor:
        """``W_i`` read as the matrix ``[out, -1]`` (a kernel ``[C_out, C_in * prod(k)]``)."""
        return self.W[i].reshape(self.W[i].shape[0], -1)

    def svd(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Full SVD of ``W_i`` (as :meth:`matrix`) in float64: ``W = R diag(S) Vh``, ``S`` padded
        with zeros to ``out`` entries (structurally zero rows count as neurons with sigma = 0).
        Only full diagonalisation needs ``Vh``; the others use :meth:`left_basis`."""
        W = self.matrix(i)
        R, S, Vh = agreed(lambda: torch.linalg.svd(W, full_matrices=True))
        return R, pad_to_rows(S, W.shape[0]), Vh

    def memo(self, key: Hashable, i: int, compute: Callable[[], T]) -> T:
        """``compute()``, cached under ``key`` until ``W_i`` changes (any change of basis or
        :meth:`touch` of it): for what an operation reads about a map several times."""
        cached = self._memo.get(key)
        if cached is None or cached[0] != self._version[i]:
            cached = (self._version[i], compute())
            self._memo[key] = cached
        return cached[1]  # type: ignore[no-any-return]

    def singular_values(self, i: int) -> torch.Tensor:
        """``svdvals`` of ``W_i``, zero-padded to one per row, cached until ``W_i`` changes: the
        cheap factorisation for decisions (how many sigma are <= a threshold)."""

        def compute() -> torch.Tensor:
            W = self.matrix(i)
            (values,) = agreed(lambda: (torch.linalg.svdvals(W),))
            return pad_to_rows(values, W.shape[0])

        return self.memo(("svdvals", i), i, compute)

    def left_basis(self, i: int) -> tuple[torch.Tensor, torch.Tensor, None]:
        """``(R, S, None)``: an orthogonal ``R`` (``[out, out]``) whose columns are the left
        singular vectors of ``W_i`` and the singular values ``S``, descending and padded.

        Left diagonalisation, growth and pruning need ``R`` only. For a map with at least
        :data:`EIGH_MIN_WIDTH` rows and columns it comes from ``eigh(W W^T)`` (about 1.3x the cost
        of ``svdvals`` against 2.2x for the SVD with vectors), unless some non-zero ``sigma^2``
        lies below :data:`EIGH_GAP` times the largest, where eigenvectors of ``W W^T`` would
        mix the ``sigma = 0`` subspace with weak neurons: then, and for small maps, the SVD. Any
        orthogonal ``R`` reparameterises exactly; ``S`` of the ``sigma = 0`` cluster is measured
        as row norms of ``R^T W``, and pruning bounds use the rows actually removed.
        """
        R, S, dead = agreed(lambda: _left_basis(self.matrix(i)))  # rank 0 computes if synchronised
        if dead.shape[0]:
            self.note_dead_rows(i, R, dead)
        return R, S, None

    def note_dead_rows(self, i: int, R: torch.Tensor, rows: torch.Tensor) -> None:
        """Record ``rows = R[:, -d:]^T W_i`` (the matrix form), the measured rows of the last
        ``d`` neurons in the basis ``R``, until ``W_i`` changes: a removal of ``n <= d`` of them
        reads its removed rows here instead of multiplying again (:meth:`dead_rows`)."""
        self._memo["dead_rows", i] = (self._version[i], (R, rows))

    def dead_rows(self, i: int, R: torch.Tensor) -> torch.Tensor | None:
        """The rows :meth:`note_dead_rows` recorded for this very ``R`` (same object) and the
        current ``W_i``, else ``None``."""
        cached = self._memo.get(("dead_rows", i))
        if cached is None or cached[0] != self._version[i] or cached[1][0] is not R:
            return None
        return cached[1][1]  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- editing
    def change_basis(
        self, space: int, A: torch.Tensor | Embedding, *, unset: int | None = None
    ) -> None:
        """Map the coordinates of ``space`` by ``A`` (``[n_new, n_old]``): see the module doc.

        ``unset``: a map whose weights the caller sets itself afterwards (a full diagonalisation
        writes ``diag(S)``): its optimiser moments follow ``A``, its weights are not multiplied.
        """
        L = self.num_layers
        if isinstance(A, torch.Tensor):
            A = A.to(dtype=F64, device=self.device)
        if space >= 0:
            self._map(("W", space), A, None, values=space != unset)
            self._map(("b", space), A, None)
            if space >= 1:
                self._map(("psi", space - 1), A, None)
            self.diagonal[space] = False
        if space < L - 1:
            self._map(("W", space + 1), None, A, values=space + 1 != unset)
            self.diagonal[space + 1] = False

    def _map(
        self, slot: tuple[str, int], rows: Map | None, cols: Map | None, *, values: bool = True
    ) -> None:
        if slot[0] == "W":
            self._version[slot[1]] += 1
        if values:
            store = {"W": self.W, "b": self.b, "psi": self.psi}[slot[0]]
            store[slot[1]] = apply_linear(store[slot[1]], rows, cols)
        for name, v in self.moments.get(slot, {}).items():
            second = name not in FIRST_MOMENTS
            self.moments[slot][name] = apply_linear(v, rows, cols, second_moment=second)

    def touch(self, i: int) -> None:
        """Record that ``W_i`` was edited in place (invalidates its cached factorisations)."""
        self._version[i] += 1

    def set_diagonal(self, i: int, values: torch.Tensor | None = None) -> None:
        """Mark ``maps[i]`` to be stored as a :class:`DiagonalLinear` / :class:`DiagonalConv`
        (off-diagonals dropped; only for a matrix or a 1x1 kernel), with diagonal ``values``
        (the first ``min(out, in)`` are used) or, by default, its current diagonal."""
        shape = self.W.shape(i)
        if values is None:
            d = torch.diagonal(self.matrix(i)).clone()
        else:
            d = values[: min(shape[0], math.prod(shape[1:]))].to(dtype=F64, device=self.device)
        self.W[i] = _embed_diagonal(d, shape)
        self.touch(i)
        self.diagonal[i] = True

    # ----------------------------------------------------------------- commit
    def commit(
        self,
        op: str,
        layer: int | tuple[int, ...] | None,
        *,
        singular_values: torch.Tensor | tuple[float, ...] = (),
        bound: float = 0.0,
        probe: torch.Tensor | None = None,
        probe_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> Receipt:
        """Write the workspace into the model (and optimiser) atomically; return the receipt.

        ``probe``: a batch on which the output change is measured (``max_abs_change``);
        ``probe_map`` turns it into the new model's input when the input width changed.
        """
        check_maps(self.model)
        self._check_finite()  # what the operation changed (the rest was checked on entry)
        if probe is not None:
            check_probe(self.model, probe)
        before = _eval(self.model, probe) if probe is not None else None
        undo: list[Callable[[], None]] = []
        try:
            new_params = self._write(undo)
            write_moments(self.optimizer, self._params, new_params, self._final_moments())
        except BaseException:
            for step in reversed(undo):
                step()
            raise
        change = None
        if probe is not None and before is not None:
            after = _eval(self.model, probe_map(probe) if probe_map else probe)
            change = output_change(before, after)
        return Receipt(
            op=op,
            layer=layer,
            widths_before=self.widths_before,
            widths_after=tuple(self.model.widths),
            params_before=self.params_before,
            params_after=count_parameters(self.model),
            singular_values=tuple(float(s) for s in singular_values),
            bound=float(bound),
            max_abs_change=change,
        )

    def _write(self, undo: list[Callable[[], None]]) -> dict[Hashable, nn.Parameter]:
        m = self.model
        dtype, device = m.dtype, m.device

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype=dtype, device=device)

        with torch.no_grad():
            for i, lin in enumerate(m.maps):
                if self.W.changed(i) or self.b.changed(i) or self._diagonal_changed(i):
                    self._write_map(i, lin, cast, undo)
            for i in range(len(self.psi)):
                if not self.psi.changed(i):
                    continue
                p, value = m.psi[i], self.psi[i]
                value = value.reshape((value.shape[0], *p.shape[1:]))  # the stored layout
                if p.shape == value.shape:
                    old = p.detach().clone()
                    undo.append(lambda p=p, old=old: p.data.copy_(old))
                    p.copy_(cast(value))
                else:
                    requires_grad = p.requires_grad
                    undo.append(lambda i=i, p=p: m.psi.set(i, p))
                    m.psi.set(i, cast(value))
                    m.psi[i].requires_grad_(requires_grad)
            for act, value in zip(m.activations, self.o, strict=True):
                old_o = float(act.o.detach())
                if float(value) != old_o:
                    undo.append(lambda act=act, old_o=old_o: act.set_o(old_o))
                    act.set_o(float(value))
        return self._slot_params()

    def _write_map(
        self,
        i: int,
        lin: nn.Module,
        cast: Callable[[torch.Tensor], torch.Tensor],
        undo: list[Callable[[], None]],
    ) -> None:
        """Write ``W_i``, ``b_i`` into ``maps[i]`` in place, or into a fresh module on resize."""
        m, W, diag = self.model, self.W[i], self.diagonal[i]
        want = (DiagonalLinear, DiagonalConv) if diag else (nn.Linear, nn.Conv1d, nn.Conv2d)
        same = (
            type(lin) in want
            and lin.weight.shape[0] == W.shape[0]
            and lin.weight[0].numel() == W[0].numel()
        )
        if same:
            w_param = lin.diagonal if diag else lin.weight
            w_new = torch.diagonal(self.matrix(i)) if diag else W.reshape(lin.weight.shape)
            for p, value in ((w_param, w_new), (lin.bias, self.b[i])):
                old = p.detach().clone()
                undo.append(lambda p=p, old=old: p.data.copy_(old))
                p.copy_(cast(value))
            return
        new = m.empty_map(i, tuple(W.shape), diagonal=diag)  # every parameter written below
        if diag:
            new.diagonal.copy_(cast(torch.diagonal(self.matrix(i))))
        else:
            new.weight.copy_(cast(W.reshape(new.weight.shape)))
        new.bias.copy_(cast(self.b[i]))
        for p_new, p_old in zip(new.parameters(), lin.parameters(), strict=False):
            p_new.requires_grad_(p_old.requires_grad)
        undo.append(lambda i=i, lin=lin: m.set_map(i, lin))
        m.set_map(i, new)

    def _final_moments(self) -> dict[Hashable, dict[str, torch.Tensor]]:
        out: dict[Hashable, dict[str, torch.Tensor]] = {}
        for slot, ms in self.moments.items():
            kind, i = slot  # type: ignore[misc]
            if kind == "W" and self.diagonal[i]:
                out[slot] = {
                    n: torch.diagonal(v.reshape(v.shape[0], -1)).clone() for n, v in ms.items()
                }
            else:
                out[slot] = ms
        return out

    def _slot_params(self) -> dict[Hashable, nn.Parameter]:
        m = self.model
        params: dict[Hashable, nn.Parameter] = {}
        for i, lin in enumerate(m.maps):
            diag = isinstance(lin, DiagonalLinear | DiagonalConv)
            params["W", i] = lin.diagonal if diag else lin.weight
            params["b", i] = lin.bias
        if m.psi.trainable:
            for i in range(len(m.psi)):
                params["psi", i] = m.psi[i]  # type: ignore[assignment]
        return params

    def _diagonal_changed(self, i: int) -> bool:
        return self.diagonal[i] != self._diagonal_before[i]

    def _check_finite(self) -> None:
        """Raise :class:`NonFiniteError` if a workspace tensor the operation changed holds
        NaN/Inf (the model itself was checked on entry)."""
        for name, store in (("weight", self.W), ("bias", self.b), ("psi", self.psi)):
            for i in range(len(store)):
                if store.changed(i):
                    _raise_if_not_finite(store[i], name, i)
        for i, t in enumerate(self.o):
            _raise_if_not_finite(t, "o", i)


class Workspace:
    """Float64 copies of one kind of model tensor (weights, biases or psi), each made on first
    access, so an operation pays for the maps it touches only.

    ``changed(i)``: whether entry ``i`` was replaced or edited in place since it was read (by
    identity and the tensor's version counter), i.e. whether the commit must check and write it.
    ``shape(i)`` reads the current shape without making the copy.
    """

    def __init__(
        self,
        sources: list[Callable[[], torch.Tensor]],
        shapes: list[tuple[int, ...]] | None = None,
    ) -> None:
        self._sources = sources
        self._shapes = shapes
        self._items: list[torch.Tensor | None] = [None] * len(sources)
        self._read: list[tuple[torch.Tensor, int] | None] = [None] * len(sources)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> torch.Tensor:
        t = self._items[i]
        if t is None:
            with torch.no_grad():
                t = self._sources[i]().detach().to(F64, copy=True)
            if self._shapes is not None:
                t = t.reshape(self._shapes[i])
            self._items[i] = t
            # inference tensors have no version counter: such an entry counts as changed
            self._read[i] = None if t.is_inference() else (t, t._version)
        return t

    def __setitem__(self, i: int, value: torch.Tensor) -> None:
        self._items[i] = value

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))

    def peek(self, i: int) -> torch.Tensor:
        """Entry ``i`` for reading only: the float64 copy if it was made, else the model's own
        tensor in its dtype (no copy: for a value computed once, such as a bound, of a map the
        operation may never otherwise touch). Never write to the result."""
        t = self._items[i]
        if t is not None:
            return t
        t = self._sources[i]().detach()
        return t if self._shapes is None else t.reshape(self._shapes[i])

    def shape(self, i: int) -> tuple[int, ...]:
        t = self._items[i]
        if t is not None:
            return tuple(t.shape)
        if self._shapes is not None:
            return self._shapes[i]
        return tuple(self._sources[i]().shape)

    def changed(self, i: int) -> bool:
        t, read = self._items[i], self._read[i]
        if t is None:
            return False
        return read is None or t is not read[0] or t._version != read[1]


def _raise_if_not_finite(t: torch.Tensor, name: str, i: int) -> None:
    if not all_finite(t):
        where = f"psi[{i}]" if name == "psi" else f"layer {i} {name}"
        raise NonFiniteError(f"expected finite parameters, got NaN/Inf in {where}")


def _check_model_finite(m: IsotropicNet) -> None:
    """The entry check, on the model's own tensors (no float64 copy needed)."""
    for i, mp in enumerate(m.maps):
        weight = mp.diagonal if isinstance(mp, DiagonalLinear | DiagonalConv) else mp.weight
        _raise_if_not_finite(weight.detach(), "weight", i)
        _raise_if_not_finite(mp.bias.detach(), "bias", i)
    for i, p in enumerate(m.psi):
        _raise_if_not_finite(p.detach(), "psi", i)
    for i, act in enumerate(m.activations):
        _raise_if_not_finite(act.o.detach(), "o", i)


def _embed_diagonal(d: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The dense map of ``shape`` (``[out, in]`` or a 1x1 kernel) with diagonal ``d``."""
    w = d.new_zeros(shape[0], shape[1])
    k = d.numel()
    idx = torch.arange(k, device=d.device)
    w[idx, idx] = d
    return w.reshape(shape)


def _psi_shape(map_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The workspace shape of a map's psi term: the map's shape without its input axis 1."""
    return (map_shape[0], *map_shape[2:])


def _eval(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x).detach().clone()
    finally:
        model.train(was_training)


def _check_untied(params: dict[Hashable, nn.Parameter]) -> None:
    """Refuse maps that share a Parameter (tied weights): a change of basis acts on each map
    alone, so one shared tensor cannot hold both results and the function would change while the
    receipt reports an exact operation."""
    owner: dict[int, Hashable] = {}
    for slot, p in params.items():
        first = owner.setdefault(id(p), slot)
        if first != slot:
            raise IsoproofError(
                f"expected every map to own its parameters, got {first} and {slot} sharing one "
                "(tied weights): untie them (e.g. assign a clone) before a structural operation"
            )


def check_probe(model: IsotropicNet, probe: object) -> torch.Tensor:
    """Refuse a probe the receipts cannot measure on: not a floating tensor of samples the model
    takes (:meth:`~isoproof.network.IsotropicNet.sample_shapes`: rows ``[..., n0]`` for an MLP;
    ``[B, *input_shape]`` or flat rows for a conv net) with at least one sample, or holding NaN/Inf
    (the change would read NaN)."""
    shapes = model.sample_shapes()
    want = " or ".join(f"[rows, {', '.join(map(str, s))}]" for s in shapes)
    if not isinstance(probe, torch.Tensor) or not probe.is_floating_point():
        raise WidthError(f"expected a floating-point probe tensor {want}, got {probe!r:.60}")
    fits = any(probe.dim() >= len(s) and tuple(probe.shape[-len(s) :]) == s for s in shapes)
    if not fits or probe.numel() == 0:
        raise WidthError(f"expected a probe of shape {want}, got {list(probe.shape)}")
    if not bool(torch.isfinite(probe).all()):
        raise NonFiniteError("expected a finite probe, got NaN/Inf entries")
    return probe


def output_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """``max |after - before|`` over the outputs the two have in common (task neurons change
    the output width)."""
    k = min(before.shape[-1], after.shape[-1])
    return float((after[..., :k].to(F64) - before[..., :k].to(F64)).abs().max())


GRAM_BLOCKS = 4
"""Row blocks of :func:`gram`: its lower triangle in ``(k + 1) / 2k`` of the full product's work
(5/8 at 4; more blocks gain little: smaller products run slower)."""


def gram(W: torch.Tensor) -> torch.Tensor:
    """The lower triangle of ``W W^T``, all that ``torch.linalg.eigh`` reads (``UPLO="L"``)
    when :meth:`Surgery.left_basis` takes it: row block ``i`` against rows ``[:end_i]``, each
    entry the same dot product as in ``W @ W.T`` (above the diagonal blocks: zeros). Its own
    function so that cost accounting can count it with the factorisation it belongs to."""
    n = W.shape[0]
    G = W.new_empty(n, n)
    ends = [n * (i + 1) // GRAM_BLOCKS for i in range(GRAM_BLOCKS)]
    for start, end in zip([0, *ends[:-1]], ends, strict=True):
        G[start:end, :end] = W[start:end] @ W[:end].T
        G[start:end, end:] = 0.0
    return G


def _left_basis(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:meth:`Surgery.left_basis` for the matrix ``W`` (computed here, never broadcast), and the
    measured rows ``R[:, -d:]^T W`` of its ``d`` ``sigma = 0`` neurons (``[0, cols]`` if none or
    from the SVD: :meth:`Surgery.note_dead_rows`)."""
    rows = W.shape[0]
    if min(W.shape) >= EIGH_MIN_WIDTH:
        lam, V = torch.linalg.eigh(gram(W))  # ascending
        top = float(lam[-1])
        zero = lam <= rows * torch.finfo(F64).eps * top
        if top > 0 and not bool(((~zero) & (lam < EIGH_GAP * top)).any()):
            S = lam.flip(-1).clamp_min(0).sqrt()
            dead = int(zero.sum())  # the first `dead` columns of V (lam ascending)
            if not dead:
                return V.flip(-1), S, W.new_zeros(0, W.shape[1])
            # measured, not sqrt of rounding noise: dead_count and the bound read these
            measured = (V[:, :dead].T @ W).flip(0)
            S[rows - dead :] = measured.norm(dim=1)
            by_norm = torch.argsort(S[rows - dead :], descending=True, stable=True)
            S[rows - dead :] = S[rows - dead :][by_norm]
            order = torch.arange(rows - 1, -1, -1, device=W.device)  # descending
            order[rows - dead :] = order[rows - dead :][by_norm]
            # one gather (the flip and the dead ones' order) of the rows of V^T: LAPACK returns V
            # column-major, so these are contiguous (a column gather of V costs 8x more)
            return V.T.index_select(0, order).T, S, measured[by_norm]
    R, S, _ = torch.linalg.svd(W, full_matrices=True)
    return R, pad_to_rows(S, rows), W.new_zeros(0, W.shape[1])
