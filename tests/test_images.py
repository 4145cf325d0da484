"""Image decoding against a corpus of hostile and unusual files."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from corpus import EXAMPLES, make_corpus
from zoo.errors import ImageError
from zoo.images import load_image


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_every_file_decodes_or_says_why(corpus):
    for name, (path, err) in corpus.items():
        if err:
            with pytest.raises(ImageError) as e:
                load_image(path)
            assert re.search(err, str(e.value)), (name, str(e.value))
        else:
            loaded = load_image(path)
            assert loaded.image.mode == "RGB" and min(loaded.image.size) >= 1, name


def test_what_was_done_is_said(corpus):
    anim = load_image(corpus["animated.gif"][0])
    assert anim.notes == ["animated image: used the first of 3 frames"]
    assert np.asarray(anim.image)[0, 0].tolist() == [255, 0, 0]  # the first frame
    rgba = load_image(corpus["rgba.png"][0])
    assert "transparent areas shown on white" in rgba.notes
    assert np.asarray(rgba.image)[0].min() == 255  # the transparent top half is white
    assert "transparent areas shown on white" in load_image(corpus["palette-transparent.png"][0]).notes


def test_exif_rotation_is_applied(corpus):
    loaded = load_image(corpus["exif-rotated.png"][0])
    assert "rotated upright from its EXIF orientation" in loaded.notes
    upright = Image.open(EXAMPLES / "chelsea.png").convert("RGB")
    np.testing.assert_array_equal(np.asarray(loaded.image), np.asarray(upright))


def test_sixteen_bit_keeps_its_range(corpus):
    img = np.asarray(load_image(corpus["sixteen-bit.png"][0]).image)
    ref = np.asarray(Image.open(EXAMPLES / "chelsea.png").convert("L"))
    assert abs(int(img[..., 0].astype(int).mean()) - int(ref.mean())) <= 1  # not clipped to white


def test_exif_rotated_photo_is_classified_upright(corpus, zoo, hosted):
    from zoo.inference import classify
    from zoo.models import load_model

    lm = load_model(zoo.get("resnet18"), "cpu")
    rotated = classify(lm, corpus["exif-rotated.png"][0])
    upright = classify(lm, EXAMPLES / "chelsea.png")
    assert [p.index for p in rotated.predictions] == [p.index for p in upright.predictions]
    np.testing.assert_allclose(rotated.probs, upright.probs, atol=1e-6)
