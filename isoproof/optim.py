"""Optimiser state through structural operations.

Every structural operation is, on each parameter it touches, a linear map ``p' = A p B^T``
(``A`` acting on rows, ``B`` on columns; vectors use ``A`` only) plus an offset that the optimiser
never sees (new outgoing columns, the ``o`` and psi corrections). :func:`apply_linear` is the one
routine that applies such a map, to parameter values and to optimiser moments alike
(``docs/method.md`` §6):

* first moments (``exp_avg``, ``momentum_buffer``) go through the same map: exact, because the
  gradient of the reparameterised loss is the mapped gradient for orthogonal ``A``, ``B``;
* second moments (``exp_avg_sq``, ``max_exp_avg_sq``) go through the elementwise-squared map
  ``(A∘A) v (B∘B)^T``: a diagonal approximation (Adam is not rotation-equivariant);
* rows or columns that an operation creates get zero moments (they are zero rows of ``A``);
* ``step`` and hyper-parameters are kept; ``param_groups`` are re-pointed to new Parameters.

Only ``torch.optim.SGD``, ``Adam`` and ``AdamW`` are supported; anything else raises
:class:`~isoproof.exceptions.UnsupportedOptimizerError` before anything changes.

For a training checkpoint (:mod:`isoproof.checkpoint`) the state is keyed by parameter *name*,
which every resize keeps: :func:`named_state` describes it, :func:`check_named_state` checks a
stored description against an optimiser before anything is read, and :func:`named_state_dict`
turns it back into the ``state_dict`` that ``Optimizer.load_state_dict`` takes.

Example (SGD momentum commutes with rotation exactly)::

    >>> A = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    >>> m = torch.randn(3, 2, dtype=torch.float64)
    >>> torch.allclose(apply_linear(apply_linear(m, A), A.T), m)
    True
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ._validate import all_finite
from .exceptions import CheckpointError, IsoproofError, NonFiniteError, UnsupportedOptimizerError

__all__ = [
    "FIRST_MOMENTS",
    "SECOND_MOMENTS",
    "SUPPORTED_OPTIMIZERS",
    "Complement",
    "Embedding",
    "apply_linear",
    "check_named_state",
    "check_optimizer",
    "named_state",
    "named_state_dict",
    "read_moments",
    "write_moments",
]

FIRST_MOMENTS: tuple[str, ...] = ("exp_avg", "momentum_buffer")
SECOND_MOMENTS: tuple[str, ...] = ("exp_avg_sq", "max_exp_avg_sq")
SUPPORTED_OPTIMIZERS: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
)

Moments = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Embedding:
    """The ``[n_new, n_old]`` change of basis that keeps the first ``min(n_old, n_new)``
    coordinates: zero rows append coordinates (``n_new > n_old``), missing rows drop the last
    ones. It is a 0/1 selection, so :func:`apply_linear` applies it by slicing or zero padding,
    never by a matrix product (dropping one row of a 1024-wide map: 0.003 s instead of 0.14 s).
    Its elementwise square is itself, so second moments take the same path.

    Example::

        >>> e = Embedding(3, 2)
        >>> t = torch.arange(6.0).reshape(3, 2)
        >>> torch.equal(apply_linear(t, e), e.matrix(t.dtype) @ t)
        True
    """

    n_old: int
    n_new: int

    def matrix(self, dtype: torch.dtype = torch.float64, device: object = None) -> torch.Tensor:
        """The dense ``[n_new, n_old]`` matrix (for reading and tests)."""
        out = torch.zeros(self.n_new, self.n_old, dtype=dtype, device=device)  # type: ignore[arg-type]
        k = min(self.n_old, self.n_new)
        out[:k, :k] = torch.eye(k, dtype=dtype, device=device)  # type: ignore[arg-type]
        return out

    def apply(self, t: torch.Tensor, axis: int) -> torch.Tensor:
        """``t`` with axis ``axis`` cut or zero-padded from ``n_old`` to ``n_new`` entries."""
        if t.shape[axis] != self.n_old:
            raise ValueError(f"expected {self.n_old} entries on axis {axis}, got {t.shape[axis]}")
        if self.n_new <= self.n_old:
            return t.narrow(axis, 0, self.n_new).clone()
        pad = list(t.shape)
        pad[axis] = self.n_new - self.n_old
        return torch.cat([t, t.new_zeros(pad)], dim=axis)


@dataclass(frozen=True)
class Complement:
    """The ``[n - k, n]`` change of basis onto the orthogonal complement of ``k`` orthonormal
    columns ``N`` (``[n, k]``): ``C = Q[:, k:]^T`` with ``Q = H_1 ... H_k`` the Householder
    reflections of the QR factorisation of ``N`` (``Q[:, :k]`` spans ``N``), held in compact-WY
    form ``Q = I - V M^{-1} V^T`` (``V`` the unit lower-trapezoidal reflectors, ``M`` upper
    triangular: the strict upper part of ``V^T V`` plus ``diag(1 / tau)``). Applying it is two
    products with ``V`` and a triangular solve, about ``4 k n m`` operations on a map with ``m``
    entries on the other axis against ``2 (n - k) n m`` for the dense ``[n - k, n]`` product:
    fewer whenever ``k < n / 3`` (``k = 1`` of 1024: 500x). Second moments take the dense
    matrix (``C∘C`` has no reflection form).

    Example::

        >>> N = torch.linalg.qr(torch.randn(5, 2, dtype=torch.float64))[0]
        >>> c = Complement.of(N)
        >>> C = c.matrix()
        >>> bool((C @ N).abs().max() < 1e-14), bool((C @ C.T - torch.eye(3)).abs().max() < 1e-14)
        (True, True)
        >>> t = torch.randn(5, 4, dtype=torch.float64)
        >>> torch.allclose(apply_linear(t, c), C @ t)
        True
    """

    V: torch.Tensor
    M: torch.Tensor

    @classmethod
    def of(cls, N: torch.Tensor) -> Complement:
        """The complement of the columns of ``N`` (orthonormal, ``[n, k]``, ``k < n``)."""
        a, tau = torch.geqrf(N)
        k = tau.numel()
        V = torch.tril(a, -1) + torch.eye(*a.shape, dtype=a.dtype, device=a.device)
        identity = tau[:k] == 0  # a column already +-e_j: its reflector is the identity
        V = V * (~identity).to(V.dtype)  # dropped, so no 1/0 enters M
        inverse = torch.where(identity, torch.ones_like(tau[:k]), 1 / tau[:k])
        return cls(V, torch.triu(V.T @ V, 1) + torch.diag(inverse))

    @property
    def n_old(self) -> int:
        return int(self.V.shape[0])

    @property
    def n_new(self) -> int:
        return int(self.V.shape[0] - self.V.shape[1])

    def matrix(self, dtype: torch.dtype = torch.float64, device: object = None) -> torch.Tensor:
        """The dense ``[n - k, n]`` matrix (second moments, reading and tests)."""
        eye = torch.eye(self.n_old, dtype=self.V.dtype, device=self.V.device)
        return self.apply(eye, 0).to(dtype=dtype, device=device)  # type: ignore[arg-type]

    def apply(self, t: torch.Tensor, axis: int) -> torch.Tensor:
        """``C`` applied to axis ``axis`` (0 or 1) of ``t``, which has ``n`` entries there."""
        V, M, n, k = self.V, self.M, self.n_old, self.n_old - self.n_new
        if t.shape[axis] != n:
            raise ValueError(f"expected {n} entries on axis {axis}, got {t.shape[axis]}")
        if axis == 0:  # C t = (Q^T t)[k:] = t[k:] - V[k:] M^{-T} (V^T t)
            flat = t.reshape(n, -1)
            y = torch.linalg.solve_triangular(M.T, V.T @ flat, upper=False)
            return torch.addmm(flat[k:], V[k:], y, alpha=-1).reshape(n - k, *t.shape[1:])
        moved = t.movedim(1, -1)  # t C^T = (t Q)[..., k:] = t[..., k:] - (t V) M^{-1} V[k:]^T
        flat = moved.reshape(-1, n)
        x = torch.linalg.solve_triangular(M, flat @ V, upper=True, left=False)
        out = torch.addmm(flat[:, k:], x, V[k:].T, alpha=-1).reshape(*moved.shape[:-1], n - k)
        return out.movedim(-1, 1).contiguous()


Map = torch.Tensor | Embedding | Complement


def apply_linear(
    t: torch.Tensor,
    rows: Map | None = None,
    cols: Map | None = None,
    *,
    second_moment: bool = False,
) -> torch.Tensor:
    """Return ``rows @ t @ cols^T`` (``rows @ t`` for vectors); squared maps for second moments.

    Shapes: ``t`` is ``[m]``, ``[m, n]`` or ``[m, n, *rest]`` (a conv kernel
    ``[C_out, C_in, *k]``, a psi kernel ``[C, *k]``): ``rows`` (``[m', m]``) acts on axis 0 and
    ``cols`` (``[n', n]``) on axis 1, the same at every index of ``rest``.
    """
    if second_moment:  # an Embedding is its own square
        rows, cols = _squared(rows), _squared(cols)
    if isinstance(rows, Embedding | Complement):
        t = rows.apply(t, 0)
    elif rows is not None:
        t = rows @ t if t.dim() <= 2 else torch.tensordot(rows, t, dims=([1], [0]))
    if isinstance(cols, Embedding | Complement):
        t = cols.apply(t, 1)
    elif cols is not None:
        if t.dim() <= 2:
            t = t @ cols.T
        else:
            t = torch.movedim(torch.tensordot(t, cols, dims=([1], [1])), -1, 1)
    return t


def _squared(m: Map | None) -> Map | None:
    """The elementwise square of a map (second moments)."""
    if isinstance(m, Complement):
        m = m.matrix()
    return m * m if isinstance(m, torch.Tensor) else m


def check_optimizer(optimizer: object) -> None:
    """Raise :class:`UnsupportedOptimizerError` unless ``optimizer`` is SGD, Adam or AdamW."""
    if optimizer is None:
        return
    if not isinstance(optimizer, SUPPORTED_OPTIMIZERS):
        names = ", ".join(c.__name__ for c in SUPPORTED_OPTIMIZERS)
        raise UnsupportedOptimizerError(
            f"expected one of {names} (state transforms are defined for them), "
            f"got {type(optimizer).__name__}"
        )


def read_moments(
    optimizer: torch.optim.Optimizer | None, params: Mapping[Hashable, nn.Parameter]
) -> dict[Hashable, Moments]:
    """Float64 copies of the moment tensors of each parameter in ``params`` (keyed like it).

    Raises:
        UnsupportedOptimizerError: the optimizer holds none of ``params`` (built for another
            model: its state would silently stop following this one).
        NonFiniteError: a moment holds NaN/Inf (a change of basis would spread it to every
            entry of the mixed rows, e.g. one NaN to 16 entries after ``sparsify``).
    """
    out: dict[Hashable, Moments] = {}
    if optimizer is None:
        return out
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if params and not any(id(p) in held for p in params.values()):
        raise UnsupportedOptimizerError(
            "expected an optimizer over this model's parameters, got one holding none of them "
            "(built for another model?)"
        )
    for key, p in params.items():
        state = optimizer.state.get(p)
        if not state:
            continue
        moments = {
            name: v.detach().to(torch.float64).clone()
            for name, v in state.items()
            if name in FIRST_MOMENTS + SECOND_MOMENTS and isinstance(v, torch.Tensor)
        }
        for name, v in moments.items():
            if not all_finite(v):
                raise NonFiniteError(f"expected finite optimizer moments, got NaN/Inf in {name!r}")
        if moments:
            out[key] = moments
    return out


def write_moments(
    optimizer: torch.optim.Optimizer | None,
    old: Mapping[Hashable, nn.Parameter],
    new: Mapping[Hashable, nn.Parameter],
    moments: Mapping[Hashable, Moments],
) -> None:
    """Move optimizer state from ``old[key]`` to ``new[key]`` with the mapped ``moments[key]``.

    Parameters may be the same object (in-place updates) or new ones (resized): param_groups are
    re-pointed, ``step`` and other entries are carried over, moments are cast to the new dtype.
    """
    if optimizer is None:
        return
    replaced = {id(old[k]): new[k] for k in old if k in new and old[k] is not new[k]}
    for group in optimizer.param_groups:
        group["params"] = [replaced.get(id(p), p) for p in group["params"]]
    for key, p_old in old.items():
        p_new = new.get(key)
        if p_new is None:
            continue
        state = optimizer.state.pop(p_old, None)
        if state is None:
            continue
        updated = dict(state)
        for name, value in moments.get(key, {}).items():
            updated[name] = value.to(dtype=p_new.dtype, device=p_new.device).reshape(p_new.shape)
        optimizer.state[p_new] = updated


# ----------------------------------------------------------------------- checkpoints
Specs = dict[str, tuple[torch.dtype, tuple[int, ...]]]
_GROUP_KEYS = ("params", "param_names")  # not hyper-parameters


def _names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[list[str]]:
    """Each group's parameter names in ``model``."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for group in optimizer.param_groups:
        missing = [tuple(p.shape) for p in group["params"] if id(p) not in names]
        if missing:
            raise UnsupportedOptimizerError(
                f"expected an optimizer over the model's parameters, got parameters of shapes "
                f"{missing} that are not the model's"
            )
        out.append([names[id(p)] for p in group["params"]])
    return out


def named_state(
    optimizer: torch.optim.Optimizer, model: nn.Module
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimiser's state keyed by parameter name, for a checkpoint.

    Args:
        optimizer: an SGD, Adam or AdamW over ``model``'s parameters.
        model: the module whose ``named_parameters`` name them.

    Returns:
        ``(tensors, description)``: the state tensors named ``"<parameter>/<key>"`` (moments and
        ``step``; the live tensors, not copies: the next step changes them), and a JSON-ready
        ``{"class", "param_groups", "state"}``: each group's hyper-parameters with the names of
        its parameters, and each parameter's state keys.

    Raises:
        UnsupportedOptimizerError: not SGD/Adam/AdamW, or it holds a parameter not in ``model``.
        IsoproofError: a hyper-parameter or state entry JSON or safetensors cannot store.

    Examples:
        >>> model = IsotropicMLP([3, 4, 2], dtype=torch.float64)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        >>> model(torch.randn(5, 3, dtype=torch.float64)).sum().backward()
        >>> opt.step()
        >>> tensors, description = named_state(opt, model)
        >>> sorted(tensors)[0], description["state"]["linears.0.weight"]
        ('activations.0.log_o/momentum_buffer', ['momentum_buffer'])
    """
    check_optimizer(optimizer)
    names = _names(optimizer, model)
    groups = []
    for group, params in zip(optimizer.param_groups, names, strict=True):
        hyper = {k: v for k, v in group.items() if k not in _GROUP_KEYS}
        for key, value in hyper.items():
            ok = value is None or isinstance(value, bool | int | float | str)
            ok |= isinstance(value, tuple | list) and all(type(v) in (int, float) for v in value)
            if not ok:
                raise IsoproofError(
                    f"expected hyper-parameters that JSON can store, got {key}={value!r}"
                )
        hyper = {k: list(v) if isinstance(v, tuple | list) else v for k, v in hyper.items()}
        groups.append({**hyper, "params": params})
    by_id = {id(p): n for group, params in zip(optimizer.param_groups, names, strict=True)
             for p, n in zip(group["params"], params, strict=True)}  # fmt: skip
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, list[str]] = {}
    for p, entry in optimizer.state.items():
        if id(p) not in by_id or not entry:  # left behind by a resize; never stepped
            continue
        for key, value in entry.items():
            if not isinstance(value, torch.Tensor):
                raise IsoproofError(f"expected tensor optimiser state, got {key}={value!r}")
            tensors[f"{by_id[id(p)]}/{key}"] = value.detach()
        state[by_id[id(p)]] = sorted(entry)
    description = {"class": type(optimizer).__name__, "param_groups": groups, "state": state}
    return tensors, description


def _required(cls: str, group: Mapping[str, Any]) -> list[str]:
    """The state keys every parameter with state has, for this class and group."""
    if cls == "SGD":
        return ["momentum_buffer"] if group.get("momentum") else []
    return sorted(
        ["step", "exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group.get("amsgrad") else [])
    )


def _same_kind(current: object, saved: object) -> bool:
    """Whether a stored hyper-parameter may replace the current one."""
    if isinstance(current, bool) or current is None:
        return saved is None or isinstance(saved, bool)
    if isinstance(current, int | float):
        return type(saved) in (int, float) and math.isfinite(saved)  # type: ignore[arg-type]
    if isinstance(current, tuple | list):
        return (
            isinstance(saved, list)
            and len(saved) == len(current)
            and all(type(v) in (int, float) and math.isfinite(v) for v in saved)
        )
    return type(saved) is type(current)


def _fail(why: str) -> CheckpointError:
    return CheckpointError(f"optimiser state: {why}")


#: Group entries that choose torch's implementation or the direction of the step, not a rate: a
#: checkpoint must hold the current optimiser's (``capturable=True`` on the CPU fails mid-step).
_FIXED = ("capturable", "decoupled_weight_decay", "differentiable", "foreach", "fused", "maximize")


def _check_values(
    optimizer: torch.optim.Optimizer, group: Mapping[str, Any], stored: Mapping[str, Any], i: int
) -> None:
    """The stored hyper-parameters of group ``i`` are ones the class itself accepts (torch's
    checks: lr >= 0, betas in [0, 1), ...), with eps > 0, and the :data:`_FIXED` entries are
    the current optimiser's."""
    for key in _FIXED:
        if key in stored and stored[key] != group.get(key):  # bool or None (_same_kind)
            raise _fail(
                f"expected {key}={group.get(key)!r} in group {i} (the current optimiser's), "
                f"got {stored[key]!r}"
            )
    cls = type(optimizer)
    accepted = inspect.signature(cls.__init__).parameters
    hyper = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in stored.items()
        if k in accepted and k not in _GROUP_KEYS
    }
    try:
        cls([torch.zeros(1)], **hyper)  # a throwaway: torch's own checks of the numbers
    except (ValueError, TypeError, RuntimeError) as e:
        raise _fail(
            f"expected hyper-parameters {cls.__name__} accepts in group {i}, got {e}"
        ) from None
    if "eps" in stored and not stored["eps"] > 0:
        raise _fail(
            f"expected eps > 0 in group {i} (a zero second moment is divided by it), "
            f"got {stored['eps']!r}"
        )


def _check_groups(optimizer: torch.optim.Optimizer, names: list[list[str]], saved: object) -> None:
    """The stored groups cover the same parameter names and hold replaceable hyper-parameters."""
    if not isinstance(saved, list) or len(saved) != len(names):
        got = len(saved) if isinstance(saved, list) else repr(saved)
        raise _fail(f"expected {len(names)} parameter group(s), got {got}")
    for i, (group, params, stored) in enumerate(
        zip(optimizer.param_groups, names, saved, strict=True)
    ):
        if not isinstance(stored, dict) or stored.get("params") != params:
            got = stored.get("params") if isinstance(stored, dict) else stored
            raise _fail(f"expected group {i} over the parameters {params}, got {got}")
        for key, value in stored.items():
            if key in _GROUP_KEYS:
                continue
            if key not in group or not _same_kind(group[key], value):
                want = f"{key}={group[key]!r}" if key in group else f"no {key!r}"
                raise _fail(f"expected a hyper-parameter like {want} in group {i}, got {value!r}")
        _check_values(optimizer, group, stored, i)


def check_named_state(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    description: object,
    specs: Specs,
) -> Specs:
    """Check a stored :func:`named_state` description against ``optimizer`` before any tensor
    is read, and return the tensors it must come with (``{"<parameter>/<key>": (dtype, shape)}``;
    moments in the parameter's dtype and shape, ``step`` a float scalar).

    Args:
        optimizer: the optimiser to be filled (same class, same groups over the same names).
        model: the module naming its parameters.
        description: the stored description (untrusted JSON).
        specs: the file's declared ``(dtype, shape)`` per tensor name (to accept its ``step``
            dtype when it is a float).

    Raises:
        CheckpointError: another class, other groups or parameter names, a hyper-parameter of
            another kind or one the class refuses (``lr < 0``, ``betas`` outside [0, 1),
            ``eps <= 0``), an implementation flag (``capturable``, ``fused``, ``foreach``,
            ``differentiable``, ``maximize``, ``decoupled_weight_decay``) other than the current
            optimiser's, or a parameter's state keys differ from the ones the class keeps
            (a missing ``exp_avg_sq``); "expected X, got Y".
        UnsupportedOptimizerError: ``optimizer`` is not SGD/Adam/AdamW over ``model``.

    Examples:
        >>> model = IsotropicMLP([3, 4, 2], dtype=torch.float64)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> check_named_state(opt, model, named_state(opt, model)[1], {})
        {}
    """
    check_optimizer(optimizer)
    names = _names(optimizer, model)
    if not isinstance(description, dict) or set(description) != {"class", "param_groups", "state"}:
        raise _fail(f"expected a dict with class, param_groups and state, got {description!r:.80}")
    if description["class"] != type(optimizer).__name__:
        raise _fail(f"expected the class {type(optimizer).__name__}, got {description['class']!r}")
    _check_groups(optimizer, names, description["param_groups"])
    params = dict(model.named_parameters())
    group_of = {n: i for i, group in enumerate(names) for n in group}
    state = description["state"]
    if not isinstance(state, dict):
        raise _fail(f"expected a dict of state keys per parameter, got {state!r:.80}")
    expected: Specs = {}
    for name, keys in state.items():
        if name not in group_of:
            raise _fail(f"expected state of the optimiser's parameters, got {name!r}")
        stored = description["param_groups"][group_of[name]]
        required = _required(
            type(optimizer).__name__, {**optimizer.param_groups[group_of[name]], **stored}
        )
        if keys != required:
            raise _fail(f"expected the state keys {required} for {name!r}, got {keys!r}")
        p = params[name]
        for key in keys:
            step = specs.get(f"{name}/step", (torch.float32, ()))[0]
            expected[f"{name}/{key}"] = (
                (step if step.is_floating_point else torch.float32, ())
                if key == "step"
                else (p.dtype, tuple(p.shape))
            )
    return expected


def named_state_dict(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    description: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    """The ``state_dict`` for ``optimizer.load_state_dict`` from a description and its tensors
    that :func:`check_named_state` accepted (nothing is changed here).

    Raises:
        CheckpointError: a moment holds NaN/Inf, a second moment is negative, or a step is
            negative or not whole.

    Examples:
        >>> model = IsotropicMLP([3, 4, 2], dtype=torch.float64)
        >>> opt = torch.optim.Adam(model.parameters())
        >>> model(torch.randn(5, 3, dtype=torch.float64)).sum().backward()
        >>> opt.step()
        >>> tensors, description = named_state(opt, model)
        >>> again = torch.optim.Adam(model.parameters(), lr=0.5)
        >>> again.load_state_dict(named_state_dict(again, model, description, tensors))
        >>> again.param_groups[0]["lr"], float(again.state[model.linears[0].weight]["step"])
        (0.001, 1.0)
    """
    names = _names(optimizer, model)
    index = {n: i for i, n in enumerate(n for group in names for n in group)}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, keys in description["state"].items():
        entry = {key: tensors[f"{name}/{key}"] for key in keys}
        for key, value in entry.items():
            bad = not all_finite(value)
            if key == "step":
                bad = bad or float(value) < 0 or float(value) != math.floor(float(value))
            elif key in SECOND_MOMENTS:  # Adam divides by their square roots
                bad = bad or bool((value < 0).any())
            if bad:
                raise _fail(
                    "expected finite moments, second moments >= 0 and whole steps >= 0, got "
                    f"{key} of {name!r}"
                )
        state[index[name]] = entry
    groups = []
    for group, stored in zip(optimizer.param_groups, description["param_groups"], strict=True):
        hyper = {k: v for k, v in group.items() if k not in _GROUP_KEYS}
        for key, value in stored.items():
            if key not in _GROUP_KEYS:
                hyper[key] = tuple(value) if isinstance(value, list) else value
        groups.append({**hyper, "params": [index[n] for n in stored["params"]]})
    return {"state": state, "param_groups": groups}
