"""Accuracy against cost, one point per depth (matplotlib figures for ``gr.Plot``)."""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure

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
