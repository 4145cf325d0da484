"""Issue 17, item 10: Depth lab and Batch say what a run costs before it starts, as Classify and Compare do."""

from __future__ import annotations

import zipfile

import pytest
from PIL import Image

from conftest import EXAMPLES
from ui import format as fmt
from zoo.batch import BatchInputError
from zoo.service import Explorer


@pytest.fixture
def explorer(zoo):
    return Explorer(zoo, "cpu")


def test_depth_lab_estimate_counts_its_passes(explorer):
    signal = explorer.analyze_estimate(["resnet18", "resnet50"])
    assert signal.forwards == 2 * 3 and signal.seconds is None  # a forward and a backward per depth
    # ResNet-18: 8 blocks, 5 with identity shortcuts. Each block deleted in turn restarts at that
    # block: (8 + 7 + ... + 1) / 8 = 4.5 forwards; 16 random deletions of 1, 2, 4 and all 5 identity
    # blocks cost between 1/8 and one forward each; plus one clean forward.
    lesion = explorer.analyze_estimate(["resnet18"], lesion=True)
    assert 3 + 1 + 4.5 + 16 / 8 <= lesion.forwards <= 3 + 1 + 4.5 + 16 + 1
    # Deeper networks cost more, and the default is every depth.
    assert explorer.analyze_estimate(["resnet152"], lesion=True).forwards > lesion.forwards
    assert explorer.analyze_estimate().forwards == 5 * 3


def test_depth_lab_estimate_rests_on_forwards_timed_here(explorer):
    run = explorer.run(EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    est = explorer.analyze_estimate(["resnet18"])
    assert est.seconds == pytest.approx(3 * run.run.seconds) and "resnet18's forward measured here" in est.basis
    assert "Estimated time on cpu" in fmt.estimate_markdown(est, "cpu")


def test_batch_estimate_counts_images_and_models(explorer, tmp_path):
    photos = tmp_path / "set.zip"
    with zipfile.ZipFile(photos, "w") as z:
        for i in range(3):
            z.write(EXAMPLES / "chelsea.png", f"tabby/{i}.png")
    single = tmp_path / "one.png"
    Image.new("RGB", (32, 32)).save(single)
    est = explorer.batch_estimate([photos, single], ["resnet18", "resnet34"])
    assert est.forwards == 4 * 2 and est.seconds is None  # four images, two models, nothing timed yet
    assert explorer.batch_estimate([single]).forwards == 5  # no models named: every depth
    run = explorer.run(EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    assert explorer.batch_estimate([photos], ["resnet18"]).seconds == pytest.approx(3 * run.run.seconds)
    # What the run would refuse is said before it runs.
    with pytest.raises(BatchInputError, match="Too many files"):
        explorer.batch_estimate([photos, single], ["resnet18"], max_images=2)


def test_method_ranking_estimate_counts_maps_and_scores(explorer):
    from zoo.faithfulness import road_forwards

    # The deletion and insertion curves, 39 forwards per map (zoo.faithfulness.STEPS = 20), then ROAD's.
    score = 2 * 20 - 1 + road_forwards()
    # CAM is free, Grad-CAM is a forward and a backward (three forwards' worth); one classification in all.
    est = explorer.rank_estimate("resnet18", ["cam", "gradcam"])
    assert est.forwards == 1 + (0 + score) + (3 + score) and est.seconds is None
    # Score-CAM: one forward per channel of layer4 (512 on ResNet-18, 2048 on ResNet-50), plus two.
    assert explorer.rank_estimate("resnet18", ["scorecam"]).forwards == 1 + 514 + score
    assert explorer.rank_estimate("resnet50", ["scorecam"]).forwards == 1 + 2050 + score
    assert explorer.rank_estimate("resnet18").forwards > est.forwards  # no methods named: the cheap eight
