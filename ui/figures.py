"""Figures for ``gr.Plot`` drawn with matplotlib (pictures, not hoverable): the error surfaces'
3-D surfaces beside contours, which Plotly would draw far heavier. Hoverable charts are in ``ui.charts``.

``ui`` never imports torch: the figures take what ``zoo`` returns.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator

from zoo.landscape import Landscape

from .charts import color

SIZE = (5.2, 3.6)


def message_figure(text: str) -> Figure:
    """A matplotlib figure that says why there is nothing to plot, instead of an empty box."""
    fig = Figure(figsize=SIZE, dpi=100)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 48), ha="center", va="center", fontsize=10, color="#444444",
            transform=ax.transAxes)
    return fig


class _PlainLog(LogFormatter):
    """LogFormatter's choice of which ticks to label, written as plain numbers ("0.3", "1e+04")."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_y(ax) -> None:
    """Log scale with plain-text tick labels: mathtext's parser is shared and not thread-safe."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLog())
    ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False))


def _figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (7.6, 3.9)) -> tuple[Figure, object]:
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _finish(fig: Figure, ax, extra: list | None = None) -> Figure:
    handles, labels = ax.get_legend_handles_labels()
    for h in extra or []:
        handles.append(h)
        labels.append(h.get_label())
    # Beside the axes, so it never hides a line.
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


# --- Error surfaces (zoo.landscape) ----------------------------------------------------------
# Every depth on one colour scale, logarithmic: losses around trained weights span orders of
# magnitude, and the claim (smooth and nearly convex, or chaotic) is about shape, not level.

LOSS_FLOOR = 1e-3  # cross-entropies below this are drawn at it (a log scale has no 0)


def _loss_array(ls: Landscape):
    z = ls.grid()
    z[~np.isfinite(z)] = np.nan  # an overflowed point is left blank, not drawn as a peak
    return np.maximum(z, LOSS_FLOOR)


def landscape_figure(landscapes: list[Landscape]) -> Figure | None:
    """2-D: per depth a filled contour and a 3-D surface; 1-D: every depth's curve on one plot.

    One shared, logarithmic colour scale (and z range) for all depths, so they compare honestly.
    """
    if not landscapes:
        return None
    arrays = [_loss_array(ls) for ls in landscapes]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if finite.size == 0:
        return message_figure("Every point's loss overflowed: try a smaller span.")
    lo, hi = float(finite.min()), float(finite.max())
    hi = max(hi, lo * 1.01)
    seed = landscapes[0].seed
    if all(ls.dims == 1 for ls in landscapes):
        fig, ax = _figure(f"Loss along one filter-normalized random direction (seed {seed})",
                          "α (step along δ, in units of each filter's own norm)",
                          "cross-entropy (log scale)", size=(7.6, 4.2))
        for i, (ls, z) in enumerate(zip(landscapes, arrays)):
            ax.plot(ls.alphas, z[0], "o-", color=color(i), markersize=3, linewidth=1.5,
                    label=f"{ls.model} (at θ: {ls.center_loss:.3g})")
        _log_y(ax)
        ax.axvline(0, color="gray", linewidth=0.8, linestyle=":")
        return _finish(fig, ax)
    rows = len(landscapes)
    height = 3.3 * rows + 0.7
    fig = Figure(figsize=(8.6, height), dpi=100)
    norm = LogNorm(vmin=lo, vmax=hi)
    levels = np.geomspace(lo, hi, 16)
    zlo, zhi = np.log10(lo), np.log10(hi)
    grid = fig.add_gridspec(rows, 3, width_ratios=(1, 1.25, 0.06), hspace=0.45, wspace=0.25,
                            left=0.08, right=0.86, top=1 - 0.75 / height, bottom=0.45 / height)
    mappable = None
    for r, (ls, z) in enumerate(zip(landscapes, arrays)):
        if ls.dims == 1:  # a 1-D run among 2-D ones: its curve, on the same scale
            ax = fig.add_subplot(grid[r, :2])
            ax.plot(ls.alphas, z[0], "o-", color=color(r))
            ax.set_yscale("log")
            ax.set_ylim(lo, hi)
            ax.set_title(f"{ls.model}: along δ only", fontsize=10)
            continue
        a, b = np.meshgrid(ls.alphas, ls.betas)
        ax = fig.add_subplot(grid[r, 0])
        mappable = ax.contourf(a, b, z, levels=levels, norm=norm, cmap="viridis", extend="both")
        ax.contour(a, b, z, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
        ax.plot([0], [0], marker="+", color="red", markersize=10, mew=2)
        ax.set_aspect("equal")
        ax.set_title(f"{ls.model}: contour (loss at θ {ls.center_loss:.3g})", fontsize=10)
        ax.set_xlabel("α (along δ)", fontsize=8)
        ax.set_ylabel("β (along η)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax3 = fig.add_subplot(grid[r, 1], projection="3d")
        logz = np.log10(z)
        ax3.plot_surface(a, b, logz, cmap="viridis", norm=_log10_norm(zlo, zhi), rstride=1, cstride=1,
                         linewidth=0.2, edgecolor="k", antialiased=True)
        ax3.set_zlim(zlo, zhi)
        ax3.set_title(f"{ls.model}: surface", fontsize=10)
        ax3.set_xlabel("α", fontsize=8, labelpad=-4)
        ax3.set_ylabel("β", fontsize=8, labelpad=-4)
        ax3.set_zlabel("log₁₀ loss", fontsize=8, labelpad=-2)
        ax3.tick_params(labelsize=6, pad=-2)
        # Three ticks per horizontal axis: nine ("-1.00-0.75-0.50...") ran into each other.
        ax3.xaxis.set_major_locator(MaxNLocator(3))
        ax3.yaxis.set_major_locator(MaxNLocator(3))
        ax3.zaxis.set_major_locator(MaxNLocator(4))
        ax3.view_init(elev=32, azim=-60)
    if mappable is not None:
        cax = fig.add_subplot(grid[:, 2])
        bar = fig.colorbar(mappable, cax=cax)
        bar.set_label("cross-entropy (log scale, shared by every depth)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
    fig.suptitle(f"Loss around the trained weights θ + αδ + βη, filter-normalized directions (seed {seed})",
                 fontsize=11)
    return fig


def _log10_norm(lo: float, hi: float):
    """A linear norm on log10(loss): the surface's colours match the contours' log scale."""
    return Normalize(vmin=lo, vmax=hi)
