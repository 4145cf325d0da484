"""TorchCAM's CAM family and faithfulness scores, checked against TorchCAM itself.

Each map is compared with TorchCAM's own extractor run directly on plain (unfolded,
fp32, contiguous) torchvision built from the same safetensors; each score with
``torchcam.metrics.DeletionInsertionMetric`` on the same map and model.
"""

from __future__ import annotations

import contextlib
import functools
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from browser import open_page
from conftest import EXAMPLES, hook_count, plain_model
from rest import call, upload
from zoo import explain as zexplain
from zoo.errors import ZooError
from zoo.explain import METHODS, STAGES, explain, stage_channels, takes_layer
from zoo.faithfulness import faithfulness
from zoo.inference import classify
from zoo.models import load_model

TORCHCAM = {"gradcampp": "GradCAMpp", "smoothgradcampp": "SmoothGradCAMpp", "xgradcam": "XGradCAM",
            "layercam": "LayerCAM", "scorecam": "ScoreCAM"}


plain = plain_model


@pytest.fixture(scope="module")
def r18(zoo, hosted):
    return load_model(zoo.get("resnet18"), "cpu", precision="fp32")


@pytest.fixture(scope="module")
def r18_plain(hosted):
    return plain("resnet18", hosted)


@pytest.fixture(scope="module")
def coffee(r18):
    return classify(r18, EXAMPLES / "coffee.png")


def torchcam_map(model: torch.nn.Module, name: str, layer: str, x: torch.Tensor, target: int,
                 **kwargs) -> np.ndarray:
    """TorchCAM's extractor ``name`` on ``model`` exactly as its README shows, unnormalised."""
    import torchcam.methods

    cls = getattr(torchcam.methods, TORCHCAM[name])
    with cls(model, layer, **kwargs) as extractor:
        scores = model(x)
        out = extractor(target, scores, normalized=False)
    return out[0][0].detach().numpy()


def assert_close_map(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# --- the CAM family equals TorchCAM on plain torchvision --------------------------------

@pytest.mark.parametrize("name, layer", [
    ("gradcampp", "layer4"), ("gradcampp", "layer2"), ("xgradcam", "layer4"), ("xgradcam", "layer3"),
    ("layercam", "layer4"), ("layercam", "layer1"), ("smoothgradcampp", "layer4"), ("smoothgradcampp", "layer3"),
])
def test_cam_family_equals_torchcam_on_plain_torchvision(name, layer, r18, r18_plain, coffee, hosted):
    target = coffee.predictions[1].index
    kwargs = {}
    if name == "smoothgradcampp":
        torch.manual_seed(7)  # TorchCAM draws its noise from the global generator
        kwargs = {"num_samples": 3, "std": 0.3}
    ref = torchcam_map(r18_plain, name, layer, coffee.input.clone(), target, **kwargs)
    params = {"samples": 3, "std": 0.3, "seed": 7} if name == "smoothgradcampp" else {}
    ex = explain(r18, coffee, name, target, layer=layer, **params)
    side = 224 // 2 ** (STAGES.index(layer) + 2)
    assert ex.raw.shape == (side, side)
    if name == "smoothgradcampp" and layer != "layer4":
        # Below layer4 Smooth Grad-CAM++'s alpha (g2 / (2 g2 + sum g3 A)) is ill-conditioned: TorchCAM's own
        # fp32 map is ~5e-4 from its fp64 map, and moves as much with the memory layout. So: ours is as
        # close to the exact (fp64) map as TorchCAM's fp32 map is, and within 1e-3 of that map.
        torch.manual_seed(7)
        exact = torchcam_map(plain("resnet18", hosted).double(), name, layer, coffee.input.clone().double(), target,
                             **kwargs)
        err = lambda a, b: np.abs(a - b).max() / np.abs(b).max()  # noqa: E731
        assert err(ex.raw, exact) <= max(1e-4, 3 * err(ref, exact))
        np.testing.assert_allclose(ex.raw, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    else:
        assert_close_map(ex.raw, ref)
    assert hook_count(r18.module) == 0 and hook_count(r18_plain) == 0


def test_scorecam_equals_torchcam(r18, r18_plain, coffee):
    """On layer1: 64 masked forwards each side (layer4 would be 512, minutes on a small CPU); same code."""
    target = coffee.predictions[0].index
    ref = torchcam_map(r18_plain, "scorecam", "layer1", coffee.input.clone(), target, batch_size=32)
    ex = explain(r18, coffee, "scorecam", target, layer="layer1", batch=32)
    assert ex.raw.shape == (56, 56)
    assert_close_map(ex.raw, ref)
    assert hook_count(r18.module) == 0


def test_smoothgradcampp_is_reproducible_and_private(r18, coffee):
    """Same seed, same map, whatever else draws from torch's global generator meanwhile."""
    a = explain(r18, coffee, "smoothgradcampp", layer="layer4", samples=2).raw
    torch.rand(1000)
    b = explain(r18, coffee, "smoothgradcampp", layer="layer4", samples=2).raw
    c = explain(r18, coffee, "smoothgradcampp", layer="layer4", samples=2, seed=1).raw
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# --- layers ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer", STAGES)
def test_every_stage_for_the_gradient_methods(layer, r18, coffee):
    from captum.attr import LayerGradCam

    side = 224 // 2 ** (STAGES.index(layer) + 2)
    for name in ("gradcam", "gradcampp", "xgradcam", "layercam"):
        assert takes_layer(name)
        assert explain(r18, coffee, name, layer=layer).raw.shape == (side, side)
    assert explain(r18, coffee, "guided-gradcam", layer=layer).raw.shape == (224, 224)
    # Captum's Grad-CAM on that stage, run directly on the same module
    x = r18.to_input(coffee.input.clone()).requires_grad_(True)
    target = coffee.predictions[0].index
    with zexplain.hooks_restored(r18.module), torch.enable_grad():
        ref = LayerGradCam(r18.module, r18.module.get_submodule(layer)).attribute(x, target=target)
    np.testing.assert_allclose(explain(r18, coffee, "gradcam", layer=layer).raw, ref.detach()[0, 0].numpy(),
                               rtol=1e-5, atol=1e-7)
    assert hook_count(r18.module) == 0


def test_cam_refuses_other_layers_and_says_why(r18, coffee):
    assert explain(r18, coffee, "cam", layer="layer4").raw.shape == (7, 7)
    np.testing.assert_array_equal(explain(r18, coffee, "cam", layer="layer4").raw, explain(r18, coffee, "cam").raw)
    for layer in ("layer1", "layer2", "layer3"):
        with pytest.raises(ZooError, match=f"CAM is exact only on layer4.*global average pooling.*For {layer}"):
            explain(r18, coffee, "cam", layer=layer)
    with pytest.raises(ZooError, match="Unknown layer 'layer5'; choose one of layer1, layer2, layer3, layer4"):
        explain(r18, coffee, "gradcampp", layer="layer5")
    assert not takes_layer("saliency") and not takes_layer("occlusion") and takes_layer("cam")


def test_stage_channels_match_the_models(zoo, hosted):
    for arch in ("resnet18", "resnet50"):
        m = torchvision.models.get_model(arch, weights=None)
        spec = zoo.get(arch)
        for layer in STAGES:
            last = m.get_submodule(layer)[-1]
            out = (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels
            assert stage_channels(spec.arch, layer) == out
    assert stage_channels(zoo.get("resnet152").arch, "layer4") == 2048


def test_bad_parameters_are_clear(r18, coffee):
    with pytest.raises(ZooError, match="Score-CAM's batch"):
        explain(r18, coffee, "scorecam", batch=0)
    with pytest.raises(ZooError, match="between 1 and 64 noisy samples"):
        explain(r18, coffee, "smoothgradcampp", samples=1000)
    assert hook_count(r18.module) == 0


@pytest.mark.parametrize("name", list(TORCHCAM))
def test_hooks_and_modes_restored_after_a_failure_inside_torchcam(name, r18, coffee, monkeypatch):
    import torchcam.methods

    class Boom(RuntimeError):
        pass

    cls = getattr(torchcam.methods, TORCHCAM[name])

    def failing_get_weights(self, *a, **k):
        # a stray hook, a mode change and a requires_grad flip that TorchCAM never undoes
        self.model.layer2.register_forward_hook(lambda *_: None)
        self.model.train()
        self.model.fc.weight.requires_grad_(True)
        raise Boom("failure in the middle of a TorchCAM extractor")

    monkeypatch.setattr(cls, "_get_weights", failing_get_weights)
    before = classify(r18, EXAMPLES / "rocket.jpg")
    with pytest.raises(Boom):
        explain(r18, coffee, name, layer="layer3", **({"batch": 8} if name == "scorecam" else {}))
    assert hook_count(r18.module) == 0
    assert not r18.module.training and not any(m.training for m in r18.module.modules())
    assert all(not p.requires_grad for p in r18.module.parameters())
    assert not r18.lock.locked()
    np.testing.assert_array_equal(classify(r18, EXAMPLES / "rocket.jpg").logits, before.logits)


# --- faithfulness scores ----------------------------------------------------------------

class FixedMap:
    """A stand-in TorchCAM extractor that returns one given map: the metric scores *that* map."""

    def __init__(self, model: torch.nn.Module, raw: np.ndarray):
        self.model = model
        self.raw = torch.from_numpy(raw)[None]

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        cam = self.raw.clone()
        if normalized:  # as TorchCAM's extractors scale their maps
            cam = cam - cam.amin(dim=(1, 2), keepdim=True)
            cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + 1e-8)
        return [cam]

    def fuse_cams(self, cams):
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def torchcam_scores(extractor, x: torch.Tensor, target: int) -> dict[str, float]:
    from torchcam.metrics import DeletionInsertionMetric

    metric = DeletionInsertionMetric(extractor, functools.partial(torch.softmax, dim=-1), steps=20)
    metric.update(x, class_idx=target)
    return metric.summary()


@pytest.mark.parametrize("method", ["cam", "saliency", "layercam"])
def test_scores_equal_torchcams_deletion_insertion_metric(method, r18, r18_plain, coffee):
    target = coffee.predictions[0].index
    raw = explain(r18, coffee, method, target).raw
    ours = faithfulness(r18, coffee, raw, target)
    ref = torchcam_scores(FixedMap(r18_plain, raw), coffee.input.clone(), target)
    assert abs(ours.deletion_auc - ref["deletion_auc"]) <= 1e-4
    assert abs(ours.insertion_auc - ref["insertion_auc"]) <= 1e-4
    assert ours.steps == 20 and ours.forwards == 39 and len(ours.deletion_curve) == len(ours.fractions) == 21
    assert ours.fractions[0] == 0 and ours.fractions[-1] == 1
    assert ours.deletion_curve[0] == ours.insertion_curve[-1] == pytest.approx(float(coffee.probs[target]))
    assert ours.deletion_curve[-1] == ours.insertion_curve[0]


def decisive_square(lm):
    """A grey image with a bright square; class 0 rewired to respond to the square's cell.

    fc row 0 becomes a matched filter (the square cell's features minus the other cells'
    mean), scaled so that deleting the square costs 12 in logit, with a bias that puts
    class 0 first by 3. Returns the new classification and the cell (row-major index).
    """
    arr = np.full((224, 224, 3), 40, np.uint8)
    arr[32:96, 128:192] = 255  # rows 1-2, columns 4-5 of layer4's 7x7 grid
    image = Image.fromarray(arr)
    run = classify(lm, image)
    f = run.features.reshape(run.features.shape[0], -1)
    cell = int(np.argmax(f.sum(0)))
    d = f[:, cell] - np.delete(f, cell, axis=1).mean(1)
    d /= np.linalg.norm(d)
    deleted = run.input.clone()
    deleted[..., 32:96, 128:192] = 0  # what deletion's baseline makes of the square
    with torch.inference_mode():
        f2, _ = lm.forward(lm.to_input(deleted))
    pooled = run.features.mean((1, 2))
    scale = 12 / float(d @ (pooled - f2[0].mean((1, 2)).numpy()))
    with torch.no_grad():
        lm.module.fc.weight[0] = torch.from_numpy(d * scale)
        lm.module.fc.bias[0] = float(run.logits.max() + 3 - scale * d @ pooled)
    return classify(lm, image), cell


def test_a_faithful_map_beats_its_negative(zoo, hosted):
    lm = load_model(zoo.get("resnet18"), "cpu", precision="fp32")  # private: its fc is rewritten below
    run, cell = decisive_square(lm)
    assert run.predictions[0].index == 0 and run.predictions[0].prob > 0.9
    good = explain(lm, run, "cam", 0).raw
    assert int(np.argmax(good)) == cell and cell in (7 * 1 + 4, 7 * 1 + 5, 7 * 2 + 4, 7 * 2 + 5)  # on the square
    g, b = faithfulness(lm, run, good, 0), faithfulness(lm, run, -good, 0)
    # Deleting the square first makes the class fall at once; deleting it last keeps it up for longer.
    assert g.deletion_auc < b.deletion_auc - 0.15
    assert g.insertion_auc > b.insertion_auc + 0.15
    assert g.deletion_curve[2] < 0.5 * g.deletion_curve[0] < b.deletion_curve[2]


def test_scores_leave_the_model_alone_and_refuse_bad_maps(r18, coffee):
    raw = explain(r18, coffee, "gradcampp").raw
    before = hook_count(r18.module)
    a = faithfulness(r18, coffee, raw, coffee.predictions[0].index, steps=5, batch=3)
    b = faithfulness(r18, coffee, raw, coffee.predictions[0].index, steps=5, batch=9)
    assert a.forwards == b.forwards == 9 and len(a.fractions) == 6
    np.testing.assert_allclose(a.deletion_curve, b.deletion_curve, atol=1e-5)
    np.testing.assert_allclose(a.insertion_curve, b.insertion_curve, atol=1e-5)
    assert hook_count(r18.module) == before == 0
    bad = raw.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ZooError, match="non-finite"):
        faithfulness(r18, coffee, bad, 0)


# --- command line -----------------------------------------------------------------------

def test_cli_explain_layer_and_faithfulness_json(zoo_file, hosted, r18, tmp_path):
    from conftest import run_cli

    npy = tmp_path / "map.npy"
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--precision", "fp32", "--method", "gradcampp", "--layer", "layer3", "--faithfulness",
                "--npy", str(npy), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "gradcampp" and out["layer"] == "layer3" and out["shape"] == [14, 14]
    f = out["faithfulness"]
    assert set(f) >= {"deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve", "steps"}
    assert f["steps"] == 20 and len(f["deletion_curve"]) == len(f["insertion_curve"]) == 21
    # the same scores in this process, for the map the CLI wrote
    run = classify(r18, EXAMPLES / "coffee.png")
    raw = np.load(npy)
    np.testing.assert_allclose(raw, explain(r18, run, "gradcampp", layer="layer3").raw, rtol=1e-5, atol=1e-6)
    here = faithfulness(r18, run, raw, out["target"]["index"])
    assert abs(here.deletion_auc - f["deletion_auc"]) <= 1e-4
    assert abs(here.insertion_auc - f["insertion_auc"]) <= 1e-4
    np.testing.assert_allclose(here.deletion_curve, f["deletion_curve"], atol=1e-4)

    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "saliency", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["layer"] is None and out["faithfulness"] is None and out["shape"] == [224, 224]


def test_cli_cam_refuses_other_layers(zoo_file, hosted):
    from conftest import run_cli

    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "cam", "--layer", "layer2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: CAM is exact only on layer4")
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "saliency", "--layer", "layer2")
    assert r.returncode == 2 and "takes no layer" in r.stderr and "Traceback" not in r.stderr


def test_cli_method_all_prints_one_object_per_method(zoo_file, hosted):
    from conftest import run_cli

    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "all", "--layer", "layer1", "--window", "112", "--stride", "112", "--steps", "4",
                "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["method"] for row in rows] == list(METHODS)
    by = {row["method"]: row for row in rows}
    assert "exact only on layer4" in by["cam"]["error"]  # CAM refuses layer1; the others go on
    for name in ("gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam", "scorecam"):
        assert by[name]["layer"] == "layer1" and by[name]["shape"] == [56, 56]
    for name in ("saliency", "integrated-gradients", "occlusion"):
        assert by[name]["layer"] is None and by[name]["shape"] == [224, 224]


# --- the app: /rank_methods, as gradio_client and as an anonymous REST caller -------------

def test_rank_methods_endpoint_with_gradio_client(client, app):
    from gradio_client import handle_file

    _, explorer = app
    gallery, details = client.predict(handle_file(str(EXAMPLES / "coffee.png")), "resnet18", "",
                                      ["cam", "gradcam", "layercam"], api_name="/rank_methods")
    rows = details["methods"]
    assert sorted(r["method"] for r in rows) == ["cam", "gradcam", "layercam"]
    assert [r["deletion_auc"] for r in rows] == sorted(r["deletion_auc"] for r in rows)  # best (lowest) first
    assert details["sort_by"] == "deletion" and details["steps"] == 20
    assert len(gallery) == 3 and all("deletion" in item["caption"] for item in gallery)
    # the same scores computed here, on the app's own model
    lm = explorer.cache.get(explorer.zoo.get("resnet18"))
    run = classify(lm, EXAMPLES / "coffee.png")
    assert details["target"]["index"] == run.predictions[0].index
    for row in rows:
        f = faithfulness(lm, run, explain(lm, run, row["method"]).raw, run.predictions[0].index)
        assert abs(f.deletion_auc - row["deletion_auc"]) <= 1e-4
        assert abs(f.insertion_auc - row["insertion_auc"]) <= 1e-4
        assert row["layer"] == "layer4" and len(row["faithfulness"]["deletion_curve"]) == 21


def test_rank_methods_endpoint_over_raw_rest(app):
    url, _ = app
    image = upload(url, EXAMPLES / "chelsea.png")
    event, data = call(url, "rank_methods", [image, "resnet18", "tabby", ["xgradcam", "saliency"]])
    assert event == "complete", data
    gallery, details = data
    assert details["target"]["label"] == "tabby"
    assert {r["method"] for r in details["methods"]} == {"xgradcam", "saliency"}
    assert {r["layer"] for r in details["methods"]} == {"layer4", None}
    assert len(gallery) == 2 and gallery[0]["image"]["url"].startswith("http")
    # an unknown class is a message, not a traceback
    event, data = call(url, "rank_methods", [image, "resnet18", "tabby kat", ["cam"]])
    assert event == "error" and "Unknown class 'tabby kat'" in json.dumps(data)


def test_classify_endpoint_is_unchanged(client):
    from gradio_client import handle_file

    *_, details = client.predict(handle_file(str(EXAMPLES / "coffee.png")), "resnet18", 3, "layercam", "",
                                 api_name="/classify")
    assert details["method"] == "layercam" and details["shape"] == [7, 7]
    assert "faithfulness" not in details and "layer" not in details


@pytest.mark.browser
def test_browser_method_ranking(app, shots):
    import re
    from playwright.sync_api import expect

    from ui import format as fmt

    url, explorer = app
    keep = {"cam", "gradcam", "layercam"}
    with open_page(url, 1400, 1300) as page:
        page.get_by_role("tab", name="Method ranking").click()
        page.locator("#rank-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.locator("#rank-model input").click()
        page.get_by_role("option", name=re.compile(r"^resnet18 ")).click()
        # Score-CAM's label now counts resnet18's forwards: 512 channels of layer4, + 2
        expect(page.locator("#rank-methods")).to_contain_text("514 forwards", timeout=30_000)
        spec = explorer.zoo.get("resnet18")
        for name in METHODS:
            box = page.get_by_role("checkbox", name=fmt.method_choice(name, spec)[0], exact=True)
            box.set_checked(name in keep)
        page.locator("#rank-button").click()
        expect(page.locator("#rank-info")).to_contain_text("3 of 3 methods scored", timeout=300_000)
        expect(page.locator("#rank-gallery img")).to_have_count(3, timeout=30_000)
        expect(page.locator("#rank-gallery")).to_contain_text("deletion")
        expect(page.locator("#rank-table")).to_contain_text("Layer-CAM")
        expect(page.locator("#rank-info")).to_contain_text("deletion AUC, lowest first")
        page.screenshot(path=str(shots / "browser-rank.png"), full_page=True)
        # Re-sorting needs no new run
        page.get_by_label("Insertion AUC (higher is better)").check()
        expect(page.locator("#rank-info")).to_contain_text("insertion AUC, highest first", timeout=30_000)
        expect(page.locator("#rank-gallery img")).to_have_count(3)
        page.screenshot(path=str(shots / "browser-rank-insertion.png"), full_page=True)

        # Classify & explain: a stage, and "Score this map"
        page.get_by_role("tab", name="Classify & explain").click()
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.get_by_label("Model", exact=True).first.click()
        page.get_by_role("option", name=re.compile(r"^resnet18 ")).click()
        page.get_by_label("Explanation method").click()
        page.get_by_role("option", name="Grad-CAM++", exact=True).click()
        page.locator("#layer-input input").click()
        page.get_by_role("option", name="layer3", exact=True).click()
        page.locator("#score-input input").check()
        page.locator("#classify-button").click()
        expect(page.locator("#result-info")).to_contain_text("from layer3", timeout=300_000)
        expect(page.locator("#faithfulness-info")).to_contain_text("Deletion AUC", timeout=60_000)
        expect(page.locator("#faithfulness-info")).to_contain_text("lower is better")
        page.screenshot(path=str(shots / "browser-classify-score.png"), full_page=True)

        # Compare depths: a faithfulness row per depth and all curves on one plot (two depths, to keep it short)
        page.get_by_role("tab", name="Compare depths").click()
        page.locator("#compare-image input[type=file]").set_input_files(str(EXAMPLES / "rocket.jpg"))
        for name in ("resnet50", "resnet101", "resnet152"):
            page.get_by_role("checkbox", name=name, exact=True).uncheck()
        page.locator("#compare-score input").check()
        page.locator("#compare-button").click()
        expect(page.locator("#compare-faithfulness")).to_contain_text("resnet34", timeout=300_000)
        expect(page.locator("#compare-faithfulness")).to_contain_text("deletion AUC (lower is better)")
        expect(page.locator("#compare-curves .js-plotly-plot")).to_be_visible(timeout=30_000)  # Plotly: an SVG
        expect(page.locator("#compare-chart-data")).to_contain_text("compare-curves")
        page.screenshot(path=str(shots / "browser-compare-score.png"), full_page=True)


def test_compare_scores_every_depth_for_the_shared_class(app):
    from ui.charts import faithfulness_curves
    from ui.views import compare as views
    from zoo.features import compare

    _, explorer = app
    cmp = compare.result(explorer, compare.Request.create(explorer, EXAMPLES / "rocket.jpg", ["resnet18", "resnet34"],
                                                          "gradcampp", faithfulness=True))
    assert all(r.faithfulness is not None and r.explanation.target.index == cmp.target for r in cmp.results)
    for r in cmp.results:
        lm = explorer.cache.get(explorer.zoo.get(r.run.model))
        f = faithfulness(lm, r.run, r.explanation.raw, cmp.target)
        assert f.deletion_auc == pytest.approx(r.faithfulness.deletion_auc, abs=1e-5)
    models = cmp.to_json()["models"]
    assert [m["faithfulness"]["steps"] for m in models] == [20, 20] and models[0]["layer"] == "layer4"
    assert [row[0] for row in views.faithfulness_table(cmp)] == ["resnet18", "resnet34"]
    fig = faithfulness_curves([(r.run.model, r.faithfulness) for r in cmp.results], cmp.target_label)
    assert [t.xaxis for t in fig.data] == ["x", "x2", "x", "x2"]  # deletion, insertion per depth
    assert list(fig.data[1].y) == pytest.approx([float(v) for v in cmp.results[0].faithfulness.insertion_curve])
    assert [t.showlegend for t in fig.data] == [True, False, True, False]  # one entry hides both curves
    assert "<b>ResNet-18</b>" in fig.data[0].hovertemplate and "p(" in fig.data[0].hovertemplate
    plain_cmp = compare.result(explorer, compare.Request.create(explorer, EXAMPLES / "rocket.jpg", ["resnet18"]))
    assert plain_cmp.results[0].faithfulness is None and "faithfulness" not in plain_cmp.to_json()["models"][0]


@pytest.mark.browser
def test_stop_keeps_the_methods_already_scored(app, shots):
    """Issue 31 item 8: Stop during a ranking keeps the methods scored before it (gallery, table, curves)."""
    import re
    from playwright.sync_api import expect

    from ui import format as fmt

    url, explorer = app
    keep = ("cam", "scorecam")  # CAM first (a moment); Score-CAM's 514 forwards are still running at Stop
    with open_page(url, 1400, 1300) as page:
        page.get_by_role("tab", name="Method ranking").click()
        page.locator("#rank-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.locator("#rank-model input").click()
        page.get_by_role("option", name=re.compile(r"^resnet18 ")).click()
        expect(page.locator("#rank-methods")).to_contain_text("514 forwards", timeout=30_000)
        spec = explorer.zoo.get("resnet18")
        for name in METHODS:
            page.get_by_role("checkbox", name=fmt.method_choice(name, spec)[0], exact=True).set_checked(name in keep)
        page.locator("#rank-button").click()
        expect(page.locator("#rank-info")).to_contain_text("1 of 2 methods scored", timeout=300_000)
        page.locator("#rank-stop").click()
        expect(page.locator("#rank-info")).to_contain_text("Stopped.", timeout=60_000)
        page.wait_for_timeout(1000)  # anything the stopped run would still write has arrived
        expect(page.locator("#rank-info")).to_contain_text("methods scored before Stop stay shown")
        expect(page.locator("#rank-gallery img")).to_have_count(1)
        expect(page.locator("#rank-table")).to_contain_text("CAM")
        expect(page.locator("#rank-table")).not_to_contain_text("Score-CAM")
        page.screenshot(path=str(shots / "browser-rank-stopped.png"), full_page=True)
