"""The Robustness tab's charts (Plotly, in ``gr.Plot``): built with ``ui.charts``' shared helpers.

* ``probability_heatmaps``: one panel per depth, corruption (rows) x severity (columns, 0 = the
  clean crop), coloured by the target class's probability on one 0-1 scale;
* ``severity_lines``: for one corruption, the target's probability against severity, one line per
  depth (click a legend entry to hide that depth); a cross marks a severity where that depth's
  top-1 is no longer its clean top-1;
* ``accuracy_lines``: a folder's top-1 accuracy against severity per depth, averaged over the
  corruptions of the run.

Tooltips name the depth, the corruption, the severity and the value. They take the arrays of
``zoo.robustness_sweep.Sweep`` / ``zoo.robustness_folder.FolderSummary`` (numpy only; ``ui`` never imports torch).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from . import charts
from .charts import Chart, _literal, color, depth_label, figure, hover

COLORSCALE = "Viridis"


def _label(corruptions: Sequence[str], labels: dict[str, str] | None) -> list[str]:
    return [(labels or {}).get(c, c) for c in corruptions]


def probability_heatmaps(models: Sequence[str], corruptions: Sequence[str], severities: Sequence[int],
                         clean_p: np.ndarray, target_p: np.ndarray, top1: np.ndarray, class_labels: Sequence[str],
                         target_label: str, corruption_labels: dict[str, str] | None = None) -> Chart:
    """Per depth, p(target) for every corruption x severity; column 0 is the clean crop.

    ``clean_p`` (M,), ``target_p`` (M, C, S), ``top1`` (M, C, S) class indices (-1: not scored yet, NaN p).
    """
    n = len(models)
    rows = _label(corruptions, corruption_labels)
    xs = [0, *severities]
    grid = dict(rows=1, cols=n, shared_yaxes=True, horizontal_spacing=0.012 if n > 3 else 0.03,
                # Four or five panels share a phone's width (~35 px each): the depth alone fits ("ResNet-"
                # is in the chart's title).
                subplot_titles=[depth_label(m).removeprefix("ResNet-") if n > 3 else depth_label(m)
                                for m in models]) if n > 1 else {}
    per = ", per depth" if n <= 3 or not all(m.startswith("resnet") for m in models) else ", per ResNet depth"
    title = f"p({_literal(target_label)})<br>per corruption and severity" + (
        per if n > 1 else f", {depth_label(models[0])}")
    fig = figure("robustness-heatmap", title, height=150 + 19 * len(corruptions), **grid)
    for i, model in enumerate(models):
        z = [[float(clean_p[i])] + [float(v) for v in target_p[i, c]] for c in range(len(corruptions))]
        z = [[None if not np.isfinite(v) else v for v in row] for row in z]
        tops = [["clean"] + [class_labels[int(t)] if int(t) >= 0 else "not scored yet" for t in top1[i, c]]
                for c in range(len(corruptions))]
        fig.add_trace(go.Heatmap(
            z=z, x=xs, y=rows, zmin=0.0, zmax=1.0, colorscale=COLORSCALE, name=depth_label(model),
            showscale=i == n - 1, showlegend=False, xgap=1, ygap=1, customdata=tops,
            colorbar=dict(title=dict(text="p", side="top"), thickness=10, len=0.9),
            hovertemplate=hover(depth_label(model), ("corruption", "%{y}"), ("severity", "%{x}"),
                                (f"p({target_label})", "%{z:.3f}"), ("top-1", "%{customdata}"))),
            **({"row": 1, "col": i + 1} if n > 1 else {}))
    # Severity 0 is the clean crop; rows read top-down in the table's order.
    # 0 is the clean crop (the axis title says so): one digit per column fits a phone's narrow panels.
    fig.update_xaxes(tickvals=xs, ticktext=[str(x) for x in xs], tickangle=0, showgrid=False,
                     showline=False, ticks="", tickfont=dict(size=10))
    fig.update_yaxes(autorange="reversed", showgrid=False, showline=False, ticks="", tickfont=dict(size=10))
    fig.update_xaxes(title_text="severity (0 = clean)", **({"row": 1, "col": (n + 1) // 2} if n > 1 else {}))
    fig.update_annotations(font_size=12)
    fig.update_layout(margin=dict(l=10, r=10, t=85, b=10))  # the title's two lines, then the depths
    return fig


def severity_lines(models: Sequence[str], severities: Sequence[int], corruption: str, clean_p: np.ndarray,
                   target_p: np.ndarray, clean_top1: np.ndarray, top1: np.ndarray, class_labels: Sequence[str],
                   target_label: str) -> Chart:
    """For one corruption: p(target) against severity (0 = clean), one line per depth.

    ``target_p`` / ``top1``: (M, S) for that corruption. A cross marks a severity at which the depth's
    top-1 is not its clean top-1 (its answer flipped).
    """
    fig = figure("robustness-lines", f"p({_literal(target_label)})<br>under {_literal(corruption)}, per depth",
                 x="severity",
                 y="probability of the class", height=380)
    xs = [0, *severities]
    for i, model in enumerate(models):
        ys = [float(clean_p[i]), *[float(v) for v in target_p[i]]]
        tops = [int(clean_top1[i]), *[int(t) for t in top1[i]]]
        names = [class_labels[t] if t >= 0 else "not scored yet" for t in tops]
        flipped = ["yes" if t >= 0 and t != tops[0] else "no" for t in tops]
        symbols = ["x" if f == "yes" else "circle" for f in flipped]
        charts.add_line(fig, name=depth_label(model), i=i, x=xs, y=ys, marker={"symbol": symbols, "size": 8},
                       custom={"corruption": [corruption] * len(xs), "top-1": names, "top-1 changed": flipped},
                       hover=hover(depth_label(model), ("corruption", "%{customdata[0]}"), ("severity", "%{x}"),
                                   (f"p({target_label})", "%{y:.3f}"), ("top-1", "%{customdata[1]}"),
                                   ("top-1 changed", "%{customdata[2]}")))
    fig.update_xaxes(tickvals=xs, ticktext=["clean", *map(str, severities)])
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def accuracy_lines(models: Sequence[str], severities: Sequence[int], clean: np.ndarray, accuracy: np.ndarray,
                   corruptions: Sequence[str]) -> Chart:
    """A folder: top-1 accuracy against severity per depth, the mean over ``corruptions`` (``accuracy``: (M, C, S))."""
    fig = figure("robustness-accuracy", f"Top-1 accuracy, mean over {len(corruptions)} corruption"
                 f"{'' if len(corruptions) == 1 else 's'}", x="severity", y="top-1 accuracy",
                 height=360)
    return _mean_lines(fig, models, severities, [float(c) for c in clean], accuracy, corruptions, "top-1 accuracy")


def changed_lines(models: Sequence[str], severities: Sequence[int], changed: np.ndarray,
                  corruptions: Sequence[str]) -> Chart:
    """A folder without labels: the share of images whose top-1 differs from the clean crop's, against
    severity per depth, the mean over ``corruptions`` (``changed``: (M, C, S), fractions)."""
    fig = figure("robustness-top1-changed", f"Top-1 changed from clean (mean of {len(corruptions)})",
                 x="severity", y="images whose top-1 changed",
                 height=360)
    return _mean_lines(fig, models, severities, [0.0] * len(models), changed, corruptions, "top-1 changed")


def _mean_lines(fig: Chart, models: Sequence[str], severities: Sequence[int], clean: Sequence[float],
                values: np.ndarray, corruptions: Sequence[str], what: str) -> Chart:
    """One line per depth: ``clean[i]`` at severity 0, then ``values[i]`` (C, S) averaged over the
    corruptions at each severity; shares, drawn as percentages."""
    xs = [0, *severities]
    for i, model in enumerate(models):
        with np.errstate(all="ignore"):
            mean = np.nanmean(values[i], axis=0) if values[i].size else np.full(len(severities), np.nan)
        charts.add_line(fig, name=depth_label(model), i=i, x=xs, y=[clean[i], *map(float, mean)],
                       custom={"corruptions": ["none"] + [f"mean of {len(corruptions)}"] * len(severities)},
                       hover=hover(depth_label(model), ("corruption", "%{customdata[0]}"), ("severity", "%{x}"),
                                   (what, "%{y:.1%}")))
    fig.update_xaxes(tickvals=xs, ticktext=["clean", *map(str, severities)])
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    return fig


__all__ = ["probability_heatmaps", "severity_lines", "accuracy_lines", "changed_lines", "color"]
