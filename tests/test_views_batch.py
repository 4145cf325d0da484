"""ui/views/batch.py without building the page: a batch result and its decision into what the tab shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from test_decision import COST, NAMES, _case, records
from ui.views import batch as view
from zoo import decision
from zoo.batch import ImageResult, Tally
from zoo.published import BUILTIN

LABELS = tuple(f"class{i}" for i in range(10))


def result(partial: bool = False):
    tally = Tally(["resnet18", "resnet50"], [18, 50], keep_images=True)
    for i, (label, tops) in enumerate([(1, [1, 1]), (2, [3, 2]), (None, [4, 5])]):
        top = np.array([[t, 0, 6, 7, 8] for t in tops])
        probs = np.tile(np.array([0.6, 0.1, 0.1, 0.1, 0.1], np.float32), (2, 1))
        tally.add(ImageResult(i, f"img{i}.png", label, top, probs, None, Path(f"img{i}.png"),
                              Image.new("RGB", (8, 8))), [0.01, 0.02])
    return tally.result(LABELS, 5, [], ["a note"], "cpu", "fp32", 4, 1.5, partial=partial)


def test_run_tables_and_text():
    r = result()
    assert view.model_table(r) == [["resnet18", "50.0% (1 of 2)", "50.0% (1 of 2)", "60.0%", "100.0"],
                                   ["resnet50", "100.0% (2 of 2)", "100.0% (2 of 2)", "60.0%", "50.0"]]
    assert view.headers(r) == ["", "file", "label", "resnet18", "resnet50", "depths"]
    rows = view.rows(r, thumbnail=lambda img: "thumb")
    assert rows[1] == ["thumb", "img1.png", "class2", "class3 (60%) ✗", "class2 (60%) ✓", "≠ disagree"]
    assert rows[2][2] == "" and rows[2][-1] == "≠ disagree"
    assert view.thumbnail_uri(Image.new("RGB", (4, 4))).startswith("![](data:image/jpeg;base64,")
    text = view.markdown(r)
    assert "**3 images** classified by 2 model(s)" in text and "Note: a note" in text
    assert view.markdown(result(partial=True)).startswith("**Partial results: the 3 images done so far.**")
    (m, *_) = r.mattered
    assert view.mattered_caption(r, m).startswith(f"{m.image.name}")


def test_decision_views():
    rec = _case(200, {"resnet18": 150, "resnet50": 148, "resnet152": 154}, both=140)
    d = decision.build(rec, COST, seed=0, level=0.05, budget_ms=20,
                       published={"resnet50": BUILTIN["resnet50"].to_json()})
    md = view.decision_markdown(d)
    assert md.startswith("### Recommended: resnet18") and "200 labelled images" in md and "not your data" in md
    assert "McNemar p = " in md
    table = view.decision_table(d)
    assert [row[0] for row in table] == NAMES and table[0][6] == "5.0"
    published = view.published_table(d)
    assert published[1] == ["resnet50", "63.19", "82.97", "36.16", "24.06", "–", "76.70"]  # ImageNet-A: no row
    assert published[0][1:] == ["–"] * 6
    fig = view.accuracy_latency(d)
    traces = {t.name: t for t in fig.data if t.type == "scatter"}
    assert traces["resnet50 (dominated)"].marker.color == view.GREY  # less accurate than resnet18, and slower
    assert traces["resnet18"].error_y.array[0] > 0
    assert any(s.line.dash == "dash" for s in fig.layout.shapes)  # the budget
    rel = view.reliability(d)
    assert len(rel.data) == 1 + len(NAMES)  # the diagonal and one line per depth
    kap = view.kappa_heatmap(d)
    assert kap.data[0].z[0][0] == 1.0


def test_an_unlabelled_run_says_what_labels_would_add():
    rec = records(np.zeros((0, 3), dtype=bool))
    d = decision.build(rec, COST, seed=0, level=0.05, budget_ms=None)
    assert view.decision_markdown(d) == view.NO_LABELS and "needs labels" in view.NO_LABELS
    assert view.accuracy_latency(d) is None and view.reliability(d) is None and view.kappa_heatmap(d) is None
    assert view.decision_markdown(None) == ""


def test_no_kappa_chart_where_kappa_is_undefined():
    d = decision.build(_case(40, {"resnet18": 0, "resnet50": 0, "resnet152": 0}), COST, seed=0, level=0.05,
                       budget_ms=None)
    assert d.error_consistency["kappa"][0][1] is None and view.kappa_heatmap(d) is None
    assert view.accuracy_latency(d) is not None
