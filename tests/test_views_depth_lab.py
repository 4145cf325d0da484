"""Depth lab without the page: the feature's request and estimate (zoo.features.analyze), and what the
tab's components show (ui.views.depth_lab), from hand-made analyses."""

from __future__ import annotations

import pytest

from ui.views import depth_lab as views
from zoo.analysis import Analysis, BlockStats, Deletion, Lesion
from zoo.errors import ZooError
from zoo.features import analyze
from zoo.inference import Prediction
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
    assert len(out) == 7 and isinstance(out[-1], str) and out[0] is not None  # six charts, then the table


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
