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
