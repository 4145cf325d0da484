"""Matplotlib figures for ``gr.Plot``: accuracy against cost; the Depth lab's per-block charts; deletion
and insertion curves; error surfaces."""

from __future__ import annotations

import textwrap
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter

from zoo.analysis import Analysis, BlockStats, relative_depths
from zoo.faithfulness import Faithfulness
from zoo.landscape import Landscape
from zoo.stats import ZooRow

SIZE = (5.2, 3.6)


def message_figure(text: str) -> Figure:
    """A figure that says why there is nothing to plot, instead of an empty box."""
    fig = Figure(figsize=SIZE, dpi=100)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 48), ha="center", va="center", fontsize=10, color="#444444",
            transform=ax.transAxes)
    return fig


def accuracy_vs(rows: list[ZooRow], x: str) -> Figure:
    """Top-1 against ``x`` = "macs" (measured multiply-adds) or "latency" (median ms).

    Axes name the resolution the costs were measured at; models without a reported
    top-1 are left out and named; with nothing to plot, the figure says why.
    """
    if not rows:
        return message_figure("No models to plot.")
    res = rows[0].resolution
    if x == "latency" and all(r.latency is None for r in rows):
        return message_figure("Latency not measured yet: tick 'Measure latency' to time every model on this "
                              "device and plot top-1 against it.")
    no_top1 = [r.name for r in rows if r.top1 is None]
    pts = []
    for r in rows:
        if r.top1 is None:
            continue
        if x == "macs":
            pts.append((r.macs / 1e9, r.top1, r.name))
        elif r.latency is not None:
            pts.append((r.latency.median_ms, r.top1, r.name))
    if not pts:
        return message_figure(f"Nothing to plot: {', '.join(no_top1)} {'has' if len(no_top1) == 1 else 'have'} "
                              "no reported top-1 accuracy. Add top1 = ... to a model's entry in your zoo file "
                              "to place it here.")
    fig = Figure(figsize=SIZE, dpi=100)
    ax = fig.add_subplot()
    xs, ys, names = zip(*pts)
    ax.plot(xs, ys, "o-", color="#3b6fb6")
    for px, py, n in pts:
        ax.annotate(n, (px, py), textcoords="offset points", xytext=(5, -12), fontsize=8)
    if x == "macs":
        ax.set_xlabel(f"multiply-adds (G) at {res}×{res}")
    else:
        device = next(r.latency.device for r in rows if r.latency is not None)
        ax.set_xlabel(f"median latency (ms) at {res}×{res}, batch 1, {device}")
    ax.set_ylabel("ImageNet top-1 (%, reported at 224)")
    if no_top1:
        ax.set_title(textwrap.shorten("No top-1 reported, not shown: " + ", ".join(no_top1), 70), fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- Depth lab -----------------------------------------------------------------------------
# One line per model, a fixed colour per model across every chart; downsampling blocks
# (projection shortcuts) drawn as black-edged crosses wherever blocks are plotted.

_COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
_DOWN = dict(marker="X", s=70, edgecolors="black", linewidths=0.8, zorder=3)


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


class _PlainLog(LogFormatter):
    """LogFormatter's choice of which ticks to label, written as plain numbers ("0.3", "1e+04")."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_y(ax) -> None:
    """Log scale with plain-text tick labels ("0.01", "3", "1e+04"), minor ones on short ranges.

    The default labels are mathtext, whose parser is shared and not thread-safe: two
    requests drawing at once (or gradio saving one figure while the next is drawn) broke it.
    """
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(_PlainLog())
    ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False))


def _legend_name(a: Analysis) -> str:
    return f"{a.model} ({a.num_blocks} blocks)"


def _figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (7.6, 3.9)) -> tuple[Figure, object]:
    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _down_handle() -> Line2D:
    return Line2D([], [], linestyle="none", marker="X", markersize=8, markerfacecolor="white",
                  markeredgecolor="black", label="downsampling block (projection shortcut)")


def _finish(fig: Figure, ax, extra: list | None = None) -> Figure:
    handles, labels = ax.get_legend_handles_labels()
    for h in extra or []:
        handles.append(h)
        labels.append(h.get_label())
    # Beside the axes, so it never hides a line.
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def per_block(analyses: list[Analysis], value: Callable[[BlockStats], float], title: str, ylabel: str,
              log: bool = False) -> Figure | None:
    """``value`` of every block against relative depth (block / blocks), one line per model."""
    if not analyses:
        return None
    fig, ax = _figure(title, "relative depth (block number / number of blocks)", ylabel)
    for i, a in enumerate(analyses):
        xs, ys = relative_depths(a), [value(b) for b in a.blocks]
        ax.plot(xs, ys, "o-", color=_color(i), markersize=3, linewidth=1.4, label=_legend_name(a))
        down = [(x, y) for x, y, b in zip(xs, ys, a.blocks) if b.downsample]
        if down:
            ax.scatter(*zip(*down), color=_color(i), **_DOWN)
    if log:
        _log_y(ax)
    ax.set_xlim(0, 1.02)
    return _finish(fig, ax, [_down_handle()])


def response_std(analyses: list[Analysis]) -> Figure | None:
    # Log scale: depths can differ by orders of magnitude, and the claim is about ratios.
    return per_block(analyses, lambda b: b.response_std, "Layer responses: std of each block's 3×3 output after BN",
                     "std of bn2 output (log scale)", log=True)


def response_std_sorted(analyses: list[Analysis]) -> Figure | None:
    """Each model's responses sorted from largest to smallest, against the rank (paper Fig. 7, bottom)."""
    if not analyses:
        return None
    fig, ax = _figure("Layer responses sorted by magnitude (as in the paper's Fig. 7)",
                      "blocks, sorted by response (largest first)", "std of bn2 output (log scale)")
    for i, a in enumerate(analyses):
        ys = sorted((b.response_std for b in a.blocks), reverse=True)
        ax.plot(range(1, len(ys) + 1), ys, "-", color=_color(i), linewidth=1.6, label=_legend_name(a))
    _log_y(ax)
    return _finish(fig, ax)


def residual_ratio(analyses: list[Analysis]) -> Figure | None:
    return per_block(analyses, lambda b: b.residual_ratio, "How much each block changes its input",
                     "‖F(x)‖ / ‖shortcut(x)‖")


def grad_norm(analyses: list[Analysis]) -> Figure | None:
    return per_block(analyses, lambda b: b.grad_norm, "Gradient of the target logit reaching each block",
                     "‖∂z_target / ∂x_block‖ (log scale)", log=True)


def _target_name(analyses: list[Analysis]) -> str:
    """The shared target's name, for titles; the models may each use their own top-1."""
    return (f"target: {analyses[0].target.label}" if len({a.target.index for a in analyses}) == 1
            else "target: each model's top-1")


def lesion(analyses: list[Analysis]) -> Figure | None:
    """p(target) with each block's residual branch deleted; dashed: the undamaged network."""
    done = [a for a in analyses if a.blocks and a.blocks[0].lesion is not None]
    if not done:
        return None
    fig = per_block(done, lambda b: b.lesion.prob,
                    f"Lesion study: one block's residual branch deleted\n({_target_name(done)})",
                    "p(target) with that block deleted")
    ax = fig.axes[0]
    for i, a in enumerate(done):
        if a.baseline_prob is not None:
            ax.axhline(a.baseline_prob, color=_color(i), linestyle="--", linewidth=1, alpha=0.8)
    ax.set_ylim(-0.02, 1.02)
    fig.set_size_inches(7.6, 5.2)
    return _finish(fig, ax, [_down_handle(), Line2D([], [], color="gray", linestyle="--",
                                                   label="no block deleted")])


def deletions(analyses: list[Analysis]) -> Figure | None:
    """Mean p(target) and the share of draws keeping the top-1, against k random identity blocks deleted."""
    done = [a for a in analyses if a.deletions]
    if not done:
        return None
    fig = Figure(figsize=(7.6, 5.2), dpi=100, layout="constrained")
    upper, lower = fig.subplots(2, 1, sharex=True)
    for i, a in enumerate(done):
        ks = [d.k for d in a.deletions]
        upper.plot(ks, [d.prob_mean for d in a.deletions], "o-", color=_color(i), markersize=4,
                   label=_legend_name(a))
        lower.plot(ks, [d.top1_kept * 100 for d in a.deletions], "o-", color=_color(i), markersize=4)
    upper.set_title(f"k random identity blocks deleted at once\n({_target_name(done)})", fontsize=11)
    upper.set_ylabel("mean p(target)")
    lower.set_ylabel("top-1 unchanged\n(% of draws)")
    lower.set_xlabel("k, blocks deleted at once (seeded random draws)")
    top = max(d.k for a in done for d in a.deletions)
    ticks = [0] + [2 ** e for e in range(top.bit_length()) if 2 ** e <= top]
    lower.set_xscale("symlog", base=2, linthresh=1)  # k doubles from one point to the next
    lower.set_xticks(ticks, [str(k) for k in ticks])
    lower.minorticks_off()
    for ax in (upper, lower):
        ax.grid(alpha=0.3)
    upper.set_ylim(-0.02, 1.02)
    lower.set_ylim(-2, 102)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def depth_lab(analyses: list[Analysis]) -> list[Figure | None]:
    """The six Depth lab charts, in the tab's order."""
    return [response_std(analyses), response_std_sorted(analyses), residual_ratio(analyses), grad_norm(analyses),
            lesion(analyses), deletions(analyses)]
def faithfulness_curves(curves: list[tuple[str, Faithfulness]], target: str = "") -> Figure | None:
    """Deletion and insertion curves side by side, one line per (name, scores), AUCs in the legends."""
    if not curves:
        return None
    fig = Figure(figsize=(7.6, 2.9), dpi=100)
    left, right = fig.subplots(1, 2, sharey=True)
    for name, f in curves:
        left.plot(f.fractions, f.deletion_curve, marker=".", label=f"{name}: {f.deletion_auc:.3f}")
        right.plot(f.fractions, f.insertion_curve, marker=".", label=f"{name}: {f.insertion_auc:.3f}")
    prob = f"p({target})" if target else "target probability"
    left.set_title("Deletion: top pixels removed first\n(area: lower is better)", fontsize=9)
    right.set_title("Insertion: top pixels restored first\n(area: higher is better)", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("fraction of pixels", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, title="area", title_fontsize=7)
    left.set_ylabel(prob, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))  # room above for gr.Plot's label badge
    return fig
def agreement_heatmap(models: list[str], matrix) -> Figure:
    """Depth x depth: the share of images on which two models give the same top-1."""
    n = len(models)
    size = 1.6 + 0.9 * n
    fig = Figure(figsize=(size + 1.0, size), dpi=100)
    ax = fig.add_subplot()
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(n), models, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(n), models, fontsize=9)
    for i in range(n):
        for j in range(n):
            v = float(matrix[i][j])
            ax.text(j, i, f"{v * 100:.0f}%", ha="center", va="center", fontsize=9,
                    color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="same top-1")
    ax.set_title("Agreement between depths", fontsize=10)
    fig.tight_layout()
    return fig


def map_agreement_heatmap(models: list[str], spearman, iou) -> Figure | None:
    """Depth x depth: Spearman's ρ between two depths' maps (colour), with the IoU of their top-20 % regions."""
    n = len(models)
    if n < 2:
        return None
    size = 1.6 + 0.9 * n
    # Constrained layout keeps the longest model names and the colour bar inside the picture; the
    # top 8 % stays empty for gr.Plot's label badge (the badge names the chart, so no title).
    fig = Figure(figsize=(size + 1.4, size + 0.3), dpi=100, layout="constrained")
    fig.get_layout_engine().set(rect=(0, 0, 1, 0.92))
    ax = fig.add_subplot()
    rho = np.array([[np.nan if v is None else float(v) for v in row] for row in spearman])
    overlap = np.array([[np.nan if v is None else float(v) for v in row] for row in iou])
    im = ax.imshow(np.ma.masked_invalid(rho), vmin=-1.0, vmax=1.0, cmap="coolwarm")
    # Custom zoo names can be long: shortened, so that a slanted first label stays in the picture.
    names = [m if len(m) <= 12 else m[:11] + "…" for m in models]
    ax.set_xticks(range(n), names, rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(n), names, fontsize=9)
    for i in range(n):
        for j in range(n):
            r, o = rho[i, j], overlap[i, j]
            text = ("ρ –" if np.isnan(r) else f"ρ {r:.2f}") + "\n" + ("IoU –" if np.isnan(o) else f"IoU {o:.2f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7 if n > 4 else 8,
                    color="white" if not np.isnan(r) and abs(r) > 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Spearman ρ of the maps")
    return fig


def sanity_chart(series: list[tuple[str, list]], verdict_at: list[str], threshold: float,
                 title: str = "") -> Figure | None:
    """Similarity with the original map against the randomization step: |rank|, signed rank, SSIM.

    ``series``: (name, steps) per line, each step a ``zoo.sanity.Step``; ``verdict_at``: the
    step of each series after which fc and layer4 are random (dashed). Series with the same
    steps share named ticks; otherwise (every block of different depths) the x axis is the
    share of the cascade randomized.
    """
    if not series:
        return None
    names = [[s.randomized for s in steps] for _, steps in series]
    same = all(n == names[0] for n in names)
    fig = Figure(figsize=(9.6, 3.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    panels = (("spearman_abs", "rank correlation of |map|"), ("spearman", "rank correlation, signed"),
              ("ssim", "SSIM"))
    for ax, (key, label) in zip(axes, panels):
        for i, ((name, steps), verdict) in enumerate(zip(series, verdict_at)):
            n = len(steps)
            xs = list(range(n)) if same else [k / max(1, len(names[i]) - 1) for k in range(n)]
            ys = [getattr(s, key) for s in steps]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker=".", color=_color(i), label=name)
            if verdict in names[i]:
                k = names[i].index(verdict)
                x = k if same else k / max(1, len(names[i]) - 1)
                ax.axvline(x, color=_color(i) if not same else "#888888", ls="--", lw=0.8)
        ax.axhline(threshold, color="#aa3333", ls=":", lw=0.9)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if same:
            ticks = names[0]
            every = max(1, len(ticks) // 12)
            ax.set_xticks(range(0, len(ticks), every), [ticks[k] for k in range(0, len(ticks), every)],
                          rotation=45, ha="right")
        else:
            ax.set_xlabel("share of the cascade randomized", fontsize=8)
    axes[0].set_ylabel("similarity with the original map", fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


# --- Error surfaces (zoo.landscape) ----------------------------------------------------------
# Every depth on one colour scale, logarithmic: losses around trained weights span orders of
# magnitude, and the claim (smooth and nearly convex, or chaotic) is about shape, not level.

LOSS_FLOOR = 1e-3  # cross-entropies below this are drawn at it (a log scale has no 0)


def _loss_array(ls: Landscape):
    import numpy as np

    z = ls.grid()
    z[~np.isfinite(z)] = np.nan  # an overflowed point is left blank, not drawn as a peak
    return np.maximum(z, LOSS_FLOOR)


def landscape_figure(landscapes: list[Landscape]) -> Figure | None:
    """2-D: per depth a filled contour and a 3-D surface; 1-D: every depth's curve on one plot.

    One shared, logarithmic colour scale (and z range) for all depths, so they compare honestly.
    """
    import numpy as np
    from matplotlib.colors import LogNorm

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
            ax.plot(ls.alphas, z[0], "o-", color=_color(i), markersize=3, linewidth=1.5,
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
            ax.plot(ls.alphas, z[0], "o-", color=_color(r))
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
    from matplotlib.colors import Normalize

    return Normalize(vmin=lo, vmax=hi)
