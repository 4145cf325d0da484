"""Depth lab without the page: the feature's request and estimate (zoo.features.analyze), and what the
tab's components show (ui.views.depth_lab), from hand-made analyses."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from ui.views import depth_lab as views
from zoo.analysis import Analysis, BlockStats, Deletion, Lesion
from zoo.errors import ZooError
from zoo.features import analyze
from zoo.inference import Prediction
from zoo.relevance import BlockRelevance, RelevanceFlow
from zoo.runtime import Runtime


def analysis(model: str, stds: list[float], lesion: bool = False) -> Analysis:
    target = Prediction(281, "tabby", 0.5)
    other = Prediction(1, "goldfish", 0.2)
    blocks = [BlockStats(f"layer1.{i}", 1, i, i == 0, s, 0.1 * (i + 1), 1.0 / (i + 1),
                         Lesion(0.1 if i == 0 else 0.4, 1.0, other if i == 0 else target) if lesion else None)
              for i, s in enumerate(stds)]
    dels = [Deletion(0, 1, 0.5, 1.0), Deletion(1, 5, 0.4, 0.8)] if lesion else None
    return Analysis(model, target, target, blocks, dels, "fp32", 0.5 if lesion else None, "cpu", 1.5)


def test_the_table_says_whether_responses_fall_with_depth():
    falling = [analysis("resnet18", [3.0, 2.0, 1.0]), analysis("resnet34", [2.0, 1.0, 0.5])]
    text = views.depth_lab_markdown(falling)
    assert "| resnet18 | 3 | tabby (0.50) | 2 |" in text and "falls at every step" in text
    rising = views.depth_lab_markdown(list(reversed(falling)))
    assert "falls at 0 of 1 steps" in rising
    assert views.depth_lab_markdown([]) == ""


def test_lesions_add_their_columns_and_note():
    text = views.depth_lab_markdown([analysis("resnet18", [3.0, 2.0, 1.0], lesion=True)])
    # one downsampling block (p 0.1), two identity blocks (p 0.4); the downsampling one changed the top-1
    assert "| 0.40 | 0.10 | 2 of 3 |" in text and "**Lesions**" in text and "lesions in fp32" in text


def test_the_numbers_and_the_charts():
    done = [analysis("resnet18", [3.0, 2.0, 1.0], lesion=True), analysis("resnet34", [2.0, 1.0, 0.5])]
    assert views.numbers(done) == {"models": [a.to_json() for a in done]}
    out = views.render(done)
    assert len(out) == 8 and isinstance(out[-1], str) and out[0] is not None  # seven charts, then the table
    assert out[6] is None and "Relevance flow" not in out[-1]  # no relevance flow asked for: no chart


def test_the_request_and_the_estimate_of_each_button(zoo, hub):
    rt = Runtime(zoo, "cpu")
    req = analyze.Request.create(rt, None, ["resnet18", "resnet18"], "", lesion=True, deletions=True)
    assert req.models == ("resnet18",) and req.target is None and not req.relevance
    with pytest.raises(ZooError, match="tabby kat"):
        analyze.Request.create(rt, None, ["resnet18"], "tabby kat")
    signal = analyze.estimate(rt, analyze.Request.create(rt, None, ["resnet18"]))
    lesion = analyze.estimate(rt, req)
    assert signal.forwards == 3 and lesion.forwards > signal.forwards and signal.seconds is None
    text = views.depth_lab_estimate(signal, lesion, "cpu")
    assert text.startswith("Signal analysis: ") and "Lesion study: " in text
    assert not hub.requests  # pricing fetches nothing


def with_flow(a: Analysis, shares: list[tuple[float, float]]) -> Analysis:
    """``a`` with a hand-made relevance flow: (shortcut, branch) per block."""
    rows = [BlockRelevance(b.name, b.stage, b.downsample, s, f) for b, (s, f) in zip(a.blocks, shares)]
    return replace(a, relevance=RelevanceFlow(a.model, "epsilon-plus-flat", a.target, 2.0, 1.5, rows))


def test_the_relevance_chart_and_its_line_in_the_table():
    a = with_flow(analysis("resnet18", [3.0, 2.0, 1.0], lesion=True), [(1.0, 3.0), (2.0, 2.0), (0.0, 0.0)])
    fig = views.relevance_share([analysis("resnet34", [1.0, 1.0]), a])
    line = fig.data[0]
    assert line.y[:2] == (0.75, 0.5) and line.y[2] is None  # nothing arrived at the last block: no share
    assert list(line.customdata[0][:2]) == ["layer1.0", "downsampling block"]
    assert "epsilon-plus-flat" in fig.layout.title.text and len([t for t in fig.data if t.name]) == 2
    assert views.relevance_share([analysis("resnet34", [1.0])]) is None
    out = views.render([a])
    assert out[6] is not None and out[4] is not None  # beside the lesion curve
    assert "**Relevance flow**" in out[-1] and "median share into the branch 0.75" in out[-1] and "75%" in out[-1]
    j = a.to_json()
    assert j["blocks"][0]["relevance"] == {"shortcut": 1.0, "branch": 3.0, "share_branch": 0.75}
    assert j["relevance"]["composite"] == "epsilon-plus-flat" and j["relevance"]["conservation"] == 0.75
    assert "relevance" not in analysis("resnet18", [1.0]).to_json()


def test_relevance_is_priced_and_its_composite_checked(zoo, hub):
    from zoo.lrp import CompositeError
    from zoo.relevance import forwards

    rt = Runtime(zoo, "cpu")
    plain = analyze.estimate(rt, analyze.Request.create(rt, None, ["resnet18"]))
    req = analyze.Request.create(rt, None, ["resnet18"], relevance=True, composite="epsilon_gamma_box")
    assert req.composite == "epsilon-gamma-box"
    assert analyze.estimate(rt, req).forwards == math.ceil(plain.forwards + forwards("epsilon-gamma-box"))
    with pytest.raises(CompositeError, match="epsilon-plus-flat"):
        analyze.Request.create(rt, None, ["resnet18"], relevance=True, composite="alpha-beta")
    assert not hub.requests
