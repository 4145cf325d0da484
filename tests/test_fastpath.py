"""The fast path: BatchNorm folded, channels-last, reduced precision only where native.

Every figure is checked against plain (unfused, fp32, contiguous) torchvision built in
the test from the same safetensors file.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torchvision

from conftest import EXAMPLES, plain_model
from zoo import precision
from zoo.explain import explain, hooks_restored
from zoo.images import load_image, model_crop, to_tensor
from zoo.inference import classify
from zoo.models import PrecisionUnavailableError, load_model, resolve_precision

EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))


plain = plain_model


def plain_input(lm, path):
    pre = lm.spec.preprocessing
    return to_tensor(model_crop(load_image(path).image, pre), pre)


@pytest.fixture(scope="module")
def r50(zoo, hosted):
    return load_model(zoo.get("resnet50"), "cpu", precision="fp32")


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_folded_fp32_equals_plain_torchvision(arch, zoo, hosted):
    lm = load_model(zoo.get(arch), "cpu", precision="fp32")
    ref = plain(arch, hosted)
    for path in EXAMPLE_FILES:
        run = classify(lm, path, top_k=5)
        with torch.inference_mode():
            p = torch.softmax(ref(plain_input(lm, path)), 1)[0].numpy()
        assert run.precision == "fp32"
        np.testing.assert_allclose(run.probs, p, atol=1e-4)
        assert run.predictions[0].index == int(p.argmax())


# What bf16 promises against fp32 (same top-1, probabilities within a stated bound) is
# checked in tests/test_precision.py, where the CPU runs bf16 natively.


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_cam_is_exact_at_every_precision(r50, dtype):
    """mean(CAM) + bias equals the *reported* logit: pooling and fc run in fp32 on the same features."""
    lm = dataclasses.replace(r50, precision=dtype)
    run = classify(lm, EXAMPLES / "chelsea.png")
    bias = lm.module.fc.bias.numpy()
    for c in [run.predictions[0].index, run.predictions[3].index, 0, 999]:
        raw = explain(lm, run, "cam", c).raw
        assert abs(raw.mean() + bias[c] - run.logits[c]) <= 1e-4 * max(1.0, abs(run.logits[c]))


@pytest.mark.parametrize("method, params", [("gradcam", {}), ("saliency", {}),
                                            ("integrated-gradients", {"steps": 4})])
def test_captum_maps_of_the_folded_model_equal_the_plain_model(r50, hosted, method, params):
    from captum.attr import IntegratedGradients, LayerGradCam, Saliency

    run = classify(r50, EXAMPLES / "coffee.png")
    c = run.predictions[0].index
    ours = explain(r50, run, method, c, **params).raw
    ref_model = plain("resnet50", hosted).requires_grad_(False)
    x = plain_input(r50, EXAMPLES / "coffee.png").requires_grad_(True)
    with hooks_restored(ref_model):
        if method == "gradcam":
            ref = LayerGradCam(ref_model, ref_model.layer4).attribute(x, target=c)[0, 0]
        elif method == "saliency":
            ref = Saliency(ref_model).attribute(x, target=c, abs=True)[0].abs().sum(0)
        else:
            ref = IntegratedGradients(ref_model).attribute(x, baselines=torch.zeros_like(x), target=c,
                                                           n_steps=4)[0].sum(0)
    ref = ref.detach().numpy()
    if method == "gradcam":
        np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-4 * np.abs(ref).max())
    else:
        # Pixel-level gradients pass ~50 ReLU gates; fp32 rounding (folding, or merely
        # channels-last) flips a few near-zero gates, which moves a few pixels. The maps
        # must agree as maps: relative L2 error under 1 %, correlation above 0.999.
        assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-2
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999


def test_fp32_is_never_silently_changed_and_bf16_is_refused_where_not_native(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)
    assert resolve_precision("auto", cpu) is None
    with pytest.raises(PrecisionUnavailableError, match="neither AMX nor AVX-512 BF16.*--precision fp32"):
        resolve_precision("bf16", cpu)
    with pytest.raises(PrecisionUnavailableError, match="fp16"):
        resolve_precision("fp16", cpu)
    assert precision.precision_candidates("auto", cpu) == ["fp32"]  # auto weighs only what runs natively
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    # auto starts at fp32 and measures bf16 against it (zoo.autotune, tests/test_autotune.py)
    assert resolve_precision("auto", cpu) is None and precision.precision_candidates("auto", cpu) == ["fp32", "bf16"]
    assert resolve_precision("fp32", cpu) is None  # asked for fp32: fp32, even where bf16 is native
    monkeypatch.setenv("ZOO_PRECISION", "fp32")
    assert resolve_precision(None, cpu) is None
    with pytest.raises(PrecisionUnavailableError, match="Unknown precision"):
        resolve_precision("int8", cpu)


def test_loading_traces_nothing(zoo, hosted, monkeypatch):
    """No FX tracing at load: the model is torchvision's own module tree."""
    import torch.fx

    def boom(*a, **k):
        raise AssertionError("traced at load")

    monkeypatch.setattr(torch.fx.Tracer, "trace", boom)
    lm = load_model(zoo.get("resnet18"), "cpu")
    assert type(lm.module) is torchvision.models.ResNet


def test_cli_and_json_say_which_precision_and_device(zoo_file, hosted):
    import json

    from conftest import run_cli

    out = run_cli("classify", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--json", "--precision", "fp32",
                  "--zoo", str(zoo_file))
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["precision"] == "fp32" and got["device"] == "cpu"
    if not precision.cpu_bf16_native():
        bad = run_cli("classify", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--precision", "bf16",
                      "--zoo", str(zoo_file))
        assert bad.returncode == 2 and "Use --precision fp32 or auto" in bad.stderr and "Traceback" not in bad.stderr



def test_classification_never_runs_another_requests_hooks(r50):
    """An explanation's hooks on the shared module (Captum's on layer4, Guided Grad-CAM's on
    every ReLU) must not fire inside a concurrent request's classification."""
    fired = []
    handles = [r50.module.layer4.register_forward_hook(lambda *a: fired.append("layer4")),
               r50.module.layer1[0].relu.register_forward_hook(lambda *a: fired.append("relu")),
               torch.nn.modules.module.register_module_forward_hook(lambda *a: fired.append("global"))]
    try:
        run = classify(r50, EXAMPLES / "chelsea.png")
    finally:
        for h in handles:
            h.remove()
    assert fired == []
    ref = classify(r50, EXAMPLES / "chelsea.png")
    np.testing.assert_array_equal(run.logits, ref.logits)
