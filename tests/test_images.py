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


def test_only_the_promised_formats_are_decoded(tmp_path, monkeypatch):
    """EPS is refused without Pillow's EPS plugin (and so Ghostscript) ever running."""
    from PIL import EpsImagePlugin

    from corpus import EPS, save
    from zoo.images import FORMAT_NAMES, FORMATS

    calls: list[str] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append("Ghostscript"))
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: calls.append("EpsImageFile._open"))
    eps = tmp_path / "drawing.eps"
    eps.write_bytes(EPS)
    for source in (eps, EPS):
        with pytest.raises(ImageError, match=re.escape(f"is not an image in a format accepted here ({FORMAT_NAMES})")):
            load_image(source)
    assert calls == []

    small = Image.new("RGB", (32, 24), (10, 200, 30))
    for fmt in ("ICO", "PPM", "TGA", "PCX", "SGI", "IM", "DDS", "QOI"):
        with pytest.raises(ImageError, match="not an image in a format accepted here"):
            load_image(save(small, fmt), name=f"x.{fmt.lower()}")
    assert set(FORMATS) == {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}
    for fmt in FORMATS + ("MPO",):  # MPO: the multi-picture JPEG of phone cameras
        kw = {"save_all": True, "append_images": [small]} if fmt == "MPO" else {}
        loaded = load_image(save(small, fmt, **kw), name=f"x.{fmt.lower()}")
        assert loaded.image.size == (32, 24) and loaded.image.mode == "RGB", fmt


def test_paths_that_are_not_regular_files_are_refused_at_once(tmp_path):
    import os
    import threading

    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    out: list[BaseException] = []
    t = threading.Thread(target=lambda: out.append(pytest.raises(ImageError, load_image, fifo).value), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():  # unblock the reader so the thread can end
        with open(fifo, "wb"):
            pass
    assert out and "FIFO (named pipe), not a regular file" in str(out[0])
    with pytest.raises(ImageError, match="a directory, not a regular file"):
        load_image(tmp_path)
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="a character device, not a regular file"):
        load_image(link)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")


def test_huge_canvas_is_refused_from_its_header_before_decoding(monkeypatch):
    from PIL import ImageFile

    from corpus import bomb_png
    from zoo.errors import ImageTooLargeError

    decoded: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or real_load(self))
    data = bomb_png(9400, 9400)  # a few hundred bytes declaring 88 megapixels
    with pytest.raises(ImageTooLargeError, match=r"9400x9400 pixels; the limit is 40 megapixels"):
        load_image(data, name="bomb.png")
    assert decoded == []


def test_running_out_of_memory_while_decoding_is_a_clean_refusal(monkeypatch):
    from PIL import ImageFile

    from corpus import photo, save
    from zoo.errors import ImageTooLargeError

    def no_memory(self):
        raise MemoryError

    data = save(photo(), "PNG")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_memory)
    with pytest.raises(ImageTooLargeError, match=r"cat\.png \(451x300\) needs more memory.*Send a smaller image"):
        load_image(data, name="cat.png")


def test_many_frames_decode_only_the_first():
    from corpus import many_frame_gif

    data = many_frame_gif(10_000, 1000, 1000)
    assert len(data) < 400_000
    loaded = load_image(data, name="dots.gif")
    assert loaded.image.size == (1000, 1000)
    assert len(loaded.notes) == 1 and re.fullmatch(r"animated image: used the first of \d{4,} frames", loaded.notes[0])
