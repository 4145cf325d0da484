"""Figures for ``gr.Plot`` (matplotlib): accuracy against cost; deletion and insertion curves."""

from __future__ import annotations

from matplotlib.figure import Figure

from zoo.faithfulness import Faithfulness
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
