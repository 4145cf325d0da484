"""Classify & explain without gradio: the feature's request and JSON, and what the tab shows of a result
(ui/views/classify.py), and the tab's one request builder (ui/tabs/classify.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import EXAMPLES
from ui.views import classify as views
from zoo.errors import UnknownMethodError, ZooError
from zoo.explain import STAGES, LayerError
from zoo.features import classify as feature
from zoo.runtime import Runtime


@pytest.fixture(scope="module")
def rt(zoo, hosted):
    return Runtime(zoo, "cpu", precision="fp32")


@pytest.fixture(scope="module")
def scored(rt):
    req = feature.Request.create(rt, EXAMPLES / "coffee.png", "resnet18", 3, "gradcam", faithfulness=True)
    return feature.result(rt, req)


def test_a_request_is_checked_before_any_weights(rt):
    create = feature.Request.create
    with pytest.raises(UnknownMethodError, match="gradcam"):
        create(rt, None, "resnet18", method="grad-cam")
    with pytest.raises(ZooError, match="Unknown class 'tabby kat'"):
        create(rt, None, "resnet18", target="tabby kat")
    with pytest.raises(ZooError, match="top_k must be a whole number"):
        create(rt, None, "resnet18", top_k=2.5)
    with pytest.raises(ZooError, match="3025 window positions"):
        create(rt, None, "resnet18", method="occlusion", params={"window": 8, "stride": 4})
    with pytest.raises(LayerError, match="exact only on layer4"):
        create(rt, None, "resnet18", method="cam", params={"layer": "layer2"})
    with pytest.raises(LayerError, match="takes no layer"):  # one method named with a layer (the CLI)
        create(rt, None, "resnet18", method="saliency", params={"layer": "layer2"}, refuse_layer=True)
    with pytest.raises(ZooError, match="one map"):
        create(rt, None, "resnet18", method="gradcam", faithfulness=True, every_stage=True)
    # A form sends every setting: the method keeps its own, a slider's 56.0 is 56, and a blank target is none.
    req = create(rt, None, "resnet18", 2.0, "occlusion", "", {"window": 56.0, "stride": 28, "steps": 16,
                                                              "layer": "layer4"})
    assert dict(req.params) == {"window": 56, "stride": 28} and req.top_k == 2 and req.target is None
    assert dict(create(rt, None, "resnet18", method="gradcam", target="tabby").params) == {"layer": "layer4"}
    assert create(rt, None, "resnet18", target="tabby").target == 281


def test_the_one_json_of_classify_and_explain(rt, scored):
    plain = feature.result(rt, feature.Request.create(rt, EXAMPLES / "coffee.png", "resnet18", 3, "layercam"))
    out = plain.to_json()  # /classify's: no layer, no scores
    assert out["method"] == "layercam" and out["shape"] == [7, 7] and len(out["predictions"]) == 3
    assert "layer" not in out and "faithfulness" not in out
    asked = feature.result(rt, feature.Request.create(rt, EXAMPLES / "coffee.png", "resnet18", 3, "saliency",
                                                      explain=True)).to_json()  # /explain's and the CLI's
    assert asked["layer"] is None and asked["faithfulness"] is None and asked["shape"] == [224, 224]
    f = scored.to_json()["faithfulness"]
    assert scored.to_json()["layer"] == "layer4" and f["steps"] == 20 and len(f["deletion_curve"]) == 21


def test_what_the_tab_shows_of_a_result(scored, tmp_path):
    labels = views.label_dict(scored)
    assert list(labels.values()) == [p.prob for p in scored.run.predictions] and len(labels) == 3
    text = views.result_markdown(scored, "loaded just now")
    assert "**resnet18**" in text and "Grad-CAM" in text and "from layer4" in text and "scoring" in text
    assert text.endswith("loaded just now")
    markdown, chart = views.scores(scored)
    assert "deletion" in markdown.lower() and chart is not None
    png, npy = tmp_path / "map.png", tmp_path / "map.npy"
    png.write_bytes(b"png")
    np.save(npy, scored.explanation.raw)
    files = views.downloads(scored, str(png), str(npy))
    assert files[:2] == [str(png), str(npy)] and files[2].endswith(".csv") and Path(files[2]).is_file()
    overlay = str(tmp_path / "overlay.jpg")
    plain, same = views.seen_and_mapped(scored, overlay)
    assert same == overlay and Path(plain).is_file() and Path(plain).parent == tmp_path


def test_an_unscored_result_shows_no_scores(rt, tmp_path):
    result = feature.result(rt, feature.Request.create(rt, EXAMPLES / "chelsea.png", "resnet18"))
    assert views.scores(result) == ("", None) and views.curves(result) is None
    assert views.downloads(result, "a.png", "a.npy") == ["a.png", "a.npy"]


def test_every_stage_as_the_tab_shows_it(rt, tmp_path):
    req = feature.Request.create(rt, EXAMPLES / "coffee.png", "resnet18", method="xgradcam", every_stage=True)
    est = feature.estimate(rt, req)
    stages = feature.result(rt, req)
    assert stages.passes == 3 and est.forwards == 1 + 3
    assert [ex.layer for ex in stages.explanations] == list(STAGES)
    rows = stages.to_json()
    assert [r["shape"] for r in rows] == [[56, 56], [28, 28], [14, 14], [7, 7]] and rows[0]["passes"] == 3
    items = views.stages_gallery(stages, "jet", 0.5, tmp_path)
    assert [caption for _, caption in items] == ["layer1 · 56×56", "layer2 · 28×28", "layer3 · 14×14",
                                                  "layer4 · 7×7"]
    assert all(Path(path).is_file() for path, _ in items)
    assert "one forward and one backward for all four stages" in views.stages_markdown(stages)


def test_the_tab_builds_one_request_for_its_handler_and_its_estimate(rt):
    from ui.tabs.classify import request

    ctx = SimpleNamespace(rt=rt)
    upload = SimpleNamespace(path=str(EXAMPLES / "coffee.png"))
    req = request(ctx, upload, "resnet18", 5, "integrated-gradients", "", 56, 28, 8, "layer4", True)
    assert req.image == upload.path and dict(req.params) == {"steps": 8} and req.faithfulness
    priced = request(ctx, None, "resnet18", 5, "integrated-gradients", "", 56, 28, 8, "layer4", True)
    assert feature.estimate(rt, priced) == feature.estimate(rt, req)  # the cost callback prices the same request
    # The dropdown's layer goes to stage methods only; /explain's answer names it.
    assert dict(request(ctx, None, "resnet18", 5, "saliency", "", layer="layer2").params) == {}
    assert request(ctx, None, "resnet18", 5, "gradcam", "", layer="layer2", explain=True).explain
