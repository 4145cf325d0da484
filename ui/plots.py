"""Accuracy against cost, one point per depth (matplotlib figures for ``gr.Plot``)."""

from __future__ import annotations

from matplotlib.figure import Figure

from zoo.stats import ZooRow


def accuracy_vs(rows: list[ZooRow], x: str) -> Figure | None:
    """Top-1 against ``x`` = "macs" (measured multiply-adds) or "latency" (median ms)."""
    pts = []
    for r in rows:
        if r.top1 is None:
            continue
        if x == "macs":
            pts.append((r.macs / 1e9, r.top1, r.name))
        elif r.latency is not None:
            pts.append((r.latency.median_ms, r.top1, r.name))
    if not pts:
        return None
    fig = Figure(figsize=(5.2, 3.6), dpi=100)
    ax = fig.add_subplot()
    xs, ys, names = zip(*pts)
    ax.plot(xs, ys, "o-", color="#3b6fb6")
    for px, py, n in pts:
        ax.annotate(n, (px, py), textcoords="offset points", xytext=(5, -12), fontsize=8)
    ax.set_xlabel("multiply-adds (G) at 224×224" if x == "macs" else f"median latency (ms), {rows[0].latency.device}"
                  if rows[0].latency else "latency (ms)")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
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
