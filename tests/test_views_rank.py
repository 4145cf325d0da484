"""Method ranking without gradio: the feature's request, stream and JSON, and what the tab shows
(ui/views/rank.py), and the tab's one request builder (ui/tabs/rank.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import EXAMPLES
from ui.views import rank as views
from zoo.errors import UnknownMethodError, ZooError
from zoo.features import rank as feature
from zoo.runtime import Runtime


@pytest.fixture(scope="module")
def rt(zoo, hosted):
    return Runtime(zoo, "cpu", precision="fp32")


@pytest.fixture(scope="module")
def stream(rt):
    """How many methods each ranking the stream yields holds (empty first, then one more each time: the
    same ranking, grown), and the last one."""
    req = feature.Request.create(rt, EXAMPLES / "chelsea.png", "resnet18", "tabby", ["edges", "cam", "edges"])
    sizes, ranking = [], None
    for ranking in feature.run(rt, req):
        sizes.append(len(ranking.entries))
    return sizes, ranking


def test_a_ranking_request_is_checked(rt):
    req = feature.Request.create(rt, None, "resnet18")
    assert req.methods == feature.RANK_DEFAULT and req.target is None and req.by == "deletion"
    assert feature.Request.create(rt, None, "resnet18", " ", ["cam", "cam"], "road").methods == ("cam",)
    with pytest.raises(UnknownMethodError):
        feature.Request.create(rt, None, "resnet18", methods=["grad-cam"])
    with pytest.raises(ZooError, match="'road'"):
        feature.Request.create(rt, None, "resnet18", by="roads")
    with pytest.raises(ZooError, match="Unknown class 'tabby kat'"):
        feature.Request.create(rt, None, "resnet18", "tabby kat")
    assert feature.estimate(rt, req) == feature.rank_estimate(rt, "resnet18", list(feature.RANK_DEFAULT))


def test_the_ranking_grows_one_method_at_a_time(stream):
    sizes, ranking = stream
    assert sizes == [0, 1, 2]  # "edges" named twice runs once
    assert ranking.target.label == "tabby" and [r.method for r in ranking.entries] == ["edges", "cam"]
    out = ranking.to_json()
    assert out["sort_by"] == "deletion" and out["steps"] == 20
    assert [m["deletion_auc"] for m in out["methods"]] == sorted(m["deletion_auc"] for m in out["methods"])
    assert {m["layer"] for m in out["methods"]} == {"layer4", None}


def test_what_the_tab_shows_of_a_ranking(stream, tmp_path, zoo):
    ranking = stream[1]
    pictures = views.pictures_of(tmp_path, ranking, {})
    assert set(pictures) == {"edges", "cam"} and all(Path(p).is_file() for p in pictures.values())
    assert views.pictures_of(tmp_path, ranking, pictures) is pictures  # drawn once each
    for by in ("deletion", "insertion", "road"):
        gallery, rows, text, curves, data = views.render(ranking, by, 4, pictures, tmp_path)
        order = [r.method for r in ranking.sorted(by)]
        assert [path for path, _ in gallery] == [pictures[m] for m in order]
        assert [row[0] for row in rows] == [1, 2] and len(rows[0]) == len(views.RANK_HEADERS)
        assert gallery[0][1].startswith(f"1. {order[0]}: deletion ")
        assert "2 of 4 methods scored" in text and curves is not None
        assert len(data) == 1 and data[0].endswith(".csv") and Path(data[0]).is_file()
    labels = {name: label for label, name in views.choices(zoo, "resnet18")}
    assert "514 forwards" in labels["scorecam"]


def test_the_tab_builds_one_request_for_its_handler_and_its_estimate(rt):
    from ui.tabs.rank import request

    ctx = SimpleNamespace(rt=rt)
    upload = SimpleNamespace(path=str(EXAMPLES / "chelsea.png"))
    req = request(ctx, upload, "resnet18", "", ["cam", "gradcam"])
    assert req.image == upload.path and req.methods == ("cam", "gradcam") and req.target is None
    assert request(ctx, None, "resnet18", None, []).methods == feature.RANK_DEFAULT  # none ticked: the cheap ones
    assert feature.estimate(rt, request(ctx, None, "resnet18", None, ["cam", "gradcam"])) == \
        feature.estimate(rt, req)
