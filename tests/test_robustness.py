"""Robustness lab (issue 19): corruptions, seeds, the sweep, a folder's accuracy/CE/mCE, Stop, limits.

References are written here from their sources, never from zoo's code: the ImageNet-C
formulas from Hendrycks' ``imagenet_c/corruptions.py`` (hendrycks/robustness), plain
torchvision on the saved PNGs, and accuracy/CE/mCE counted from the CLI's JSON lines.
"""

from __future__ import annotations

import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file

from conftest import run_cli
from zoo import cancel
from zoo import robustness as rb
from zoo.limits import Gate, LimitError, Limits
from zoo.service import Explorer

FAST = ("gaussian_noise", "impulse_noise", "contrast", "jpeg_compression", "pixelate", "fog")


def crop(seed: int = 0) -> np.ndarray:
    """A 224 x 224 uint8 crop with edges, flat areas and noise (what a model would see)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((224, 224, 3), dtype=np.uint8)
    x[:, :112] = rng.integers(0, 256, 3, dtype=np.uint8)
    x[:, 112:] = rng.integers(0, 256, 3, dtype=np.uint8)
    x[60:160, 60:160] = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    return x


def library_output(x: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """corrupt-tta itself, seeded as its README says (NumPy's global generator), as uint8."""
    import corrupt_tta

    rb.library()  # impulse noise: the unseeded scikit-image call draws its seed from NumPy's generator too
    np.random.seed(seed)
    return np.uint8(np.clip(corrupt_tta.corrupt(x, severity=severity, corruption_name=name), 0, 255))


# --- the corruptions --------------------------------------------------------------------------

def test_the_table_has_the_19_corruptions_of_the_library():
    import corrupt_tta

    assert {c.name for c in rb.CORRUPTIONS} == set(corrupt_tta.corruption_dict)
    assert sum(c.imagenet_c for c in rb.CORRUPTIONS) == 15
    assert rb.get_corruption("JPEG").name == "jpeg_compression" and rb.get_corruption("Gaussian noise").seeded
    with pytest.raises(rb.UnknownCorruptionError, match="choose from"):
        rb.get_corruption("rain")
    with pytest.raises(rb.UnknownCorruptionError, match="from 1 to 5"):
        rb.severity_list([6])


@pytest.mark.parametrize("name", ["contrast", "brightness", "jpeg_compression", "pixelate", "defocus_blur",
                                  "saturate", "gaussian_blur"])
def test_deterministic_corruptions_equal_the_library_exactly(name):
    x = crop(1)
    for severity in (1, 3, 5):
        ours = rb.corrupt_array(x, name, severity, seed=rb.sample_seed(0, "a", name, severity))
        assert ours.dtype == np.uint8 and ours.shape == x.shape
        np.testing.assert_array_equal(ours, library_output(x, name, severity, seed=12345))


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "fog", "frost",
                                  "snow", "spatter", "elastic_transform", "speckle_noise"])
def test_seeded_corruptions_equal_the_library_with_the_same_seed_and_reproduce(name):
    x = crop(2)
    seed = rb.sample_seed(7, "cat.png", name, 3)
    ours = rb.corrupt_array(x, name, 3, seed)
    np.testing.assert_array_equal(ours, library_output(x, name, 3, seed))
    np.testing.assert_array_equal(ours, rb.corrupt_array(x, name, 3, seed))  # reproduces
    assert (ours != rb.corrupt_array(x, name, 3, seed + 1)).any()  # and the seed matters


def test_seeds_hold_across_threads_and_leave_numpy_alone():
    """Each call has its own generator: in a pool, in any order, the same crops; NumPy's global
    generator is neither read nor moved by them."""
    x = crop(3)
    jobs = [(n, s) for n in ("gaussian_noise", "impulse_noise", "fog", "spatter") for s in (1, 2, 3, 4, 5)]
    alone = [rb.corrupt_array(x, n, s, rb.sample_seed(0, "x", n, s)) for n, s in jobs]
    np.random.seed(99)
    before = np.random.get_state()[1].copy()
    with ThreadPoolExecutor(4) as pool:
        pooled = list(pool.map(lambda job: rb.corrupt_array(x, job[0], job[1], rb.sample_seed(0, "x", *job)),
                               jobs[::-1]))[::-1]
    assert (np.random.get_state()[1] == before).all()
    for a, b in zip(alone, pooled):
        np.testing.assert_array_equal(a, b)


def test_sample_seeds_depend_on_every_part():
    base = rb.sample_seed(0, "a.png", "fog", 2)
    assert base == rb.sample_seed(0, "a.png", "fog", 2)
    others = {rb.sample_seed(1, "a.png", "fog", 2), rb.sample_seed(0, "b.png", "fog", 2),
              rb.sample_seed(0, "a.png", "snow", 2), rb.sample_seed(0, "a.png", "fog", 3)}
    assert base not in others and len(others) == 4


# --- the published formulas (Hendrycks' imagenet_c/corruptions.py, written out here) -------------

def test_gaussian_and_shot_noise_follow_imagenet_c():
    x = crop(4)
    for s, (c_gauss, c_shot) in enumerate(zip([.08, .12, 0.18, 0.26, 0.38], [60, 25, 12, 5, 3]), start=1):
        seed = 1000 + s
        rs = np.random.RandomState(seed)
        ref = np.clip(x / 255. + rs.normal(size=x.shape, scale=c_gauss), 0, 1) * 255
        np.testing.assert_array_equal(rb.corrupt_array(x, "gaussian_noise", s, seed), np.uint8(ref))
        rs = np.random.RandomState(seed)
        ref = np.clip(rs.poisson(x / 255. * c_shot) / float(c_shot), 0, 1) * 255
        np.testing.assert_array_equal(rb.corrupt_array(x, "shot_noise", s, seed), np.uint8(ref))


def test_contrast_jpeg_and_pixelate_follow_imagenet_c():
    x = crop(5)
    for s in (1, 2, 3, 4, 5):
        c = [0.4, .3, .2, .1, .05][s - 1]
        y = x / 255.
        means = np.mean(y, axis=(0, 1), keepdims=True)
        np.testing.assert_array_equal(rb.corrupt_array(x, "contrast", s, 0),
                                      np.uint8(np.clip((y - means) * c + means, 0, 1) * 255))
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, "JPEG", quality=[25, 18, 15, 10, 7][s - 1])
        np.testing.assert_array_equal(rb.corrupt_array(x, "jpeg_compression", s, 0), np.asarray(Image.open(buf)))
        c = [0.6, 0.5, 0.4, 0.3, 0.25][s - 1]
        small = Image.fromarray(x).resize((int(224 * c), int(224 * c)), Image.BOX).resize((224, 224), Image.BOX)
        np.testing.assert_array_equal(rb.corrupt_array(x, "pixelate", s, 0), np.asarray(small))


def test_brightness_follows_imagenet_c_within_one_level():
    """ImageNet-C converts with scikit-image's HSV in float64; corrupt-tta with OpenCV's in float32."""
    from skimage.color import hsv2rgb, rgb2hsv

    x = crop(6)
    for s in (1, 3, 5):
        hsv = rgb2hsv(x / 255.)
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + [.1, .2, .3, .4, .5][s - 1], 0, 1)
        ref = np.uint8(np.clip(hsv2rgb(hsv), 0, 1) * 255)
        diff = np.abs(rb.corrupt_array(x, "brightness", s, 0).astype(int) - ref.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.9
