"""ui/views/sanity.py without gradio: the strips, the chart and the verdicts of a sanity check."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PIL import Image

from ui.views import sanity as views
from zoo.sanity import MethodCheck, Step


def report(model: str = "resnet18") -> SimpleNamespace:
    steps = [Step("none", 1.0, 1.0, 1.0), Step("fc", 0.9, 0.9, 0.8), Step("layer4", 0.2, 0.1, 0.3)]
    check = SimpleNamespace(method="gradcam", steps=steps, heats=[np.random.default_rng(i).random((8, 8))
                                                                 for i in range(3)],
                            verdict_at="layer4", passes=True, flat_original=False, verdict=steps[2], notes=[])
    return SimpleNamespace(model=model, methods=[check], run=SimpleNamespace(crop=Image.new("RGB", (16, 16))),
                           target=SimpleNamespace(label="tabby", index=281), granularity="stage", seed=0,
                           device="cpu")


def test_titles_and_the_maps_line():
    assert [views.step_title(s) for s in ("none", "fc", "layer4")] == ["original", "+fc", "+layer4"]
    assert views.maps_text(21, 3, 1) == "7 maps per method (the original, then 6 randomization steps), 21 in all. "
    assert views.maps_text(35, 1, 5) == "35 maps over 5 depths. "


def test_render_writes_both_pictures_and_says_the_verdict(tmp_path):
    wide, chart, text, data, phone = views.render([report(), report("resnet34")], tmp_path, 14, by_depth=True)
    assert wide != phone and Image.open(wide).size != Image.open(phone).size  # the phone's: larger cells
    assert "`resnet18`, `resnet34`" in text and "passes" in text and "of 14" in text
    assert chart is not None and data


def test_verdict_words():
    def check(method, at_layer4, first=None):
        m = MethodCheck(method, None, verdict_at="layer4")
        m.steps = [Step("none", 1.0, 1.0, 1.0), Step("fc", 0.9, 0.9, 0.9), Step("layer4", *at_layer4)]
        m.heats = [first if first is not None else np.eye(4)] * 3
        return m

    assert "passes" in views.sanity_verdict(check("gradcam", (0.1, 0.1, 0.2)))
    text = views.sanity_verdict(check("gradcam", (0.7, 0.7, 0.2)))
    assert "fails" in text and "0.70" in text and "0.5" in text
    assert "fails, as it must" in views.sanity_verdict(check("edges", (1.0, 1.0, 1.0)))
    assert "no verdict" in views.sanity_verdict(check("gradcam", (None, None, 1.0), np.zeros((4, 4))))
    # A map that became constant has no ranking left: it counts as 0, so SSIM decides.
    assert check("gradcam", (None, None, 0.3)).passes is True
    assert views.sanity_notes(check("gradcam", (None, None, 0.3)))[2] == "r –  S 0.30"


def test_residual_branches_verdict_names_the_branches_and_readings_follow():
    m = MethodCheck("gradcam", None, verdict_at="layer1.0", granularity="residual-branches")
    m.steps = [Step("none", 1.0, 1.0, 1.0), Step("layer4.1", 0.9, 0.9, 0.9), Step("layer1.0", 0.8, 0.8, 0.7)]
    m.heats = [np.eye(4)] * 3
    text = views.sanity_verdict(m)
    assert "every residual branch random" in text and "fc and" not in text and "fails" in text
    reading = views.sanity_readings(m)
    assert len(reading) == 1 and "still looks like the original" in reading[0]
    r = SimpleNamespace(model="resnet18", methods=[m], target=SimpleNamespace(label="tabby", index=281),
                        granularity="residual-branches", seed=0, device="cpu")
    assert f"    * {reading[0]}" in views.sanity_markdown([r])
    pending = MethodCheck("gradcam", None, verdict_at="layer1.0", granularity="residual-branches")
    pending.steps, pending.heats = m.steps[:2], [np.eye(4)] * 2
    assert "every residual branch is random" in views.sanity_verdict(pending)
    assert views.sanity_readings(report().methods[0]) == []  # a check without readings (a stand-in) shows none
