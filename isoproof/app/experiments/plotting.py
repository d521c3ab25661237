"""Plot helpers for the experiments and the ``spectra`` command (PNG via matplotlib).

Figures are built with matplotlib's object-oriented API (``matplotlib.figure.Figure``), never
``pyplot``, so no GUI backend is selected or needed and no global state is touched. PNGs are
written atomically.

* :func:`figure` and :func:`save_figure`;
* :func:`ridge`: a ridge ("joy") plot of one distribution per row, e.g. singular values per epoch;
* :func:`shade_phases`: shaded epoch ranges with labels (task schedules);
* :func:`plot_spectra`: the sorted singular values of every affine map of a model.

Example::

    >>> fig, (ax,) = figure(1, 1)
    >>> ridge(ax, [np.random.rand(50) for _ in range(3)], ["a", "b", "c"])
    >>> save_figure(fig, tmp_path / "r.png").is_file()
    True
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...exceptions import MissingExtraError
from ...files import atomic_path

__all__ = ["figure", "plot_spectra", "ridge", "save_figure", "shade_phases"]


def figure(nrows: int = 1, ncols: int = 1, *, size: tuple[float, float] | None = None) -> Any:
    """``(fig, axes)`` with ``axes`` a flat list (row-major)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError(
            "expected matplotlib to draw plots (pip install isoproof[plot]), got an ImportError"
        ) from None
    size = size or (4.2 * ncols, 3.2 * nrows)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 130) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def ridge(
    ax: Any,
    samples: Sequence[Sequence[float] | np.ndarray],
    labels: Sequence[str],
    *,
    bins: int = 40,
    value_range: tuple[float, float] | None = None,
    overlap: float = 1.6,
    color: str = "C0",
    xlabel: str = "",
    log: bool = False,
) -> None:
    """One filled histogram-density per row, stacked bottom (first) to top (last).

    Each row is normalised to its own peak (shapes are compared, not counts); ``value_range``
    defaults to the range of all samples together so the rows share one x axis. ``log=True``
    uses log-spaced bins and a log axis (values below the range are counted in the first bin).
    """
    arrays = [np.asarray(s, dtype=float).ravel() for s in samples]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(1)
    if log:
        finite = finite[finite > 0] if (finite > 0).any() else np.ones(1)
    lo, hi = value_range or (float(finite.min()), float(finite.max()))
    if hi <= lo:
        lo, hi = (lo / 2, hi * 2) if log else (lo - 0.5, hi + 0.5)
    edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    centres = np.sqrt(edges[1:] * edges[:-1]) if log else 0.5 * (edges[1:] + edges[:-1])
    kernel = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    for row, a in enumerate(arrays):
        a = np.clip(a[np.isfinite(a)], lo, hi)
        counts, _ = np.histogram(a, bins=edges)
        dens = np.convolve(counts.astype(float), kernel / kernel.sum(), mode="same")
        dens = dens / dens.max() if dens.max() > 0 else dens
        base = row
        ax.fill_between(
            centres,
            base,
            base + overlap * dens,
            color=color,
            alpha=0.55,
            linewidth=0.8,
            edgecolor="black",
            zorder=len(arrays) - row,
        )
    ax.set_yticks(range(len(arrays)), list(labels))
    ax.set_ylim(-0.2, len(arrays) - 1 + overlap + 0.2)
    if log:
        ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    if xlabel:
        ax.set_xlabel(xlabel)


def shade_phases(ax: Any, phases: Sequence[tuple[float, float, str]]) -> None:
    """Shade ``(start, end, label)`` x-ranges alternately and write the label at the top."""
    for k, (a, b, label) in enumerate(phases):
        if k % 2 == 0:
            ax.axvspan(a, b, color="0.92", zorder=0)
        ax.text(
            0.5 * (a + b),
            1.0,
            label,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
        )


def plot_spectra(
    spectra: Sequence[Sequence[float] | np.ndarray],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    threshold: float | None = None,
    names: Sequence[str] | None = None,
) -> Path:
    """Sorted singular values (neuron index vs sigma) of each affine map; one line per map."""
    fig, (ax,) = figure(1, 1, size=(6.0, 3.8))
    for i, s in enumerate(spectra):
        s = np.sort(np.asarray(s, dtype=float))[::-1]
        label = names[i] if names else f"map {i} ({len(s)} neurons)"
        ax.plot(np.arange(1, len(s) + 1), s, marker="." if len(s) <= 40 else None, label=label)
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linestyle="--", linewidth=1, label=f"{threshold:g}")
    ax.set_xlabel("neuron (sorted by singular value)")
    ax.set_ylabel("singular value")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
