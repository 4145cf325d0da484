"""Charts for ``gr.Plot``: Plotly figures you read by hovering, and their data as CSV.

How to add a chart (the conventions every tab follows; see ``ui.views.depth_lab.per_block`` for a full example)::

    fig = charts.figure("lab-response", "Layer responses", x="relative depth", y="std", log_y=True)
    for i, a in enumerate(analyses):
        charts.add_line(fig, name=f"{a.model} ({a.num_blocks} blocks)", i=i, x=xs, y=ys,
                       custom={"block": names}, hover=charts.hover(charts.depth_label(a.model),
                       ("block", "%{customdata[0]}"), ("std", "%{y:.3g}")))
    return fig                                     # into a gr.Plot
    paths = charts.csv_files([fig, ...], folder)    # into a gr.File: the data of every chart

* ``figure(name, title, x, y, ...)`` starts a ``Chart``: the shared theme (white, grid, legend under the
  plot so a 400 px phone keeps its width, click a legend entry to hide that depth), log axes on request.
  ``name`` names the PNG the modebar's camera saves (client side, no server work) and the CSV.
* One trace per depth (or method), coloured ``color(i)``: the same depth keeps its colour across charts.
* ``hover(title, (label, field), ...)``: the tooltip. ``title`` is literal text (escaped here), the depth
  as ``depth_label`` writes it ("ResNet-50"); fields are Plotly template fields: ``%{y:.3g}``,
  ``%{customdata[0]}`` (the ``custom`` columns, in order). Tooltips name the block, the depth and the value.
* ``custom={"column": values}`` on ``add_line``: per-point data for the tooltip, and extra CSV columns.
* ``csv_file(fig, folder)`` / ``csv_files(figs, folder)``: every trace's points, one row each, with
  the axis titles as headers and the ``custom`` columns; heatmaps as row, column, value(s).
* ``message(text)``: a chart that says why there is nothing to plot.

Why PNG from the browser and not the server: Plotly's server-side export (kaleido) drives a headless
Chrome, which a Space does not have and which would cost seconds per chart; the modebar's camera
renders the PNG in the visitor's browser from the figure on the page, at twice its size.

``ui`` never imports torch: the charts take what ``zoo`` returns. The error surfaces (3-D surfaces
beside contours) are matplotlib figures, in ``ui.figures``.
"""

from __future__ import annotations

import csv
import html
import json
import re
import textwrap
from pathlib import Path
from typing import Any, Iterable, Sequence

import gradio as gr
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from zoo.faithfulness import Faithfulness

COLORS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
HEIGHT = 420  # px; gr.Plot takes the width of its column


def color(i: int) -> str:
    """The i-th series' colour: pass each depth's position in the chosen list, so it keeps its colour."""
    return COLORS[i % len(COLORS)]


def depth_label(model: str) -> str:
    """ "resnet50" -> "ResNet-50"; any other zoo name as it is."""
    m = re.fullmatch(r"resnet(\d+)", model)
    return f"ResNet-{m.group(1)}" if m else model


class Chart(go.Figure):
    """A Plotly figure that carries its modebar settings to gr.Plot (which reads ``config`` from the JSON)."""

    def to_json(self, *args: Any, **kwargs: Any) -> str:
        data = json.loads(super().to_json(*args, **kwargs))
        if not data["layout"].get("title", {}).get("text"):
            # gradio's gr.Plot gives any figure with a "title" key (Plotly writes an empty one)
            # a 100 px top margin, under its label badge: the plot lost that much height.
            data["layout"].pop("title", None)
        room = _legend_room(self)
        if room:
            # The legend at the bottom of the picture, the x axis's labels and title above it: a
            # legend placed relative to the plot would overlap them wherever the plot is short.
            # The picture grows by the legend's rows: taken from the plot, 13 methods' names
            # left it 3 px tall.
            data["layout"]["legend"].update(yref="container", y=0.0, yanchor="bottom")
            data["layout"]["margin"]["b"] = AXIS_ROOM + room
            data["layout"]["height"] = (self.layout.height or HEIGHT) + room
        data["config"] = {
            "displaylogo": False,
            "modeBarButtonsToRemove": ["select2d", "lasso2d"],
            "toImageButtonOptions": {"format": "png", "filename": chart_name(self), "scale": 2},
        }
        return json.dumps(data)


AXIS_ROOM = 62  # px under the plot for the x axis's tick labels and title
LEGEND_WIDTH = 340  # px a legend row is assumed to have: a phone's (a wider page has room to spare)


def _legend_room(fig: go.Figure) -> int:
    """Pixels for the legend's rows at a phone's width (0: no legend)."""
    names = [t.name for t in fig.data if t.name and t.showlegend is not False]
    if not names or fig.layout.showlegend is False:
        return 0
    title = fig.layout.legend.title.text if fig.layout.legend.title else ""
    rows, used = 1, 0.0
    if title:  # on a row of its own (side "top"), as many rows as it needs
        rows += int(7.0 * len(title) // LEGEND_WIDTH) + 1
    for n in names:
        width = 40 + 6.5 * len(n)
        if used and used + width > LEGEND_WIDTH:
            rows, used = rows + 1, 0.0
        used += width
    return 22 * rows + 8


def chart_name(fig: go.Figure) -> str:
    """The chart's file name stem (``figure(name=...)``), for its PNG and CSV."""
    meta = fig.layout.meta
    return str(meta.get("name", "chart")) if isinstance(meta, dict) else "chart"


# Characters per line of a title: Plotly never wraps one, and a phone's chart is ~330 px wide. Chart
# titles are kept this short; axis titles are wrapped (a two-line chart title overflowed the picture's top).
TITLE_CHARS = 42


def _wrap(text: str, width: int) -> str:
    """``text`` with each of its lines (``<br>``) that holds no markup wrapped at ``width`` characters."""
    return "<br>".join(part if "<" in part or len(part) <= width else "<br>".join(textwrap.wrap(part, width))
                       for part in text.split("<br>"))


def _axis(title: str, log: bool = False) -> dict:
    out: dict[str, Any] = dict(title=dict(text=_wrap(title, TITLE_CHARS - 2), font=dict(size=12)), gridcolor="#e5e5e5", zeroline=False,
                               showline=True, linecolor="#999999", ticks="outside", automargin=True)
    if log:
        # At most ~6 labels: Plotly otherwise labels every digit of a short range (1, 2, ... 9), in a jumble.
        out.update(type="log", exponentformat="power", nticks=6)
    return out


def figure(name: str, title: str = "", x: str = "", y: str = "", *, log_x: bool = False, log_y: bool = False,
           height: int = HEIGHT, rows: int = 1, cols: int = 1, **subplots: Any) -> Chart:
    """A themed, empty chart. ``rows``/``cols`` > 1: subplots (``make_subplots`` keywords in ``subplots``);
    their axes are then titled by the caller (``fig.update_xaxes(title_text=..., row=, col=)``)."""
    fig = Chart(make_subplots(rows=rows, cols=cols, **subplots)) if rows * cols > 1 else Chart()
    fig.update_layout(
        meta={"name": name},
        title=dict(text=title, font=dict(size=14), x=0.0, xanchor="left", y=1.0, yanchor="top", yref="container",
                   pad=dict(t=10, l=8)) if title else None,
        height=height, template="plotly_white", font=dict(size=12, color="#333333"),
        # Room for the title's lines (a subtitle is a second line), and the modebar above the plot.
        margin=dict(l=10, r=10, t=(45 + 20 * title.count("<br>")) if title else 30, b=10),
        hovermode="closest", hoverlabel=dict(font_size=12, align="left"),
        # Under the plot, horizontal: beside it, it would take half a phone's width.
        legend=dict(orientation="h", x=0.0, xanchor="left", y=-0.18, yanchor="top", font=dict(size=11),
                    itemclick="toggle", itemdoubleclick="toggleothers"),
    )
    fig.update_xaxes(**_axis(x, log_x))
    fig.update_yaxes(**_axis(y, log_y))
    return fig


def hover(title: str, *rows: tuple[str, str]) -> str:
    """A tooltip: ``title`` in bold (literal text), then one ``label: field`` line per row."""
    lines = [f"<b>{_literal(title)}</b>"] + [f"{_literal(label)}: {field}" for label, field in rows]
    return "<br>".join(lines) + "<extra></extra>"  # <extra>: no second box with the trace name


def _literal(text: str) -> str:
    # Escaped for Plotly's HTML subset; "%{" would start a template field.
    return html.escape(text, quote=False).replace("%{", "%&#123;")


def _floats(values: Iterable[Any]) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        f = None if v is None else float(v)
        out.append(None if f is None or not np.isfinite(f) else f)
    return out


def add_line(fig: go.Figure, *, name: str, i: int, x: Sequence[Any], y: Sequence[Any], hover: str,
             custom: dict[str, Sequence[Any]] | None = None, mode: str = "lines+markers",
             dash: str | None = None, marker: dict | None = None, group: str | None = None,
             showlegend: bool = True, row: int | None = None, col: int | None = None, panel: str | None = None,
             **trace: Any) -> go.Scatter:
    """One series: a line with markers in ``color(i)``, its tooltip, its per-point ``custom`` columns.

    ``group``: traces with the same group hide and show together from one legend entry; ``panel``:
    the subplot's name in the CSV (default: its y axis title).
    """
    custom = custom or {}
    columns = list(custom)
    sc = go.Scatter(
        x=list(x), y=_floats(y), name=name, mode=mode, hovertemplate=hover,
        line=dict(color=color(i), width=1.8, dash=dash), marker={"color": color(i), "size": 6, **(marker or {})},
        customdata=[list(r) for r in zip(*custom.values())] if columns else None,
        meta={"columns": columns, **({"panel": panel} if panel else {})}, legendgroup=group or name, showlegend=showlegend, **trace)
    fig.add_trace(sc, row=row, col=col)
    return sc


def message(text: str, name: str = "chart") -> Chart:
    """A chart that says why there is nothing to plot, instead of an empty box."""
    fig = figure(name, height=300)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    # Lines of at most 40 characters: the text stays inside a phone's 360 px chart.
    fig.add_annotation(text="<br>".join(textwrap.wrap(_literal(text), 40)), x=0.5, y=0.5, xref="paper",
                       yref="paper", showarrow=False, font=dict(size=13, color="#444444"))
    return fig


# --- CSV ---------------------------------------------------------------------------------------


def _axis_title(fig: go.Figure, ref: str) -> str:
    """The title of axis ``x``, ``x2``, ``y3``... of ``fig``."""
    ax = fig.to_dict()["layout"].get(ref[0] + "axis" + ref[1:], {})
    text = ax.get("title", {}).get("text")
    return re.sub(r"<[^>]+>", " ", text or ref).strip()


def csv_rows(fig: go.Figure) -> list[list[Any]]:
    """The chart's data, header first: one row per plotted point (heatmaps: per cell)."""
    traces = [t for t in fig.data if t.type in ("scatter", "heatmap", "bar")]
    custom_cols: list[str] = []
    for t in traces:
        for c in (t.meta or {}).get("columns", []) if isinstance(t.meta, dict) else []:
            if c not in custom_cols:
                custom_cols.append(c)
    if traces and all(t.type == "heatmap" for t in traces):
        header = ["row", "column", *[("value" if not t.name else t.name) for t in traces[:1]], *custom_cols]
        rows: list[list[Any]] = [header]
        t = traces[0]
        for r, yname in enumerate(t.y):
            for c, xname in enumerate(t.x):
                v = t.z[r][c]
                extra = []
                if custom_cols and t.customdata is not None:
                    cd = t.customdata[r][c]
                    extra = list(cd) if isinstance(cd, (list, tuple)) else [cd]
                rows.append([yname, xname, v, *extra])
        return rows
    axes = {(t.xaxis or "x", t.yaxis or "y") for t in traces}
    single = len(axes) == 1
    if single:
        (xr, yr), = axes
        header = ["series", _axis_title(fig, xr), _axis_title(fig, yr), *custom_cols]
    else:
        header = ["series", "panel", "x", "y", *custom_cols]
    rows = [header]
    for t in traces:
        if t.x is None or t.y is None or not t.name:
            continue
        cols = (t.meta or {}).get("columns", []) if isinstance(t.meta, dict) else []
        for k, (xv, yv) in enumerate(zip(t.x, t.y)):
            if xv is None and yv is None:
                continue
            extra = {c: t.customdata[k][j] for j, c in enumerate(cols)} if cols and t.customdata is not None else {}
            panel = [] if single else [t.meta.get("panel") if isinstance(t.meta, dict) and t.meta.get("panel")
                                       else _axis_title(fig, t.yaxis or "y")]
            rows.append([t.name, *panel, xv, yv, *[extra.get(c, "") for c in custom_cols]])
    return rows


def csv_file(fig: go.Figure, folder: Path) -> str:
    """Write the chart's data to ``folder / <name>.csv``; returns the path."""
    path = Path(folder) / f"{chart_name(fig)}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["" if v is None else v for v in r] for r in csv_rows(fig)])
    return str(path)


def csv_files(figs: Iterable[go.Figure | None], folder: Path) -> list[str]:
    """The CSV of every chart that has data (``None`` and ``message`` charts are skipped)."""
    return [csv_file(f, folder) for f in figs if f is not None and any(t.type != "scatter" or t.name for t in f.data)]


# --- Model zoo ---------------------------------------------------------------------------------


# --- Depth lab ---------------------------------------------------------------------------------
# One line per model, a fixed colour per model across every chart; downsampling blocks
# (projection shortcuts) drawn as black-edged crosses wherever blocks are plotted.

def faithfulness_curves(curves: list[tuple[str, Faithfulness]], target: str = "",
                        name: str = "faithfulness-curves", areas: bool = True) -> Chart | None:
    """Deletion and insertion curves side by side, one colour per (name, scores), areas in the legend
    (``areas=False``: names only, for a page that shows the areas in a table; the tooltips have them).

    One legend entry per name hides both of its curves.
    """
    if not curves:
        return None
    prob = f"p({target})" if target else "target probability"
    # Spacing: on a phone the left panel's "100%" and the right one's "0%" collided at 0.1.
    fig = figure(name, height=400, rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.16,
                 subplot_titles=("Deletion<br><sup>top pixels removed first</sup>",
                                 "Insertion<br><sup>top pixels restored first</sup>"))
    fig.update_annotations(font_size=12)
    for i, (label, f) in enumerate(curves):
        legend = f"{label}: deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f}" if areas else label
        fractions = _floats(f.fractions)
        for col, (what, ys, auc) in enumerate((("removed", f.deletion_curve, f.deletion_auc),
                                               ("restored", f.insertion_curve, f.insertion_auc)), start=1):
            add_line(fig, name=legend, i=i, x=fractions, y=ys, group=label, showlegend=col == 1,
                     marker=dict(size=4), row=1, col=col, panel=f"{prob}, pixels {what}",
                     hover=hover(depth_label(label), (f"pixels {what}", "%{x:.0%}"), (prob, "%{y:.3f}"),
                                 ("area", f"{auc:.3f}")))
    fig.update_xaxes(title_text="fraction of pixels", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text=prob, rangemode="tozero", row=1, col=1)
    if areas:
        fig.update_layout(legend_title=dict(text="area (deletion: lower is better; insertion: higher)", side="top"))
    fig.update_layout(margin_t=70)
    return fig


# --- Agreement heatmaps ------------------------------------------------------------------------


def _short(names: list[str]) -> list[str]:
    # Custom zoo names can be long: shortened on the axes, whole in the tooltips.
    return [m if len(m) <= 12 else m[:11] + "…" for m in names]


def _heatmap_axes(fig: go.Figure, models: list[str]) -> None:
    short = _short(models)
    fig.update_xaxes(tickvals=models, ticktext=short, tickangle=-30, showgrid=False, showline=False, ticks="")
    # Cells fill the width (not forced square): wide ones on a desktop, narrow on a phone.
    fig.update_yaxes(tickvals=models, ticktext=short, autorange="reversed", showgrid=False, showline=False,
                     ticks="")


def agreement_heatmap(models: list[str], matrix) -> Chart:
    """Depth x depth: the share of images on which two models give the same top-1."""
    z = [_floats(row) for row in matrix]
    fig = figure("batch-agreement", "Agreement between depths", height=340 + 40 * len(models))
    fig.add_trace(go.Heatmap(z=z, x=list(models), y=list(models), zmin=0.0, zmax=1.0, colorscale="Viridis",
                             name="same top-1", texttemplate="%{z:.0%}", textfont=dict(size=12),
                             colorbar=dict(title=dict(text="same top-1", side="right"), tickformat=".0%",
                                           thickness=12),
                             hovertemplate="<b>%{y} and %{x}</b><br>same top-1 on %{z:.1%} of the images"
                                           "<extra></extra>"))
    _heatmap_axes(fig, list(models))
    return fig


def map_agreement_heatmap(models: list[str], spearman, iou) -> Chart | None:
    """Depth x depth: Spearman's ρ between two depths' maps (colour), with the IoU of their top-20 % regions."""
    n = len(models)
    if n < 2:
        return None
    rho = [_floats(row) for row in spearman]
    overlap = [_floats(row) for row in iou]
    text = [[("ρ –" if r is None else f"ρ {r:.2f}") + "<br>" + ("IoU –" if o is None else f"IoU {o:.2f}")
             for r, o in zip(rr, oo)] for rr, oo in zip(rho, overlap)]
    # The gr.Plot label badge names the chart: no title.
    fig = figure("map-agreement", height=340 + 45 * n)  # a plotting area of 200 px or more for 2 depths
    fig.add_trace(go.Heatmap(z=rho, x=list(models), y=list(models), zmin=-1.0, zmax=1.0, colorscale="RdBu",
                             reversescale=True, name="Spearman ρ", customdata=overlap, meta={"columns": ["IoU top 20 %"]},
                             text=text, texttemplate="%{text}", textfont=dict(size=11 if n <= 3 else 9 if n == 4 else 8),  # 5 cells fit a phone at 8 px
                             # A short colour bar title: on a phone every pixel goes to the cells.
                             colorbar=dict(title=dict(text="ρ", side="top"), thickness=10),
                             hovertemplate="<b>%{y} and %{x}</b><br>Spearman ρ of the maps: %{z:.3f}<br>"
                                           "IoU of the top-20 % regions: %{customdata:.3f}<extra></extra>"))
    _heatmap_axes(fig, list(models))
    return fig


# --- Sanity check ----------------------------------------------------------------------------


def sanity_chart(series: list[tuple[str, list]], verdict_at: list[str], threshold: float,
                 title: str = "", name: str = "sanity-chart") -> Chart | None:
    """Similarity with the original map against the randomization step: |rank|, signed rank, SSIM.

    ``series``: (name, steps) per line, each step a ``zoo.sanity.Step``; ``verdict_at``: the
    step of each series after which fc and layer4 are random (dashed). Series with the same
    steps share named steps on the x axis; otherwise (every block of different depths) the x axis
    is the share of the cascade randomized. Three panels stacked, so a phone keeps them readable;
    a tooltip names the method (or depth), the layers randomized so far and the value.
    """
    if not series:
        return None
    names = [[s.randomized for s in steps] for _, steps in series]
    same = all(n == names[0] for n in names)
    panels = (("spearman_abs", "rank correlation of |map|"), ("spearman", "rank correlation, signed"),
              ("ssim", "SSIM"))
    fig = figure(name, title, height=720, rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                 subplot_titles=[label for _, label in panels])
    fig.update_annotations(font_size=12)
    for row, (key, label) in enumerate(panels, start=1):
        for i, ((who, steps), verdict) in enumerate(zip(series, verdict_at)):
            n = len(steps)
            xs = list(names[i]) if same else [k / max(1, n - 1) for k in range(n)]
            add_line(fig, name=who, i=i, x=xs, y=[getattr(s, key) for s in steps], row=row, col=1,
                     custom={"randomized": [s.randomized for s in steps]}, showlegend=row == 1, group=who,
                     marker=dict(size=5), panel=label,
                     hover=hover(depth_label(who), ("randomized from the top to", "%{customdata[0]}"),
                                 (label, "%{y:.3f}")))
            if verdict in names[i]:
                x = verdict if same else names[i].index(verdict) / max(1, n - 1)
                add_line(fig, name=f"{who}: verdict", i=i, x=[x, x], y=[-1.05, 1.05], row=row, col=1, mode="lines",
                         dash="dash", group=who, showlegend=False, panel=label,
                         hover=hover(depth_label(who), ("verdict", "fc and layer4 random from here")))
        fig.add_hline(y=threshold, line=dict(color="#aa3333", dash="dot", width=1), row=row, col=1)
        fig.update_yaxes(range=[-1.05, 1.05], row=row, col=1)
    if not same:
        fig.update_xaxes(title_text="share of the cascade randomized", row=3, col=1)
    fig.update_yaxes(title_text="similarity with the original map", row=2, col=1)
    return fig


# --- gradio glue -----------------------------------------------------------------------------------

DATA_LABEL = "Chart data (CSV). To save a chart as PNG: the camera icon at its top right"


def data_files(elem_id: str, label: str = DATA_LABEL):
    """The download box for a tab's chart data (``csv_files``), hidden until a run fills it."""
    return gr.File(label=label, file_count="multiple", interactive=False, elem_id=elem_id,
                   elem_classes="rde-when-filled")
