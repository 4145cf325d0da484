"""The Model zoo tab's table, the published references under it, per-stage table, notes and charts, from ``zoo.features.zoo_table``'s
``ZooTable``: plain functions, testable without building the page.

The table is built by one function (``zoo_headers`` and ``zoo_table``, column for column): a
new column is added to both, and its width to ``ZOO_COLUMN_WIDTHS``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go

from zoo.features.zoo_table import ZooTable
from zoo.published import FIELDS as PUBLISHED_FIELDS
from zoo.stats import StageStats, ZooRow

from ..charts import Chart, add_line, csv_files, depth_label, figure, hover, message

PAPER_RESOLUTION = 224  # the paper's Table 1 counts multiply-adds for 224x224 inputs


def paper_scale(resolution: int) -> float:
    """How many times the multiply-adds grow from 224x224 to ``resolution`` (the pixel count; fc aside)."""
    return (resolution / PAPER_RESOLUTION) ** 2


def zoo_headers(resolution: int) -> list[str]:
    """Short headers, so that all 13 columns fit at 1400 px; the resolution is in the measured one."""
    return ["model", "layers", "blocks", "block", "params", f"GMACs at {resolution} px",
            f"paper GMACs (at {PAPER_RESOLUTION} px)", "GFLOPs", "file MB", "top-1 %", "top-5 %",
            "latency ms (p10–p90)", "cached"]


ZOO_HEADERS = zoo_headers(PAPER_RESOLUTION)
# Column widths, in pixels: gradio applies them to the header and the body alike (so they
# stay aligned) and wraps text between words inside them (wrap=True). Percentages were
# shares of the table's box: on a 400 px phone they gave 33 px columns that broke every word
# ("m o d e l"). Fixed widths fit the 1400 px page and, on a phone, the table scrolls
# sideways inside its box with its first column pinned. Each is at least its longest word.
ZOO_COLUMN_WIDTHS = [104, 72, 100, 118, 88, 84, 124, 76, 80, 80, 80, 124, 72]  # 1202 px; the box: 1214
STAGE_COLUMN_WIDTHS = [88, 96, 440, 110, 90, 80]


def zoo_table(rows: list[ZooRow], cached: dict[str, bool]) -> list[list[Any]]:
    out = []
    for r in rows:
        lat = f"{r.latency.median_ms:.1f} ({r.latency.p10_ms:.1f}–{r.latency.p90_ms:.1f})" if r.latency else "–"
        paper = f"{r.paper_flops / 1e9:.1f}"
        if r.resolution != PAPER_RESOLUTION:  # the paper's figure as printed, and scaled to compare
            paper += f" (≈ {r.paper_flops * paper_scale(r.resolution) / 1e9:.1f} at {r.resolution})"
        out.append([
            r.name, r.layers, "-".join(map(str, r.blocks_per_stage)), r.block, f"{r.params / 1e6:.2f} M",
            f"{r.macs / 1e9:.2f}", paper, f"{r.flops / 1e9:.2f}",
            f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "–",
            f"{r.top1:.2f}" if r.top1 is not None else "–", f"{r.top5:.2f}" if r.top5 is not None else "–",
            lat, "yes" if cached.get(r.name) else "no",
        ])
    return out


def resolution_note(resolution: int) -> str:
    """What the numbers are measured at, and how to read the paper's 224-px column beside them."""
    if resolution == PAPER_RESOLUTION:
        return (f"Measured at {resolution}×{resolution}, the resolution of the paper's Table 1, so the measured "
                "and paper columns compare directly.")
    return (f"Measured at **{resolution}×{resolution}**. The paper's figures are for {PAPER_RESOLUTION}×"
            f"{PAPER_RESOLUTION}; multiply-adds grow with the number of pixels, so the paper column also shows "
            f"them scaled by ({resolution}/{PAPER_RESOLUTION})² = {paper_scale(resolution):.2f} (≈; the fc layer "
            "does not grow, but it is under 0.1% of the total). Latency and the plots are at "
            f"{resolution}×{resolution} too; accuracy is as reported, at {PAPER_RESOLUTION}.")


# The published references (zoo.published): a second, small table under the zoo table, so that
# the main one keeps its 13 columns in view at 1400 px. Columns in zoo.published.FIELDS' order.
PUBLISHED_TITLE = "Published, ImageNet variants, not your data"
PUBLISHED_HEADERS = ["model", "ImageNet-V2 top-1 %", "ReaL top-1 %", "R top-1 %", "Sketch top-1 %", "A top-1 %",
                     "ImageNet-C mCE % (lower is better)"]
PUBLISHED_COLUMN_WIDTHS = [104, 120, 110, 100, 110, 100, 160]
NO_PUBLISHED = ("No model in this zoo carries published figures (the built-in weights do; a custom entry may add "
                "a `[model.published]` table with its source).")


def published_cells(published: dict[str, Any] | None) -> list[str]:
    """One model's published figures, in ``PUBLISHED_HEADERS``' order after the name ("–": no source gives it)."""
    p = published or {}
    return [f"{p[k]:.2f}" if p.get(k) is not None else "–" for k in PUBLISHED_FIELDS]


def published_table(rows: list[ZooRow]) -> list[list[Any]]:
    """The models that carry published figures (built-in weights, custom entries with a
    ``[model.published]`` table), one row each."""
    return [[r.name, *published_cells(r.published)] for r in rows if r.published]


def published_note(rows: list[ZooRow]) -> str:
    """What the published table is and where each figure comes from (models sharing a source named once)."""
    by_source: dict[str, list[str]] = {}
    notes = []
    for r in rows:
        if r.published:
            by_source.setdefault(r.published.get("source") or "no source given", []).append(r.name)
            if r.published.get("notes"):
                notes.append(f"{r.name}: {r.published['notes']}")
    if not by_source:
        return NO_PUBLISHED
    lines = [f"**{PUBLISHED_TITLE}.** Top-1 on ImageNet's variant test sets and ImageNet-C's mean corruption error "
             "as published for these weights, not measured here; never mixed into the figures measured on "
             "your images. Sources:"]
    lines += [f"* {', '.join(names)}: {source}" for source, names in by_source.items()]
    lines += [f"* {n}" for n in notes]
    return "\n".join(lines)


STAGE_HEADERS = ["stage", "output", "layout", "params", "MMACs", "share"]


def stage_table(rows: list[StageStats]) -> list[list[Any]]:
    return [[r.stage, f"{r.output_size}×{r.output_size}", r.layout, f"{r.params:,}", f"{r.macs / 1e6:.1f}",
             f"{r.share * 100:.1f}%"] for r in rows]


def accuracy_vs(rows: list[ZooRow], x: str) -> Chart:
    """Top-1 against ``x`` = "macs" (measured multiply-adds) or "latency" (median ms).

    Axes name the resolution the costs were measured at; models without a reported
    top-1 are left out and named; with nothing to plot, the chart says why.
    """
    name = f"zoo-top1-vs-{x}"
    if not rows:
        return message("No models to plot.", name)
    res = rows[0].resolution
    if x == "latency" and all(r.latency is None for r in rows):
        return message("Latency not measured yet: tick 'Measure latency' to time every model on this "
                       "device and plot top-1 against it.", name)
    no_top1 = [r.name for r in rows if r.top1 is None]
    pts = [r for r in rows if r.top1 is not None and (x == "macs" or r.latency is not None)]
    if not pts:
        return message(f"Nothing to plot: {', '.join(no_top1)} {'has' if len(no_top1) == 1 else 'have'} "
                       "no reported top-1 accuracy. Add top1 = ... to a model's entry in your zoo file "
                       "to place it here.", name)
    if x == "macs":
        xlabel = f"multiply-adds (G) at {res}×{res}"
        xs = [r.macs / 1e9 for r in pts]
        rows_hover = [("multiply-adds", "%{x:.2f} G"), ("top-1", "%{y:.2f} %"), ("parameters", "%{customdata[1]}")]
    else:
        device = next(r.latency.device for r in rows if r.latency is not None)
        xlabel = f"median latency (ms) at {res}×{res}, batch 1, {device}"
        xs = [r.latency.median_ms for r in pts]
        rows_hover = [("median latency", "%{x:.1f} ms"), ("p10–p90", "%{customdata[2]}"), ("top-1", "%{y:.2f} %")]
    title = ("No top-1 reported, not shown: " + ", ".join(no_top1)) if no_top1 else ""
    fig = figure(name, textwrap.shorten(title, 70) if title else "", xlabel, "ImageNet top-1 (%, reported at 224)",
                 height=380)
    # One trace per model: each has its own tooltip and legend entry (click to hide it).
    fig.add_trace(go.Scatter(x=xs, y=[r.top1 for r in pts], mode="lines", line=dict(color="#3b6fb6", width=1.2),
                             hoverinfo="skip", showlegend=False, name=""))
    for i, (r, xv) in enumerate(zip(pts, xs)):
        lat = f"{r.latency.p10_ms:.1f}–{r.latency.p90_ms:.1f} ms" if r.latency else "not measured"
        right = xv > 0.7 * max(xs)  # its name to the left, inside the plot
        add_line(fig, name=r.name, i=i, x=[xv], y=[r.top1], mode="markers+text", text=[r.name],
                 textposition="bottom left" if right else "bottom right", textfont=dict(size=10),
                 custom={"model": [r.name], "parameters": [f"{r.params / 1e6:.1f} M"], "latency p10–p90": [lat]},
                 hover=hover(depth_label(r.name), *rows_hover), marker=dict(size=9))
    return fig


def table_rows(table: ZooTable) -> list[list[Any]]:
    """The zoo table's cells for ``table`` (its rows, and whether each file is cached)."""
    return zoo_table(table.rows, table.cached)


def charts(table: ZooTable) -> tuple[Chart, Chart]:
    """Top-1 against multiply-adds, and against latency (which says when it was not measured)."""
    return accuracy_vs(table.rows, "macs"), accuracy_vs(table.rows, "latency")


def chart_data(figs: Sequence[Chart], folder: Path) -> list[str]:
    """The charts' data as CSV files in ``folder``, for the tab's download box."""
    return csv_files(figs, folder)


def downloaded(done: Sequence[tuple[Any, Path]]) -> str:
    """What the Download button reports: each model's file size, verified."""
    return "\n\n".join(f"{spec.name}: {Path(path).stat().st_size / 1e6:.0f} MB, verified"
                        for spec, path in done) or "Pick at least one model."
