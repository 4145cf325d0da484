"""Issue 17, item 10: Depth lab and Batch say what a run costs before it starts, as Classify and Compare do."""

from __future__ import annotations

import zipfile

import pytest
from PIL import Image

from conftest import EXAMPLES, explained
from ui import format as fmt
from zoo.batch import BatchInputError
from zoo.features import robustness
from zoo.images import DECODE_NS_OTHER, decode_seconds
from zoo.features import analyze, landscape
from zoo.features import batch as batch_feature
from zoo.runtime import Runtime


def batch_estimate(rt, sources, models=None, **kwargs):
    return batch_feature.estimate(rt, batch_feature.Request.create(rt, sources, models, **kwargs))


@pytest.fixture
def explorer(zoo):
    return Runtime(zoo, "cpu")


def lab(explorer, models=None, lesion=False):
    """The Depth lab's estimate as its buttons price it (the Lesion study runs the deletions too)."""
    return analyze.estimate(explorer, analyze.Request.create(explorer, None, models, lesion=lesion, deletions=lesion))


def surface(explorer, models, unread, grid, dims, sources=None, max_images=8):
    """An error surface's estimate as the tab prices it: ``unread`` images besides ``sources``."""
    req = landscape.Request.create(explorer, sources, models, grid=grid, dims=dims, max_images=max_images,
                                   unread=unread)
    return landscape.estimate(explorer, req)


def test_depth_lab_estimate_counts_its_passes(explorer):
    signal = lab(explorer, ["resnet18", "resnet50"])
    assert signal.forwards == 2 * 3 and signal.seconds is None  # a forward and a backward per depth
    # ResNet-18: 8 blocks, 5 with identity shortcuts. Each block deleted in turn restarts at that
    # block: (8 + 7 + ... + 1) / 8 = 4.5 forwards; 16 random deletions of 1, 2, 4 and all 5 identity
    # blocks cost between 1/8 and one forward each; plus one clean forward.
    lesion = lab(explorer, ["resnet18"], lesion=True)
    assert 3 + 1 + 4.5 + 16 / 8 <= lesion.forwards <= 3 + 1 + 4.5 + 16 + 1
    # Deeper networks cost more, and the default is every depth.
    assert lab(explorer, ["resnet152"], lesion=True).forwards > lesion.forwards
    assert lab(explorer).forwards == 5 * 3
    # Lesions alone (the command line's --lesion) cost less than with the random deletions.
    alone = analyze.estimate(explorer, analyze.Request.create(explorer, None, ["resnet18"], lesion=True))
    assert 3 + 1 + 4.5 == pytest.approx(alone.forwards, abs=1) and alone.forwards < lesion.forwards


def test_depth_lab_estimate_rests_on_forwards_timed_here(explorer):
    run = explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    est = lab(explorer, ["resnet18"])
    assert est.seconds == pytest.approx(3 * run.run.seconds) and "resnet18's forward measured here" in est.basis
    assert "Estimated time on cpu" in fmt.estimate_markdown(est, "cpu")


def test_batch_estimate_counts_images_and_models(explorer, tmp_path):
    photos = tmp_path / "set.zip"
    with zipfile.ZipFile(photos, "w") as z:
        for i in range(3):
            z.write(EXAMPLES / "chelsea.png", f"tabby/{i}.png")
    single = tmp_path / "one.png"
    Image.new("RGB", (32, 32)).save(single)
    est = batch_estimate(explorer, [photos, single], ["resnet18", "resnet34"])
    # Four images, two models, nothing timed yet; decoding four small files: well under a forward's worth.
    assert est.forwards == 4 * 2 and est.seconds is None
    assert batch_estimate(explorer, [single]).forwards == 5  # no models named: every depth
    run = explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    decode = 3 * decode_seconds("PNG", 451 * 300)
    assert batch_estimate(explorer, [photos], ["resnet18"]).seconds == pytest.approx(3 * run.run.seconds + decode)
    # What the run would refuse is said before it runs.
    with pytest.raises(BatchInputError, match="Too many files"):
        batch_estimate(explorer, [photos, single], ["resnet18"], max_images=2)


def test_method_ranking_estimate_counts_maps_and_scores(explorer):
    from zoo.faithfulness import road_forwards

    # The deletion and insertion curves, 39 forwards per map (zoo.faithfulness.STEPS = 20), then ROAD's.
    score = 2 * 20 - 1 + road_forwards()
    # CAM is free, Grad-CAM is a forward and a backward (three forwards' worth); one classification in all.
    from zoo.features.rank import rank_estimate

    est = rank_estimate(explorer, "resnet18", ["cam", "gradcam"])
    assert est.forwards == 1 + (0 + score) + (3 + score) and est.seconds is None
    # Score-CAM: one forward per channel of layer4 (512 on ResNet-18, 2048 on ResNet-50), plus two.
    assert rank_estimate(explorer, "resnet18", ["scorecam"]).forwards == 1 + 514 + score
    assert rank_estimate(explorer, "resnet50", ["scorecam"]).forwards == 1 + 2050 + score
    assert rank_estimate(explorer, "resnet18").forwards > est.forwards  # no methods named: the cheap eight


# --- issue 29 item 4: priced by the inputs' real count and pixels -----------------------------

def _zip_of(path, image, n: int):
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.write(image, f"set/{i}.png")
    return path


def test_decoding_is_priced_by_the_pixels_in_the_headers_without_decoding(explorer, tmp_path, monkeypatch):
    big, small = tmp_path / "big.png", tmp_path / "small.png"
    Image.new("RGB", (6000, 4000), "grey").save(big)  # 24 MP, a few kB: what the file size does not tell
    Image.new("RGB", (600, 400), "grey").save(small)
    many_big, many_small = _zip_of(tmp_path / "big.zip", big, 10), _zip_of(tmp_path / "small.zip", small, 10)

    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("an estimate decoded an image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    heavy = batch_estimate(explorer, [many_big], ["resnet18"])
    light = batch_estimate(explorer, [many_small], ["resnet18"])
    # Ten 24 MP PNGs: 240 MP at the lossless price, in the gate's forward equivalents (0.3 s each).
    assert heavy.forwards == 10 + round(10 * 24e6 * DECODE_NS_OTHER * 1e-9 / 0.3) and light.forwards == 10
    monkeypatch.undo()
    explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")
    heavy, light = (batch_estimate(explorer, [z], ["resnet18"]) for z in (many_big, many_small))
    assert heavy.seconds - light.seconds == pytest.approx(10 * (24e6 - 24e4) * DECODE_NS_OTHER * 1e-9)
    assert "decoding the images priced by their pixels" in heavy.basis
    robust = robustness.estimate(explorer, robustness.Request.create(explorer, [many_big], ["resnet18"], ["fog"], [3]))
    assert robust.seconds > 10 * 24e6 * DECODE_NS_OTHER * 1e-9


def test_a_landscape_counts_the_images_in_a_zip(explorer, tmp_path):
    """A zip of extra images was counted as one image (43 s estimated, stopped at the deadline)."""
    from zoo.landscape import grid_points

    photos = _zip_of(tmp_path / "set.zip", EXAMPLES / "chelsea.png", 5)
    per_image = grid_points(7, 2) + 1
    one = surface(explorer, ["resnet18"], 1, 7, 2)
    assert one.forwards == per_image
    # The uploaded image and a zip of five: six images, each a forward per grid point.
    image = str(EXAMPLES / "chelsea.png")
    six = surface(explorer, ["resnet18"], 0, 7, 2, sources=[image, photos], max_images=8)
    assert six.forwards == 6 * per_image  # decoding six small files: well under a forward's worth
    # Before the upload (the page pricing its settings) the image counts as one; the cap holds.
    assert surface(explorer, ["resnet18"], 1, 7, 2, sources=[photos], max_images=8).forwards == six.forwards
    assert surface(explorer, ["resnet18"], 0, 7, 2, sources=[image, photos], max_images=3).forwards == 3 * per_image
