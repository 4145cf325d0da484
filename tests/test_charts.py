"""ui/charts.py's shared conventions: tooltips, the modebar's PNG name, CSV of every chart, gr.Plot's payload.

The charts themselves are checked with the data they show in test_analysis.py (Depth lab),
test_zoo_tab.py, test_agreement.py and test_faithfulness.py; their tooltips in a browser there too.
"""

from __future__ import annotations

import csv
import json

import gradio as gr
import numpy as np

from ui import charts
from zoo.faithfulness import Faithfulness


def curves() -> Faithfulness:
    fractions = np.linspace(0, 1, 5)
    return Faithfulness(0.25, 0.75, fractions, 1 - fractions, fractions, steps=4, forwards=8, seconds=0.0)


def test_tooltip_text_is_literal_and_names_what_it_shows():
    tip = charts.hover("my <model> %{x}", ("block", "%{customdata[0]}"), ("std", "%{y:.3g}"))
    assert tip == ("<b>my &lt;model&gt; %&#123;x}</b><br>block: %{customdata[0]}<br>std: %{y:.3g}"
                   "<extra></extra>")
    assert charts.depth_label("resnet50") == "ResNet-50" and charts.depth_label("my-net") == "my-net"


def test_gr_plot_gets_plotly_json_with_the_modebar_settings():
    fig = charts.faithfulness_curves([("resnet18", curves())], "tabby", name="resnet18-cam-281-curves")
    payload = gr.Plot().postprocess(fig)
    assert payload.type == "plotly"
    spec = json.loads(payload.plot)
    assert spec["config"]["toImageButtonOptions"] == {"format": "png", "filename": "resnet18-cam-281-curves",
                                                       "scale": 2}
    assert spec["config"]["displaylogo"] is False
    assert [t["name"] for t in spec["data"]] == ["resnet18: deletion 0.250, insertion 0.750"] * 2
    assert spec["layout"]["xaxis"]["tickformat"] == ".0%"


def test_csv_has_one_row_per_point_and_names_panels(tmp_path):
    fig = charts.faithfulness_curves([("resnet18", curves()), ("resnet50", curves())], "tabby")
    rows = list(csv.reader(open(charts.csv_file(fig, tmp_path), encoding="utf-8")))
    assert rows[0] == ["series", "panel", "x", "y"] and len(rows) == 1 + 4 * 5
    assert rows[1][1:] == ["p(tabby), pixels removed", "0.0", "1.0"]
    assert rows[6][1:] == ["p(tabby), pixels restored", "0.0", "0.0"]
    # A chart that only says why it is empty has no data to download.
    from ui.views.zoo_table import accuracy_vs  # the Model zoo tab's chart, in its views module

    empty = accuracy_vs([], "macs")
    assert "No models to plot." in empty.layout.annotations[0].text
    assert charts.csv_files([empty, None, fig], tmp_path) == [str(tmp_path / "faithfulness-curves.csv")]


def test_agreement_heatmap_cells_and_csv(tmp_path):
    fig = charts.agreement_heatmap(["resnet18", "resnet50"], np.array([[1.0, 0.75], [0.75, 1.0]]))
    (hm,) = fig.data
    assert hm.texttemplate == "%{z:.0%}" and "%{y} and %{x}" in hm.hovertemplate
    rows = list(csv.reader(open(charts.csv_file(fig, tmp_path), encoding="utf-8")))
    assert rows == [["row", "column", "same top-1"], ["resnet18", "resnet18", "1.0"], ["resnet18", "resnet50", "0.75"],
                    ["resnet50", "resnet18", "0.75"], ["resnet50", "resnet50", "1.0"]]


def test_sanity_chart_names_each_step_and_marks_the_verdict(tmp_path):
    from zoo.sanity import Step

    order = ["none", "fc", "layer4", "layer3"]
    falling = [Step(n, 1.0 - 0.3 * k, 1.0 - 0.3 * k, 1.0 - 0.2 * k) for k, n in enumerate(order)]
    control = [Step(n, 1.0, 1.0, 1.0) for n in order]
    fig = charts.sanity_chart([("Grad-CAM", falling), ("Edges (control)", control)], ["layer4", "layer4"], 0.5)
    lines = [t for t in fig.data if not t.name.endswith(": verdict")]
    assert len(lines) == 6 and list(lines[0].x) == order  # 3 panels x 2 methods, steps named on the x axis
    assert [t.showlegend for t in lines] == [True, True, False, False, False, False]
    assert "<b>Grad-CAM</b>" in lines[0].hovertemplate and "%{customdata[0]}" in lines[0].hovertemplate
    verdicts = [t for t in fig.data if t.name.endswith(": verdict")]
    assert len(verdicts) == 6 and all(list(t.x) == ["layer4", "layer4"] for t in verdicts)
    assert [s.y0 for s in fig.layout.shapes] == [0.5] * 3  # the pass line in every panel
    rows = list(csv.reader(open(charts.csv_file(fig, tmp_path), encoding="utf-8")))
    assert rows[0] == ["series", "panel", "x", "y", "randomized"]
    assert rows[3] == ["Grad-CAM", "rank correlation of |map|", "layer4", "0.4", "layer4"]
    # Different steps (every block of two depths): the x axis is the share of the cascade randomized.
    short = charts.sanity_chart([("resnet18", falling), ("resnet34", falling[:3])], ["layer4", "layer4"], 0.5)
    assert list(short.data[0].x) == [0.0, 1 / 3, 2 / 3, 1.0]
    assert charts.sanity_chart([], [], 0.5) is None
