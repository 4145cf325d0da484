"""Explanations: CAM is exact, equals Grad-CAM without ReLU, leaves no hooks, lines up with the image."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ARCHS, EXAMPLES, hook_count
from zoo.errors import UnknownMethodError, ZooError
from zoo.explain import METHODS, explain, hooks_restored
from zoo.inference import classify
from zoo.models import load_model
from zoo.render import heat_on_crop, heat_on_image


@pytest.fixture(scope="module")
def r18(zoo, hosted):
    # fp32 whatever the CPU: its maps are compared with Captum run on the same module in fp32.
    return load_model(zoo.get("resnet18"), "cpu", precision="fp32")


@pytest.mark.parametrize("arch", ARCHS)
def test_cam_is_exact_for_every_depth(arch, zoo, hosted):
    # fp32 here; tests/test_fastpath.py checks the same identity with a bf16 trunk.
    lm = load_model(zoo.get(arch), "cpu", precision="fp32")
    run = classify(lm, EXAMPLES / "chelsea.png")
    bias = lm.module.fc.bias.detach().numpy()
    for c in [run.predictions[0].index, run.predictions[4].index, 281, 999]:
        raw = explain(lm, run, "cam", c).raw
        assert raw.shape == (7, 7)
        logit = run.logits[c]
        assert abs(raw.mean() + bias[c] - logit) <= 1e-4 * max(1.0, abs(logit))


def test_cam_equals_layer_gradcam_without_relu_times_area(r18):
    from captum.attr import LayerGradCam

    run = classify(r18, EXAMPLES / "coffee.png")
    for c in [run.predictions[0].index, 17]:
        cam = explain(r18, run, "cam", c).raw
        x = run.input.clone().requires_grad_(True)
        with hooks_restored(r18.module):
            ref = LayerGradCam(r18.module, r18.module.layer4).attribute(x, target=c, relu_attributions=False)
        ref = ref.detach()[0, 0].numpy() * cam.size
        np.testing.assert_allclose(cam, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        np.testing.assert_allclose(explain(r18, run, "gradcam", c).raw, np.maximum(ref / cam.size, 0), rtol=1e-4,
                                   atol=1e-6)


@pytest.mark.parametrize("method, params, shape", [
    ("cam", {}, (7, 7)), ("gradcam", {}, (7, 7)), ("guided-gradcam", {}, (224, 224)),
    ("integrated-gradients", {"steps": 4}, (224, 224)), ("saliency", {}, (224, 224)),
    ("occlusion", {"window": 112, "stride": 112}, (224, 224)),
])
def test_every_method_leaves_the_model_as_it_was(r18, method, params, shape):
    run = classify(r18, EXAMPLES / "rocket.jpg")
    before_hooks = hook_count(r18.module)
    ex = explain(r18, run, method, None, **params)
    assert ex.raw.shape == shape and ex.raw.dtype == np.float32 and np.isfinite(ex.raw).all()
    assert ex.target == run.predictions[0]
    assert hook_count(r18.module) == before_hooks == 0
    assert not r18.module.training and all(not p.requires_grad for p in r18.module.parameters())
    again = classify(r18, EXAMPLES / "rocket.jpg")
    np.testing.assert_array_equal(again.logits, run.logits)
    assert METHODS[method].cost


def test_hooks_are_removed_when_a_method_fails(r18, monkeypatch):
    run = classify(r18, EXAMPLES / "rocket.jpg")

    class Boom(RuntimeError):
        pass

    def failing_forward(_module, _inp, _out):
        raise Boom("failure in the middle of an attribution")

    from captum.attr import LayerGradCam

    original = LayerGradCam.attribute

    def attribute_then_fail(self, *a, **k):
        r18.module.layer2.register_forward_hook(failing_forward)  # a hook Captum never removes
        return original(self, *a, **k)

    monkeypatch.setattr(LayerGradCam, "attribute", attribute_then_fail)
    with pytest.raises(Boom):
        explain(r18, run, "gradcam")
    assert hook_count(r18.module) == 0
    assert not r18.lock.locked()
    np.testing.assert_array_equal(classify(r18, EXAMPLES / "rocket.jpg").logits, run.logits)


def test_concurrent_requests_do_not_see_each_other(r18):
    images = [EXAMPLES / n for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")]
    alone = {}
    for img in images:
        run = classify(r18, img)
        alone[img] = (explain(r18, run, "cam").raw, explain(r18, run, "gradcam").raw)
    errors, results = [], {}

    def worker(img):
        try:
            for _ in range(2):
                run = classify(r18, img)
                results[img] = (explain(r18, run, "cam").raw, explain(r18, run, "gradcam").raw)
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(img,)) for img in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for img in images:
        np.testing.assert_allclose(results[img][0], alone[img][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(results[img][1], alone[img][1], rtol=1e-5, atol=1e-5)
    assert hook_count(r18.module) == 0


def test_bad_method_and_parameters(r18):
    run = classify(r18, EXAMPLES / "rocket.jpg")
    with pytest.raises(UnknownMethodError, match="deeplift.*choose one of cam"):
        explain(r18, run, "deeplift")
    with pytest.raises(ZooError, match="stride <= window"):
        explain(r18, run, "occlusion", window=8, stride=16)
    assert "deeplift" not in METHODS


def test_cam_peak_lands_on_the_square_in_both_views(zoo, hosted):
    """A bright square off-centre in a wide image; weights made so one class answers to it."""
    lm = load_model(zoo.get("resnet18"), "cpu")
    W, H, side = 480, 320, 70
    x0, y0 = 300, 90  # inside the centre crop (x 80..400 of 480), right of centre, near the top
    arr = np.full((H, W, 3), 40, np.uint8)
    arr[y0:y0 + side, x0:x0 + side] = 255
    img = Image.fromarray(arr)
    run = classify(lm, img)
    f = run.features  # (512, 7, 7)
    # Where the square falls on the 7x7 grid: map its centre into crop coordinates.
    sx, sy = run.geometry.scale
    cx = ((x0 + side / 2) * sx - run.geometry.left) / run.geometry.crop * 7
    cy = ((y0 + side / 2) * sy - run.geometry.top) / run.geometry.crop * 7
    i, j = int(cy), int(cx)
    # Class 0 := matched filter of the square's cell against the rest (a class that "likes" the square).
    rest = np.delete(f.reshape(512, -1), i * 7 + j, axis=1).mean(1)
    w = f[:, i, j] - rest
    with torch.no_grad():
        lm.module.fc.weight[0] = torch.from_numpy(w)
    try:
        raw = explain(lm, run, "cam", 0).raw
        assert np.unravel_index(raw.argmax(), raw.shape) == (i, j)
        # crop view: pixel coordinates of the model's 224x224 crop, shown at 448
        crop_heat = heat_on_crop(raw, run.geometry.crop, 448)
        py, px = np.unravel_index(np.nanargmax(crop_heat), crop_heat.shape)
        ox = px / 2 + run.geometry.left
        oy = py / 2 + run.geometry.top
        assert x0 <= ox / sx <= x0 + side and y0 <= oy / sy <= y0 + side
        # whole-image view: original pixel coordinates; NaN outside the crop
        full = heat_on_image(raw, run.geometry)
        py, px = np.unravel_index(np.nanargmax(full), full.shape)
        assert x0 <= px <= x0 + side and y0 <= py <= y0 + side
        l, t, r, b = run.geometry.box
        assert np.isnan(full[:, : int(l) - 1]).all() and np.isnan(full[:, int(np.ceil(r)) + 1:]).all()
        assert not np.isnan(full[int(t) + 1: int(b) - 1, int(l) + 1: int(r) - 1]).any()
    finally:
        lm.module.fc.weight.zero_()  # this model instance is private to the test


def test_expensive_parameters_are_refused_before_any_pass(r18, monkeypatch):
    """The page's sliders are a hint; a raw API call can send anything."""
    from captum.attr import IntegratedGradients, Occlusion

    from zoo.explain import MAX_IG_STEPS, MAX_OCCLUSION_POSITIONS

    run = classify(r18, EXAMPLES / "rocket.jpg")
    started: list[str] = []
    monkeypatch.setattr(Occlusion, "attribute", lambda *a, **k: started.append("occlusion"))
    monkeypatch.setattr(IntegratedGradients, "attribute", lambda *a, **k: started.append("ig"))
    assert MAX_OCCLUSION_POSITIONS == 400 and MAX_IG_STEPS == 64
    with pytest.raises(ZooError, match=r"3025 window positions.*limit is 400.*window and a stride of at least 11"):
        explain(r18, run, "occlusion", window=8, stride=4)
    with pytest.raises(ZooError, match=r"484 window positions.*stride of at least 10 for a 32 px window"):
        explain(r18, run, "occlusion", window=32, stride=9)
    with pytest.raises(ZooError, match=r"between 4 and 64 steps, got 65"):
        explain(r18, run, "integrated-gradients", steps=65)
    with pytest.raises(ZooError, match=r"'steps' must be a whole number"):
        explain(r18, run, "integrated-gradients", steps=1e9 + 0.5)
    with pytest.raises(ZooError, match=r"'window' must be a whole number"):
        explain(r18, run, "occlusion", window="32")
    assert started == []
    # the same checks answer before a request is queued, for the page's time estimate
    with pytest.raises(ZooError, match="limit is 400"):
        METHODS["occlusion"].passes({"window": 8, "stride": 4}, 224)
    assert METHODS["occlusion"].passes({"window": 32, "stride": 10}, 224) == 400 + 1


@pytest.mark.parametrize("method, params", [
    ("cam", {}), ("gradcam", {}), ("guided-gradcam", {}), ("saliency", {}),
    ("integrated-gradients", {"steps": 6}), ("occlusion", {"window": 112, "stride": 56}),
])
def test_passes_counts_the_images_through_the_network(r18, method, params):
    run = classify(r18, EXAMPLES / "rocket.jpg")
    images: list[int] = []
    handle = r18.module.register_forward_pre_hook(lambda _m, args: images.append(args[0].shape[0]))
    try:
        explain(r18, run, method, None, **params)
    finally:
        handle.remove()
    assert sum(images) == METHODS[method].passes(params, run.input.shape[-1]), images
    assert METHODS["occlusion"].passes() == 7 * 7 + 1 and METHODS["integrated-gradients"].passes() == 16
