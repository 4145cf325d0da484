"""Error surfaces without the page: the feature's request and estimate (zoo.features.landscape), and what
the tab's components show (ui.views.landscape), from hand-made landscapes."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES
from ui.views import landscape as views
from zoo.batch import Skipped
from zoo.errors import ZooError
from zoo.features import landscape
from zoo.landscape import ImageTarget, Landscape, LandscapeError, Step
from zoo.runtime import Runtime


def surface(model: str, centre: float = 1.0) -> Landscape:
    loss = [[2.0, 1.5, 2.5], [1.2, centre, 1.4], [3.0, 2.0, float("nan")]]
    return Landscape(model, model, 0, 2, 1.0, [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], loss, centre,
                     [ImageTarget("cat.png", 281, "tabby", "given", centre)], "cpu", 9.0, 0.25, 40, 100, 120,
                     skipped=[Skipped("notes.txt", "not an image")], notes=["a note"])


def test_the_summary_names_each_depth_and_what_was_skipped():
    text = views.landscape_markdown([surface("resnet18"), surface("resnet34", 0.5)], 5)
    assert text.startswith("**2 of 5 depths** · grid 3 × 3, α, β ∈ [−1, 1], seed 0, fp32 on `cpu`")
    assert "cat.png: **tabby** (your class)" in text
    assert "* **resnet18**: loss 1 at its weights, up to 3 on the grid; 9 points, 250 ms each" in text
    assert "* **resnet34**: loss 0.5" in text
    assert text.count("Note: a note") == 1 and "Skipped: notes.txt (not an image)" in text
    assert views.landscape_markdown([], 5) == ""


def test_the_numbers_and_where_a_run_is():
    done = [surface("resnet18")]
    assert views.numbers(done) == {"models": [done[0].to_json()]}
    assert views.running(Step(2, 9, "resnet34: point 3 of 9"), "before") == "*Running: resnet34: point 3 of 9*\n\nbefore"


def test_the_request_uses_the_one_table_of_rules(zoo, hub):
    rt = Runtime(zoo, "cpu")
    req = landscape.Request.create(rt, None, ["resnet18"], "", grid=5.0, span=1, dims=1, seed=3)
    assert (req.grid, req.span, req.dims, req.seed, req.target) == (5, 1.0, 1, 3, None)
    for raw, match in (({"grid": 4}, "odd"), ({"grid": True}, "odd"), ({"span": 0}, "span"),
                       ({"span": float("inf")}, "span"), ({"dims": 3}, "dims"), ({"seed": True}, "seed"),
                       ({"seed": 2 ** 32}, "seed"), ({"max_images": 0}, "images"), ({"target": "tabby kat"}, "tabby")):
        with pytest.raises(ZooError, match=match) as e:
            landscape.Request.create(rt, None, ["resnet18"], **raw)
        assert isinstance(e.value, LandscapeError) or "class" in str(e.value).lower()
    assert not hub.requests


def test_the_estimate_counts_what_the_run_will_read(zoo):
    rt = Runtime(zoo, "cpu")
    image = str(EXAMPLES / "chelsea.png")
    one = landscape.estimate(rt, landscape.Request.create(rt, image, ["resnet18", "resnet34"], grid=3, dims=1))
    assert one.forwards == 2 * (3 + 1) and one.models == 2 and one.seconds is None
    two = landscape.estimate(rt, landscape.Request.create(rt, [image, str(EXAMPLES / "rocket.jpg")], ["resnet18"],
                                                          grid=3, dims=2, max_images=1))
    assert two.forwards == 9 + 1  # max_images holds in the price as in the run
