"""The cost model (zoo.costs) through a Runtime: estimates before a run, and how Compare picks and explains its shared class."""

from __future__ import annotations

import pytest

from conftest import EXAMPLES, explained
from ui import format as fmt
from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.faithfulness import STEPS, road_forwards
from ui.views import compare as compare_views
from zoo.features import compare
from zoo.features.compare import consensus
from zoo.runtime import Runtime
from zoo.stats import model_stats
from zoo.features.classify import map_estimate


@pytest.fixture
def explorer(zoo):
    return Runtime(zoo, "cpu")


def test_an_estimate_counts_passes_before_any_model_ran(explorer):
    est = map_estimate(explorer, ["resnet50"], "cam")
    assert est.forwards == 1 and est.seconds is None  # CAM reuses the classification's forward
    # Grad-CAM: one forward and one backward (counted as two forwards) after the classification.
    assert map_estimate(explorer, ["resnet50"], "gradcam").forwards == 1 + 3
    # Occlusion 56/28 px: 7 x 7 positions and the unoccluded image, no backward.
    assert map_estimate(explorer, ["resnet50"], "occlusion", {"window": 56, "stride": 28}).forwards == 1 + 49 + 1
    # Scoring the map adds the deletion and insertion curves' forwards and ROAD's; five depths add up.
    assert map_estimate(explorer, ["resnet50"], "cam", None, True).forwards == 1 + 2 * STEPS - 1 + road_forwards()
    assert map_estimate(explorer, explorer.zoo.names[:5], "cam").forwards == 5
    assert METHODS["integrated-gradients"].forwards({"steps": 16}) == 16 * 3
    with pytest.raises(ZooError, match="positions"):  # what the server would refuse is said before running
        map_estimate(explorer, ["resnet50"], "occlusion", {"window": 8, "stride": 4})


def test_an_estimate_rests_on_forwards_timed_here(explorer):
    run = explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    one = run.run.seconds
    est = map_estimate(explorer, ["resnet18"], "gradcam")
    # The classification, then one Grad-CAM pass at its measured multiple of a forward.
    assert est.seconds == pytest.approx((1 + METHODS["gradcam"].pass_cost) * one)
    assert "resnet18's forward measured here" in est.basis
    # A model not run yet: the timed one's forward, scaled by multiply-adds.
    scaled = map_estimate(explorer, ["resnet50"], "cam")
    ratio = model_stats("resnet50").macs / model_stats("resnet18").macs
    assert scaled.seconds == pytest.approx(one * ratio) and "scaled by multiply-adds" in scaled.basis
    text = fmt.estimate_markdown(scaled, "cpu")
    assert "Estimated time on cpu" in text and "(1 forward pass," in text


def test_compare_says_how_its_class_was_chosen(explorer):
    cmp = compare.result(explorer, compare.Request.create(explorer, EXAMPLES / "rocket.jpg",
                                                          ["resnet18", "resnet34", "resnet50"]))
    assert cmp.chosen == "consensus" and cmp.to_json()["target"]["chosen"] == "consensus"
    # The majority the text names is the class the maps show (ties broken the same way).
    assert cmp.agreement["top1_majority"] == cmp.target == consensus([r.run for r in cmp.results])
    text = compare_views.agreement_markdown(cmp)
    assert f"Maps show **{cmp.target_label}**" in text
    assert any(why in text for why in ("every model's first choice", "the class most models put first",
                                       "the tied class with the highest probability"))
    given = compare.result(explorer, compare.Request.create(explorer, EXAMPLES / "rocket.jpg", ["resnet18", "resnet34"],
                                                            target="tabby"))
    assert given.chosen == "given" and "**tabby** (class 281) for every model: the class you picked" in \
        compare_views.agreement_markdown(given)


def test_timing_every_model_is_estimated_too(explorer):
    assert explorer.costs.latency_estimate(224).seconds is None
    explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    at224, at448 = explorer.costs.latency_estimate(224), explorer.costs.latency_estimate(448)
    assert at224.forwards == 13 * len(explorer.zoo.names)  # 3 warm-up and 10 timed forwards per model
    per_model = [explorer.costs.forward_seconds(n)[0] for n in explorer.zoo.names]
    assert at224.seconds == pytest.approx(13 * sum(per_model)) and at448.seconds == pytest.approx(4 * at224.seconds)


COUNTED = [("gradcam", {}), ("guided-gradcam", {}), ("saliency", {}), ("integrated-gradients", {"steps": 4}),
           ("occlusion", {"window": 112, "stride": 56}), ("layercam", {"layer": "layer3"}),
           ("smoothgradcampp", {})]


def test_an_estimate_counts_every_image_the_network_sees(explorer, monkeypatch):
    """Issue 17, item 7: the estimate's passes are the images that go through the network, counted
    as they go: the classification's and scoring's forwards (``LoadedModel.run``, under ``forward``,
    which no hook sees) and the method's (Captum and TorchCAM call the module: a forward pre-hook
    counts them)."""
    from zoo.models import LoadedModel

    seen: list[int] = []
    plain_run = LoadedModel.run

    def counted(self, x):
        seen.append(x.shape[0])
        return plain_run(self, x)

    monkeypatch.setattr(LoadedModel, "run", counted)
    module = explorer.cache.get(explorer.zoo.get("resnet18")).module
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        for method, params in COUNTED + [("scorecam", {"layer": "layer1"})]:
            for score in (False, True) if method == "gradcam" else (False,):
                est = map_estimate(explorer, ["resnet18"], method, params, score)
                seen.clear()
                explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, method, faithfulness=score, params=params)
                assert sum(seen) == est.passes, (method, score, seen)
                assert est.passes == 1 + METHODS[method].passes(
                    {**params, "channels": 64}, 224) + (2 * STEPS - 1 + road_forwards() if score else 0)
    finally:
        handle.remove()


def test_an_estimate_follows_what_the_methods_took_here(explorer):
    """Before a method ran here: its table cost times the measured forward, corrected by how far the
    methods that did run were from the table. After: its own passes' time, so the estimate of the
    same request is what that request took (no wall clock asserted: both come from the same timings)."""
    explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    one = explorer.costs.forward_seconds("resnet18")[0]
    params = {"steps": 8}
    before = map_estimate(explorer, ["resnet18"], "integrated-gradients", params)
    assert before.seconds == pytest.approx(one * (1 + 8 * METHODS["integrated-gradients"].pass_cost))
    result = explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "integrated-gradients", params=params)
    took = explorer.costs.forward_seconds("resnet18")[0] + result.explanation.seconds
    after = map_estimate(explorer, ["resnet18"], "integrated-gradients", params)
    assert after.seconds == pytest.approx(took) and "the map's passes as timed here" in after.basis
    # Twice the steps: twice the map's time; another depth: scaled by multiply-adds.
    assert explorer.costs.pass_seconds("integrated-gradients", "resnet18", one) == pytest.approx(
        (result.explanation.seconds / 8, True))
    ratio = model_stats("resnet50").macs / model_stats("resnet18").macs
    per_pass, measured = explorer.costs.pass_seconds("integrated-gradients", "resnet50", 1.0)
    assert measured and per_pass == pytest.approx(result.explanation.seconds / 8 * ratio)
    # A method not run yet takes the table's figure, corrected as Integrated Gradients was.
    off = (result.explanation.seconds / 8) / (METHODS["integrated-gradients"].pass_cost * explorer.costs.forward_seconds(
        "resnet18")[0])
    per_pass, measured = explorer.costs.pass_seconds("saliency", "resnet18", one)
    assert not measured and per_pass == pytest.approx(METHODS["saliency"].pass_cost * one * off, rel=1e-6)
