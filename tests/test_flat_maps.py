"""Flat maps are flagged: an all-zero or constant map says so, says why, and suggests CAM.

The all-zero case is found independently with plain torchvision: for a ResNet (global
average pooling, then fc) Grad-CAM at layer4 is ReLU(CAM) / 49, so its map is all zero
exactly when the class's CAM, sum_k w_ck A_k(x, y), is <= 0 everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import load_file

from conftest import EXAMPLES, run_cli
from zoo.explain import METHODS, explain, flat_map_notes
from zoo.inference import classify
from zoo.models import load_model


def test_flat_map_notes_on_synthetic_maps():
    gradcam, cam, ig = METHODS["gradcam"], METHODS["cam"], METHODS["integrated-gradients"]
    [zero] = flat_map_notes(gradcam, np.zeros((7, 7), np.float32), "tabby")
    assert "all zero" in zero and "ReLU" in zero and "positive evidence" in zero and "try it" in zero
    assert "tabby" in zero and "CAM" in zero
    [const] = flat_map_notes(ig, np.full((224, 224), 0.25, np.float32), "tabby")
    assert "constant (0.25 everywhere)" in const and "CAM" in const
    [nan] = flat_map_notes(gradcam, np.array([[np.nan, 1.0]], np.float32), "tabby")
    assert "not finite" in nan
    [cam_zero] = flat_map_notes(cam, np.zeros((7, 7), np.float32), "tabby")
    assert "try it" not in cam_zero  # CAM does not suggest itself
    assert flat_map_notes(gradcam, np.array([[0.0, 0.0], [0.0, 1e-3]], np.float32), "tabby") == []
    assert flat_map_notes(ig, np.array([[-1.0, 2.0]], np.float32), "tabby") == []


def plain_torchvision_cam(weights, image_input: torch.Tensor) -> np.ndarray:
    """(1000, 7, 7) CAMs of every class, from plain torchvision resnet18 (BN not folded) in fp32."""
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(load_file(str(weights)))
    net.eval()
    feats = {}
    net.layer4.register_forward_hook(lambda _m, _i, out: feats.__setitem__("a", out))
    with torch.no_grad():
        net(image_input.float())
    a = feats["a"][0]  # (512, 7, 7)
    return torch.einsum("ck,khw->chw", net.fc.weight.detach(), a).numpy()


@pytest.fixture(scope="module")
def zero_case(zoo, hosted):
    """resnet18, chelsea, and a class whose Grad-CAM is all zero by the independent computation."""
    lm = load_model(zoo.get("resnet18"), "cpu", precision="fp32")  # as the fp32 reference below
    run = classify(lm, EXAMPLES / "chelsea.png")
    cams = plain_torchvision_cam(hosted["resnet18"].path, run.input)
    candidates = [int(c) for c in np.argsort(run.logits)[:100] if (cams[c] <= 0).all()]
    assert candidates, "no class with a non-positive CAM everywhere among the 100 least likely"
    return lm, run, candidates[0]


def test_all_zero_gradcam_is_flagged_and_cam_is_not(zero_case):
    lm, run, c = zero_case
    ex = explain(lm, run, "gradcam", c)
    assert not ex.raw.any()
    [note] = ex.notes
    assert "all zero" in note and "ReLU" in note and "CAM" in note and run.labels[c] in note
    cam = explain(lm, run, "cam", c)
    assert cam.notes == [] and (cam.raw <= 1e-6).all() and cam.raw.min() < 0  # negative evidence, shown
    assert explain(lm, run, "gradcam", run.predictions[0].index).notes == []  # the top class has a map


def test_cli_explain_prints_the_note_and_json_carries_it(zero_case, zoo_file):
    _, run, c = zero_case
    args = ("explain", str(EXAMPLES / "chelsea.png"), "--model", "resnet18", "--method", "gradcam",
            "--target", str(c), "--precision", "fp32", "--zoo", str(zoo_file))
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["target"]["index"] == c
    assert any("all zero" in n and "try it" in n for n in out["notes"]), out["notes"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert any(ln.startswith("note: ") and "all zero" in ln for ln in r.stdout.splitlines()), r.stdout


def test_app_info_text_and_api_json_carry_the_note(zero_case, app, client):
    from gradio_client import handle_file

    from ui.views.classify import result_markdown
    from zoo.features.classify import Result

    lm, run, c = zero_case
    ex = explain(lm, run, "gradcam", c)
    text = result_markdown(Result(run, ex, "gradcam", 0.1))
    assert "all zero" in text and "CAM" in text
    *_, details = client.predict(handle_file(str(EXAMPLES / "chelsea.png")), "resnet18", 5, "gradcam", str(c),
                                 api_name="/classify")
    assert details["target"]["index"] == c
    assert any("all zero" in n for n in details["notes"]), details["notes"]
