"""Convolutions (isoproof's own construction, ``docs/method.md`` §1-§5, convolutions).

A 1-D field is a matrix ``[C, P]`` (channels x positions). A convolution with kernel taps
``K_t`` (``[C_out, C_in]`` each), zero padding ``p``, stride 1 and dilation 1 computes::

    y[:, j] = sum_t K_t xpad[:, j + t] + b          xpad: p zero columns on each side

The channel-wise isotropic activation acts at each position ``j``:
``a[:, j] = g(N_j) z[:, j]``, ``N_j^2 = o + |z[:, j]|^2``; its gain row ``G = [g(N_j)]_j``
(``[1, P]``) feeds the next layer's *psi kernel* (taps ``phi_t``, ``[C_out, 1]``) through the
same convolution: ``z' = conv(a, V) + c + conv(G, phi)``. Claims, on a slice
``a -> z -> f(z) -> z'`` with symbolic kernels (2 taps, padding 1, so the border positions read
zero padding) and a symbolic gain row ``G_prev`` of the layer before:

- :func:`pooled_equivariance`: ``f(Qz) = Q f(z)`` and ``G(Qz) = G(z)`` at every position and
  ``avgpool(f(Qz)) = Q avgpool(f(z))`` (Cayley ``Q``, 3 channels); with
  ``broken="max_pool"`` (max pooling per channel) it is not provable (the negative control);
- :func:`reparameterisation`: ``K_t <- Q^T K_t``, ``b <- Q^T b``, ``psi_t <- Q^T psi_t``,
  ``V_t <- V_t Q`` leaves every output position unchanged (Cayley ``Q``, 2 channels);
- :func:`removal`: a channel with zero kernel taps and zero own psi kernel outputs the constant
  ``b*``; removing it with ``o <- o + b*^2`` and ``phi_t <- phi_t + V_t[:, c*] b*`` is exact at
  every position, borders included; ``broken="psi"`` (no psi-kernel update) or ``"o"`` (no
  ``o`` update) are the negative controls, through the same function;
- :func:`growth`: a channel with zero taps, bias and own psi kernel, and any outgoing slice, is
  exact.

Example::

    >>> from isoproof.proofs import convolution
    >>> from isoproof.proofs._symbolic import is_zero
    >>> is_zero(convolution.growth())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy as sp

from ._symbolic import (
    Profile,
    Trace,
    cayley,
    g,
    matrix,
    radial_length,
    reduce,
    stack,
    trace_residual,
    vector,
)
from .expressions import degenerated_length, degenerated_psi

__all__ = [
    "ConvLayer",
    "conv1d",
    "conv_forward",
    "growth",
    "pooled_equivariance",
    "removal",
    "reparameterisation",
    "slice_layers",
]

_PAD = 1  # zero padding of both convolutions: the border positions read padding
_POSITIONS = 3  # input positions of the slice


def conv1d(x: sp.MatrixBase, taps: Sequence[sp.MatrixBase], padding: int) -> sp.Matrix:
    """``y[:, j] = sum_t taps[t] xpad[:, j + t]`` (stride 1, dilation 1, zero padding)."""
    rows = taps[0].rows
    xpad = sp.zeros(x.rows, padding).row_join(sp.Matrix(x)).row_join(sp.zeros(x.rows, padding))
    width = xpad.cols - len(taps) + 1
    out = sp.zeros(rows, width)
    for j in range(width):
        col = sp.zeros(rows, 1)
        for t, k in enumerate(taps):
            col += k * xpad[:, j + t]
        out[:, j] = col
    return out


@dataclass(frozen=True)
class ConvLayer:
    """One conv layer: kernel taps, bias, psi-kernel taps (``None``: no psi term) and the
    intrinsic length of the activation after it (``None``: the slice's last map)."""

    taps: tuple[sp.Matrix, ...]
    bias: sp.Matrix
    psi: tuple[sp.Matrix, ...] | None
    length: sp.Expr | None


def conv_forward(
    x: sp.MatrixBase,
    layers: Sequence[ConvLayer],
    gains_in: sp.MatrixBase | None = None,
    profile: Profile = g,
) -> tuple[Trace, sp.Matrix, sp.Matrix]:
    """Forward pass of conv layers with channel-wise activations and psi kernels.

    Returns ``(trace, a, G)``: the trace (output field flattened, ``N_j^2`` and ``g_j`` of every
    activation and position, in order), the last activation field and its gain row.
    """
    a, gains = sp.Matrix(x), gains_in
    radicands: list[sp.Expr] = []
    all_gains: list[sp.Expr] = []
    z = a
    for layer in layers:
        z = conv1d(a, layer.taps, _PAD)
        z = z + layer.bias * sp.ones(1, z.cols)
        if layer.psi is not None and gains is not None:
            z = z + conv1d(gains, layer.psi, _PAD)
        if layer.length is None:
            break
        a, row = sp.zeros(z.rows, z.cols), sp.zeros(1, z.cols)
        for j in range(z.cols):
            length = radial_length(z[:, j], layer.length)
            radicands.append(length**2)
            row[0, j] = profile(length)
            all_gains.append(row[0, j])
            a[:, j] = z[:, j] * row[0, j]
        gains = row
    return Trace(sp.Matrix(list(z)), tuple(radicands), tuple(all_gains)), a, gains  # type: ignore[arg-type]


def slice_layers(channels: int, c_in: int = 2, c_out: int = 2) -> tuple[ConvLayer, ConvLayer]:
    """The slice ``z = conv(a, K) + b + conv(G_prev, psi)``, ``z' = conv(f(z), V) + c +
    conv(G, phi)``: 2 taps each, every entry an independent symbol, ``o > 0``."""
    o = sp.Symbol("o", positive=True)
    first = ConvLayer(
        taps=tuple(matrix(f"K{t}_", channels, c_in) for t in range(2)),
        bias=vector("b", channels),
        psi=tuple(vector(f"psi{t}_", channels) for t in range(2)),
        length=o,
    )
    second = ConvLayer(
        taps=tuple(matrix(f"V{t}_", c_out, channels) for t in range(2)),
        bias=vector("c", c_out),
        psi=tuple(vector(f"phi{t}_", c_out) for t in range(2)),
        length=None,
    )
    return first, second


def _inputs(c_in: int = 2) -> tuple[sp.Matrix, sp.Matrix]:
    return matrix("a", c_in, _POSITIONS), matrix("G_prev", 1, _POSITIONS)


def _compare(before: Sequence[ConvLayer], after: Sequence[ConvLayer]) -> sp.Matrix:
    """Two-step residual (argument identities per position, then every output position)."""
    a, gains = _inputs(before[0].taps[0].cols)
    return trace_residual(conv_forward(a, before, gains)[0], conv_forward(a, after, gains)[0])


def pooled_equivariance(*, broken: str | None = None) -> sp.Matrix:
    """``f(Qz) = Q f(z)``, ``G(Qz) = G(z)`` per position and ``pool(f(Qz)) = Q pool(f(z))`` for a
    Cayley ``Q`` on 3 channels, 2 positions, with average pooling; ``broken="max_pool"`` pools
    by a per-channel max instead (the control: not provable)."""
    if broken not in (None, "max_pool"):
        raise ValueError(f"expected broken in (None, 'max_pool'), got {broken!r}")
    q, z, o = cayley(3), matrix("z", 3, 2), sp.Symbol("o", positive=True)

    def act(field: sp.MatrixBase) -> tuple[sp.Matrix, list[sp.Expr]]:
        gains = [g(radial_length(field[:, j], o)) for j in range(field.cols)]
        return sp.Matrix.hstack(*[field[:, j] * gains[j] for j in range(field.cols)]), gains

    def pool(field: sp.MatrixBase) -> sp.Matrix:
        if broken == "max_pool":
            return sp.Matrix([sp.Max(*field[i, :]) for i in range(field.rows)])
        return sp.Matrix([sp.Add(*field[i, :]) / field.cols for i in range(field.rows)])

    rotated, gains_rotated = act(q * z)
    plain, gains_plain = act(z)
    radicands = [
        reduce(radial_length((q * z)[:, j], o) ** 2 - radial_length(z[:, j], o) ** 2)
        for j in range(z.cols)
    ]
    subs = dict(zip(gains_rotated, gains_plain, strict=True))
    per_position = (rotated.xreplace(subs) - q * plain).reshape(6, 1)
    pooled = (pool(rotated) - q * pool(plain)).xreplace(subs)
    return stack(sp.Matrix(radicands), reduce(per_position), reduce(pooled))


def reparameterisation(*, broken: str | None = None) -> sp.Matrix:
    """A Cayley rotation of 2 hidden channels moved into the kernels, bias and psi kernel:
    every output position (borders included) unchanged. ``broken="psi_not_rotated"`` leaves
    the psi kernel in the old basis (the control)."""
    if broken not in (None, "psi_not_rotated"):
        raise ValueError(f"expected broken in (None, 'psi_not_rotated'), got {broken!r}")
    first, second = slice_layers(2)
    q = cayley(2)
    psi = first.psi or ()
    rotated = (
        ConvLayer(
            tuple(q.T * k for k in first.taps),
            q.T * first.bias,
            tuple(psi) if broken else tuple(q.T * p for p in psi),
            first.length,
        ),
        ConvLayer(tuple(v * q for v in second.taps), second.bias, second.psi, None),
    )
    return _compare((first, second), rotated)


def _silenced(channels: int) -> tuple[ConvLayer, ConvLayer]:
    """The slice with the last channel's kernel taps and own psi-kernel entries set to zero."""
    first, second = slice_layers(channels)
    taps = tuple(sp.Matrix(k) for k in first.taps)
    psi = tuple(sp.Matrix(p) for p in first.psi or ())
    for t in range(len(taps)):
        taps[t][channels - 1, :] = sp.zeros(1, taps[t].cols)
        psi[t][channels - 1, 0] = 0
    return ConvLayer(taps, first.bias, psi, first.length), second


def removal(*, broken: str | None = None) -> sp.Matrix:
    """Remove the silenced last of 3 channels: ``o += b*^2``, ``phi_t += V_t[:, c*] b*``.

    ``broken="o"`` skips the ``o`` update and ``broken="psi"`` the psi-kernel update (negative
    controls: not provable).
    """
    if broken not in (None, "o", "psi"):
        raise ValueError(f"expected broken in (None, 'o', 'psi'), got {broken!r}")
    first, second = _silenced(3)
    keep, b_star = slice(0, 2), first.bias[2:, :]
    length = first.length if broken == "o" else degenerated_length(first.length, b_star)
    phi = tuple(
        p if broken == "psi" else degenerated_psi(p, v[:, 2:], b_star)
        for p, v in zip(second.psi or (), second.taps, strict=True)
    )
    removed = (
        ConvLayer(
            tuple(k[keep, :] for k in first.taps),
            first.bias[keep, :],
            tuple(p[keep, :] for p in first.psi or ()),
            length,
        ),
        ConvLayer(tuple(v[:, keep] for v in second.taps), second.bias, phi, None),
    )
    return _compare((first, second), removed)


def growth(*, broken: str | None = None) -> sp.Matrix:
    """Append a channel with zero taps, bias and own psi entries, and symbolic outgoing taps
    ``w_t``: exact at every position. ``broken="bias"`` gives it a non-zero bias (control)."""
    if broken not in (None, "bias"):
        raise ValueError(f"expected broken in (None, 'bias'), got {broken!r}")
    first, second = slice_layers(2)
    zero_row = sp.zeros(1, first.taps[0].cols)
    new_bias = sp.Matrix([sp.Symbol("b_new", real=True)]) if broken else sp.zeros(1, 1)
    grown = (
        ConvLayer(
            tuple(k.col_join(zero_row) for k in first.taps),
            first.bias.col_join(new_bias),
            tuple(p.col_join(sp.zeros(1, 1)) for p in first.psi or ()),
            first.length,
        ),
        ConvLayer(
            tuple(v.row_join(vector(f"w{t}_", v.rows)) for t, v in enumerate(second.taps)),
            second.bias,
            second.psi,
            None,
        ),
    )
    return _compare((first, second), grown)
