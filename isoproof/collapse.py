"""Collapse: the exact parallel precomputation of an isotropic MLP (``docs/method.md`` §2.1).

isoproof's own construction (from the paper's v2 claim that the generalised isotropic perceptron
"enables parallel precomputation of all matrix-vector products"). Every activation multiplies its
pre-activation by one scalar per sample, so by induction (widths ``[n0, ..., nL]``)::

    z_l = K_l [c_{l,0} x; c_l],        K_l = [M_l | U_l]                  ([n_l, n0 + l + 1])
    M_0 = W_0,  U_0 = [b_0],           c_0 = [1]
    M_{l+1} = W_{l+1} M_l,  U_{l+1} = [W_{l+1} U_l + psi_l e_l^T | b_{l+1}],
    c_{l+1} = [g_l c_l, 1],            g_l = s(N_l) / N_l,  N_l = sqrt(max(o_l + |z_l|^2, eps^2))

(``e_l`` the last column: the psi term ``psi_l g_l`` has the same coefficient ``g_l`` as the
propagated bias ``W_{l+1} b_l``, so the two share a column and ``U_l`` has ``l + 1`` columns, not
the ``2l + 1`` of a naive count). ``c_{l,0}`` multiplies both ``M_l x`` and the first column of
``U_l``. The norm is read in an orthonormal basis of ``span(K_l)``: with the reduced QR
``K_l = Q_l R_l`` and ``R_l = [B_l | C_l]`` (``[r_l, n0]`` and ``[r_l, l + 1]``,
``r_l = min(n_l, n0 + l + 1)``), ``|z_l| = |c_{l,0} B_l x + C_l c_l|``. When ``n_l <= n0 + l + 1``
the rotation buys nothing and ``B_l = M_l``, ``C_l = U_l`` are kept as they are.

The forward is then ONE matrix product ``P = x [B_0; ...; B_{L-2}; M_{L-1}]^T`` (every layer at
once, the parallel precomputation) followed by a short scalar recursion on ``r_l``-wide slices of
``P``: ``y_l = c_{l,0} P_l + C_l c_l`` (elementwise, ``l + 1`` terms), ``g_l`` from the same
clamped, overflow-safe norm as :class:`~isoproof.IsotropicActivation` (one activation module per
layer holds ``o_l`` and ``eps``), and the output ``c_{L-1,0} P_{L-1} + U_{L-1} c_{L-1}``. Diagonal
maps enter ``M_l`` through their dense view (a row scaling: exact); every psi mode (``"none"``:
no psi term), every ``o`` mode (``o_l`` frozen at its value) and every radial profile (``s`` is
applied to ``N`` exactly as in the model) are covered.

Stored numbers: ``sum_{l<L-1} r_l (n0 + l + 1) + nL (n0 + L) + (L - 1)`` (the ``o_l``), against
``sum_l n_l n_{l+1} + ...`` for the dense model: a win when the hidden layers are wider than the
input (``[64, 1024 x 4, 10]``: 3,228,696 -> 18,388), little or none when ``n0`` is comparable to
the hidden widths. The collapsed model is a frozen inference artefact (no training, no resizing).

Precision. The factors are built in float64 (``dtype`` only sets the stored precision) and the
``r_l``-wide recursion after ``P`` runs in float64. The orthonormal form is used rather than the
expanded quadratic form ``c0^2 x^T G x + 2 c0 x^T H c + c^T E c``, which overflows in float32 on
large inputs and is exposed to cancellation when ``|z_l|`` is small against its terms (the
comparison on adversarial inputs: ``benchmarks/bench_collapse.py``, ``docs/method.md`` §2.1).

Example::

    >>> model = IsotropicMLP([4, 16, 16, 3], dtype=torch.float64)
    >>> x = torch.randn(8, 4, dtype=torch.float64)
    >>> collapsed, receipt = collapse(model, probe=x)
    >>> bool((collapsed(x) - model(x)).abs().max() < 1e-12), receipt.exact
    (True, True)

# exact: see proofs/collapse.py
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .activations import IsotropicActivation
from .diagonal import DiagonalLinear
from .exceptions import IsoproofError, NonFiniteError, NotCollapsibleError, WidthError
from .io import register_format
from .mlp import IsotropicMLP, count_parameters
from .network import DTYPES
from .radial import get_radial
from .receipt import Receipt

__all__ = ["FORMAT", "CollapsedMLP", "collapse", "collapsed_parameters"]

#: The dtype of the scalar recursion after the stacked product (``docs/method.md`` §2.1).
_RECURSION = torch.float64

#: The checkpoint format tag of a collapsed model (:func:`isoproof.save` / :func:`isoproof.load`).
FORMAT = "isoproof.CollapsedMLP/1"


class CollapsedMLP(nn.Module):
    """The collapsed form of an :class:`IsotropicMLP` (build it with :func:`collapse`).

    Tensors (frozen ``nn.Parameter`` objects, ``requires_grad=False``): ``stacked``
    (``[sum r_l + nL, n0]``: ``[B_0; ...; B_{L-2}; M_{L-1}]``), ``consts[l]`` (``C_l``,
    ``[r_l, l + 1]``; the last entry, ``l = L - 1``, is ``U_{L-1}``) and one
    :class:`IsotropicActivation` per hidden layer holding ``o_l`` (constant mode) and ``eps``.

    Args:
        widths: the source model's widths ``[n0, ..., nL]``.
        ranks: ``[r_0, ..., r_{L-2}]``, ``1 <= r_l <= min(n_{l+1}, n0 + l + 1)``.
        radial: the radial profile's spec (e.g. ``"tanh"``, ``"shifted_relu:0.5"``).
        eps: the activations' lower clamp of ``N``.
    """

    def __init__(
        self,
        widths: list[int],
        ranks: list[int],
        *,
        radial: str = "tanh",
        eps: float = 1e-3,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        widths, ranks = _check_shapes(widths, ranks)
        factory: dict[str, Any] = {"dtype": dtype, "device": device}
        n0, depth = widths[0], len(widths) - 1
        self.widths = widths
        self.ranks = ranks
        self.radial = get_radial(radial)
        self.stacked = _frozen(torch.zeros(sum(ranks) + widths[-1], n0, **factory))
        rows = [*ranks, widths[-1]]
        self.consts = nn.ParameterList(
            _frozen(torch.zeros(r, l + 1, **factory)) for l, r in enumerate(rows)
        )
        self.activations = nn.ModuleList(
            IsotropicActivation(
                self.radial, intrinsic_length="constant", init_length=0.0, eps=eps, **factory
            )
            for _ in range(depth - 1)
        )
        self.eps = float(eps)

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the architecture (used by :mod:`isoproof.io`)."""
        return {
            "widths": list(self.widths),
            "ranks": list(self.ranks),
            "radial": self.radial.spec,
            "eps": self.eps,
            "dtype": str(self.stacked.dtype).removeprefix("torch."),
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], *, device: torch.device | str | None = None
    ) -> CollapsedMLP:
        """Build the (zero-filled) architecture that :meth:`config` describes.

        Raises:
            IsoproofError: a missing key or an invalid value.

        Example::

            >>> c, _ = collapse(IsotropicMLP([3, 8, 2]))
            >>> CollapsedMLP.from_config(c.config()).config() == c.config()
            True
        """
        if not isinstance(config, dict):
            raise IsoproofError(f"expected a config dict, got {type(config).__name__}")
        try:
            return cls(
                config["widths"],
                config["ranks"],
                radial=config["radial"],
                eps=config["eps"],
                dtype=DTYPES[config["dtype"]],
                device=device,
            )
        except KeyError as e:
            raise IsoproofError(
                f"expected key {e} in the collapsed config, got {sorted(config)}"
            ) from None
        except (TypeError, ValueError) as e:
            if isinstance(e, IsoproofError):
                raise
            raise IsoproofError(
                f"expected a valid collapsed config, got {config!r} ({e})"
            ) from None

    @property
    def dtype(self) -> torch.dtype:
        return self.stacked.dtype

    def count_parameters(self) -> int:
        """Stored numbers: every tensor of the state (factors and the ``o_l``)."""
        return int(sum(t.numel() for t in self.state_dict().values()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of shape ``[..., n0]`` -> logits ``[..., nL]`` (same function as the source)."""
        if x.shape[-1:] != (self.widths[0],):
            raise WidthError(
                f"expected input with last dimension {self.widths[0]}, got shape {tuple(x.shape)}"
            )
        # the one product with the input, every layer at once; the r_l-wide recursion after it
        # runs in float64 whatever the stored dtype (cheap, and 4x more accurate in float32)
        p = (x @ self.stacked.T).to(_RECURSION)
        consts = [c.to(_RECURSION) for c in self.consts]
        coeffs: list[torch.Tensor] = []  # c_{l,0..l-1}; c_{l,l} = 1 is implicit
        start = 0
        for l, act in enumerate(self.activations):
            y = _combine(p[..., start : start + self.ranks[l]], consts[l], coeffs)
            start += self.ranks[l]
            gain = act.gain(y)  # |y| = |z_l|: the model's own clamped norm and profile
            coeffs = [gain * c for c in coeffs] + [gain]
        return _combine(p[..., start:], consts[-1], coeffs).to(x.dtype)

    def extra_repr(self) -> str:
        return f"widths={self.widths}, ranks={self.ranks}, radial={self.radial.spec!r}"


def _combine(p: torch.Tensor, consts: torch.Tensor, coeffs: list[torch.Tensor]) -> torch.Tensor:
    """``c_0 (p + C[:, 0]) + sum_{0<k<l} c_k C[:, k] + C[:, l]`` (``c_l = 1``; elementwise only).

    ``p = B x`` and ``C[:, 0]`` (the image of ``b_0``) share the coefficient ``c_0``.
    """
    if not coeffs:
        return p + consts[:, 0]
    y = (p + consts[:, 0]) * coeffs[0]
    for k in range(1, len(coeffs)):
        y = y + coeffs[k] * consts[:, k]
    return y + consts[:, len(coeffs)]


def _frozen(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t, requires_grad=False)


def _check_shapes(widths: list[int], ranks: list[int]) -> tuple[list[int], list[int]]:
    try:
        widths, ranks = [int(w) for w in widths], [int(r) for r in ranks]
    except (TypeError, ValueError):
        raise WidthError(f"expected int widths and ranks, got {widths!r}, {ranks!r}") from None
    if len(widths) < 2 or min(widths) < 1:
        raise WidthError(f"expected at least 2 widths >= 1, got {widths}")
    bounds = [min(n, widths[0] + l + 1) for l, n in enumerate(widths[1:-1])]
    if len(ranks) != len(bounds) or any(
        not 1 <= r <= b for r, b in zip(ranks, bounds, strict=True)
    ):
        raise WidthError(
            f"expected ranks r_l in [1, min(widths[l + 1], n0 + l + 1)] = {bounds}, got {ranks}"
        )
    return widths, ranks


def collapsed_parameters(widths: list[int], *, ranks: list[int] | None = None) -> int:
    """Stored numbers of the collapsed form of a model with ``widths`` (the formula above).

    Example::

        >>> collapsed_parameters([64, 1024, 1024, 1024, 1024, 10])
        18388
    """
    n0, depth = widths[0], len(widths) - 1
    if ranks is None:
        ranks = [min(n, n0 + l + 1) for l, n in enumerate(widths[1:-1])]
    hidden = sum(r * (n0 + l + 1) for l, r in enumerate(ranks))
    return hidden + widths[-1] * (n0 + depth) + (depth - 1)


def factors(model: IsotropicMLP, *, broken: str | None = None) -> list[tuple[torch.Tensor, ...]]:
    """``[(M_l, U_l), ...]`` for ``l = 0 .. L-1`` in float64 (the recursion of the module doc).

    ``broken="psi"`` drops the psi term (a negative control for the tests).
    """
    weights = [lin.weight.detach().to(torch.float64) for lin in model.linears]
    biases = [lin.bias.detach().to(torch.float64) for lin in model.linears]
    use_psi = model.psi_mode != "none" and broken != "psi"
    m, u = weights[0], biases[0][:, None]
    out = [(m, u)]
    for l in range(1, len(weights)):
        m, u = weights[l] @ m, weights[l] @ u
        if use_psi:
            u[:, -1] += model.psi[l - 1].detach().to(torch.float64)
        u = torch.cat([u, biases[l][:, None]], dim=1)
        out.append((m, u))
    return out


def _basis(m: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C)`` with ``|B v + C w| = |M v + U w|``: ``R = Q^T [M | U]`` of a reduced QR, or
    ``(M, U)`` unchanged when the layer is no wider than ``[M | U]`` has columns."""
    if m.shape[0] <= m.shape[1] + u.shape[1]:
        return m, u
    r = torch.linalg.qr(torch.cat([m, u], dim=1), mode="r").R
    return r[:, : m.shape[1]], r[:, m.shape[1] :]


def _check_model(model: object) -> IsotropicMLP:
    if not isinstance(model, IsotropicMLP):
        raise NotCollapsibleError(
            f"expected an IsotropicMLP, got {type(model).__name__} (only an MLP unrolls: a "
            "convolution mixes the per-pixel gains spatially)"
        )
    for i, lin in enumerate(model.linears):
        if not isinstance(lin, nn.Linear | DiagonalLinear):
            raise NotCollapsibleError(
                f"expected linears[{i}] to be an nn.Linear or DiagonalLinear, got "
                f"{type(lin).__name__}"
            )
    for name, t in model.state_dict().items():
        if name != "gain_means" and t.is_floating_point() and not torch.isfinite(t).all():
            raise NonFiniteError(f"expected finite parameters, got NaN/Inf in {name}")
    return model


@torch.no_grad()
def collapse(
    model: IsotropicMLP, *, dtype: torch.dtype | None = None, probe: torch.Tensor | None = None
) -> tuple[CollapsedMLP, Receipt]:
    """The collapsed form of ``model`` (same input/output) and the :class:`Receipt`.

    Args:
        model: an :class:`IsotropicMLP` with dense and/or diagonal maps (not modified).
        dtype: the stored precision (default: the model's); the factors are built in float64.
        probe: optional batch ``[B, n0]``; the receipt's ``max_abs_change`` is then
            ``max |collapsed(probe) - model(probe)|`` (model run in eval mode).

    Returns:
        ``(collapsed, receipt)``: ``receipt.op == "collapse"``, widths unchanged, stored numbers
        before/after (:func:`count_parameters`, :meth:`CollapsedMLP.count_parameters`) and
        ``bound == 0`` (exact in exact arithmetic; the measured change shows the rounding).

    Raises:
        NotCollapsibleError: not an IsotropicMLP, or a map other than ``nn.Linear`` /
            ``DiagonalLinear`` (e.g. ``NGCLinear``).
        NonFiniteError: a parameter holds NaN/Inf.
        WidthError: ``probe`` of the wrong width.
    """
    model = _check_model(model)
    dtype = model.dtype if dtype is None else dtype
    *hidden, (m_out, u_out) = factors(model)
    pieces = [_basis(m, u) for m, u in hidden]
    collapsed = CollapsedMLP(
        model.widths,
        [b.shape[0] for b, _ in pieces],
        radial=model.radial.spec,
        eps=model.eps,
        dtype=torch.float64,
        device=model.device,
    )
    collapsed.stacked.copy_(torch.cat([b for b, _ in pieces] + [m_out]))
    for l, c in enumerate([c for _, c in pieces] + [u_out]):
        collapsed.consts[l].copy_(c)
    for act, src in zip(collapsed.activations, model.activations, strict=True):
        act.set_o(float(src.o.detach().to(torch.float64)))
    collapsed = collapsed.to(dtype).eval()
    change = None
    if probe is not None:
        was = model.training
        model.eval()
        try:
            change = float((collapsed(probe.to(dtype)) - model(probe)).abs().max())
        finally:
            model.train(was)
    params = (count_parameters(model), collapsed.count_parameters())
    widths = tuple(model.widths)
    return collapsed, Receipt("collapse", None, widths, widths, *params, (), 0.0, change)


register_format(FORMAT, CollapsedMLP)
