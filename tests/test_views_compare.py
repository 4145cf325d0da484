"""Compare depths without the page: the feature's request and run (zoo.features.compare), and what the
tab's components show (ui.views.compare), called as plain functions."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from conftest import EXAMPLES
from ui.views import compare as views
from zoo.cancel import Cancelled, Token, running
from zoo.errors import ZooError
from zoo.features import compare
from zoo.runtime import Runtime

MODELS = ["resnet18", "resnet34"]


@pytest.fixture(scope="module")
def rt(zoo, hosted) -> Runtime:
    return Runtime(zoo, "cpu", precision="fp32")


@pytest.fixture(scope="module")
def cmp(rt) -> compare.Comparison:
    return compare.result(rt, compare.Request.create(rt, EXAMPLES / "rocket.jpg", MODELS, "gradcam"))


def test_the_request_is_checked_before_any_work(rt, hub):
    req = compare.Request.create(rt, None, ["resnet18", "resnet18"], target="  ")
    assert req.models == ("resnet18",) and req.target is None and req.method == "cam" and not req.transfer
    for raw, match in (({"models": ["resnet19"]}, "resnet19"), ({"method": "nope"}, "nope"),
                       ({"target": "tabby kat"}, "tabby kat"), ({"top_k": 0}, "top_k"), ({"top_k": True}, "top_k")):
        with pytest.raises(ZooError, match=match):
            compare.Request.create(rt, None, **{"models": MODELS, **raw})
    assert not hub.requests  # nothing was fetched for any of it
    # The estimate prices the request as the page shows it: a Grad-CAM pass after each classification.
    est = compare.estimate(rt, compare.Request.create(rt, None, MODELS, "gradcam"))
    assert est.forwards == 2 * (1 + 3) and est.models == 2


def test_the_result_and_its_one_json(cmp):
    assert [r.run.model for r in cmp.results] == MODELS and cmp.chosen == "consensus"
    assert cmp.target == compare.consensus([r.run for r in cmp.results]) == cmp.agreement["top1_majority"]
    out = json.loads(json.dumps(cmp.to_json()))
    assert out["target"] == {"index": cmp.target, "label": cmp.target_label, "chosen": "consensus"}
    assert [m["model"] for m in out["models"]] == MODELS and out["map_agreement"]["models"] == MODELS
    assert all(m["target"]["index"] == cmp.target and m["method"] == "gradcam" for m in out["models"])


def test_a_given_class_is_said_to_be_given(rt):
    given = compare.result(rt, compare.Request.create(rt, EXAMPLES / "rocket.jpg", ["resnet18"], target="tabby"))
    assert given.chosen == "given" and given.target == 281
    assert "the class you picked" in views.agreement_markdown(given)


def test_a_stop_before_the_run_ends_it_before_any_model(rt):
    token = Token()
    token.cancel()
    with running(token), pytest.raises(Cancelled):
        compare.result(rt, compare.Request.create(rt, EXAMPLES / "rocket.jpg", MODELS))


def test_the_top5_table_and_its_cached_value(cmp):
    rows = views.compare_table(cmp)
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5]
    for col, r in enumerate(cmp.results, start=1):
        p = r.run.predictions[0]
        assert rows[0][col] == f"{p.label} ({p.prob * 100:.1f}%)"
    assert views.top5_headers(cmp) == ["rank", *MODELS]
    assert views.cached_table(cmp) == {"headers": ["rank", *MODELS], "data": rows}
    assert len(views.compare_column_widths(len(MODELS))) == 1 + len(MODELS)


def test_the_gallery_writes_one_picture_per_depth(cmp, tmp_path):
    shared = views.gallery(cmp, "jet", 0.5, True, tmp_path)
    (tmp_path / "own").mkdir()
    own = views.gallery(cmp, "jet", 0.5, False, tmp_path / "own")  # each map on its own colour scale
    assert [caption.split(" · ")[0] for _, caption in shared] == MODELS
    for (path, caption), r in zip(shared, cmp.results):
        assert Image.open(path).size == (320, 320)
        assert f"p({cmp.target_label}) = {r.explanation.target.prob:.2f}" in caption
    assert len(own) == len(shared)


def test_the_texts_and_charts(cmp):
    text = views.agreement_markdown(cmp)
    assert f"Maps show **{cmp.target_label}**" in text and "Time: resnet18" in text
    sentence, heatmap = views.map_agreement(cmp)
    assert "ResNet-18 and ResNet-34" in sentence and heatmap is not None
    assert views.scores(cmp) == ([], None)  # not scored: the tab hides the table and the curves
    assert views.model_title("resnet152") == "ResNet-152" and views.model_title("mine") == "mine"


def test_the_transfer_reading_and_heatmap_only_when_asked():
    import numpy as np
    from types import SimpleNamespace

    from zoo.transfer import Transfer

    assert views.transfer(SimpleNamespace(transfer=None)) == ("", None)
    auc = np.array([[0.2, 0.14], [0.1, 0.1]])
    t = Transfer(list(MODELS[:2]), 281, auc, auc / np.diag(auc)[None, :])
    text, fig = views.transfer(SimpleNamespace(transfer=t))
    assert text.startswith("**Evidence transfer.** ") and t.sentence() in text
    assert list(fig.data[0].x) == list(MODELS[:2]) and fig.data[0].text[0][1] == "1.40"
