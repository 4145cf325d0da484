"""Issue 18, part 1: the sanity check (cascading randomization), held to plain torchvision, SciPy and
scikit-image; the shared model untouched; Stop between steps. Part 5: every stage at once.

Kept small: ResNet-18, cheap methods (Grad-CAM, CAM, edges), fp32.
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import EXAMPLES, plain_model, run_cli
from zoo import cancel, sanity
from zoo.explain import STAGES, LayerError, every_stage, explain
from zoo.images import load_image
from zoo.inference import classify
from zoo.models import load_model
from zoo.features import sanity as feature
from zoo.runtime import Runtime


def checks(rt, image, models, methods=None, progress=None, **kw):
    """The reports after each step (``zoo.features.sanity``): one model's, or every model's so far."""
    req = feature.Request.create(rt, image, models, methods, **kw)
    for done in feature.run(rt, req, progress):
        yield done.reports if len(req.models) > 1 else done.reports[0]


@pytest.fixture(scope="module")
def image():
    return load_image(EXAMPLES / "chelsea.png")


@pytest.fixture(scope="module")
def spec(zoo):
    return zoo.get("resnet18")


@pytest.fixture(scope="module")
def report(spec, image, hosted):
    """One stage-granularity check of Grad-CAM, CAM and the control, shared by several tests."""
    return sanity.sanity_check(spec, image, ["gradcam", "cam", "edges"], seed=3, device="cpu")


def test_generated_weights_have_live_residual_branches(hosted):
    """timm-style init zeroes each block's last BN scale; then randomizing a block would change nothing."""
    m = plain_model("resnet18", hosted)
    for stage in STAGES:
        for block in m.get_submodule(stage):
            assert block.bn2.weight.abs().min() > 0


def test_reinitialization_follows_torchvision_rules():
    import torchvision

    m = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(7.0)
        for b in m.buffers():
            if b.is_floating_point():
                b.fill_(7.0)
    assert sanity.reinitialize(m.layer4, "layer4", seed=1) > 0
    conv = m.layer4[0].conv2  # 3x3, 512 -> 512: fan_out = 512 * 9
    assert float(conv.weight.detach().std()) == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    bn = m.layer4[0].bn3
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert torch.equal(m.layer4[0].downsample[1].running_var, torch.ones(2048))
    assert bool((m.layer3[0].conv1.weight == 7.0).all()) and bool((m.fc.weight == 7.0).all())  # untouched
    sanity.reinitialize(m.fc, "fc", seed=1)
    bound = 1 / math.sqrt(2048)
    fc = m.fc.weight.detach().abs().max()
    assert float(fc) <= bound and float(fc) > 0.9 * bound
    assert float(m.fc.bias.detach().abs().max()) <= bound
    # The same seed and name draw the same weights; another seed other weights.
    again = torchvision.models.resnet50(weights=None)
    sanity.reinitialize(again.layer4, "layer4", seed=1)
    assert torch.equal(again.layer4[0].conv2.weight, conv.weight)
    sanity.reinitialize(again.layer4, "layer4", seed=2)
    assert not torch.equal(again.layer4[0].conv2.weight, conv.weight)


def test_plan_stage_and_block(spec, hosted):
    m = plain_model("resnet18", hosted)
    assert [s for s, _ in sanity.plan(m, "stage")] == ["fc", "layer4", "layer3", "layer2", "layer1", "stem"]
    blocks = [s for s, _ in sanity.plan(m, "block")]
    assert blocks == ["fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0", "layer1.1",
                      "layer1.0", "stem"]
    assert sanity.step_count(spec, "stage") == 7 and sanity.step_count(spec, "block") == 11
    with pytest.raises(sanity.SanityError, match="granularity"):
        sanity.plan(m, "layer")


def _reference_gradcam(model: torch.nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM at layer4 by Captum on torchvision's own module, upsampled by F.interpolate to the crop."""
    from captum.attr import LayerGradCam

    attr = LayerGradCam(model, model.layer4).attribute(x.clone().requires_grad_(True), target=target,
                                                        relu_attributions=True)
    return F.interpolate(attr.detach(), size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()


def test_report_matches_plain_torchvision_scipy_and_skimage(report, hosted, image, spec):
    """Every step's Grad-CAM, and its similarities, recomputed on plain torchvision (BatchNorm unfolded)
    with the same re-initialisation, by Captum, F.interpolate, scipy.stats.spearmanr and
    skimage.metrics.structural_similarity."""
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    from zoo.inference import prepare

    plain = plain_model("resnet18", hosted)
    x = prepare(image, spec.preprocessing).batch
    target = report.target.index
    with torch.no_grad():
        assert int(plain(x)[0].argmax()) == target  # the original model's top-1
    gc = next(m for m in report.methods if m.method == "gradcam")
    assert [s.randomized for s in gc.steps] == ["none", "fc", "layer4", "layer3", "layer2", "layer1", "stem"]
    plan = dict(sanity.plan(plain, "stage"))
    first = None
    for step, heat in zip(gc.steps, gc.heats):
        for part in plan.get(step.randomized, ()):
            sanity.reinitialize(plain.get_submodule(part), part, seed=3)
        ref = _reference_gradcam(plain, x, target)
        first = ref if first is None else first
        assert heat.shape == (224, 224)
        np.testing.assert_allclose(heat, ref, rtol=1e-3, atol=1e-4 * float(np.abs(ref).max()))
        if step.randomized == "none":
            assert step.spearman_abs == pytest.approx(1.0) and step.ssim == pytest.approx(1.0)
            continue
        rho = spearmanr(np.abs(first).ravel(), np.abs(ref).ravel()).statistic
        signed = spearmanr(first.ravel(), ref.ravel()).statistic
        s = structural_similarity(np.abs(first) / np.abs(first).max(), np.abs(ref) / np.abs(ref).max(),
                                  data_range=1.0)
        assert step.spearman_abs == pytest.approx(rho, abs=0.01), step
        assert step.spearman == pytest.approx(signed, abs=0.01), step
        assert step.ssim == pytest.approx(s, abs=0.01), step


def test_control_keeps_similarity_one_and_verdicts(report):
    edges = next(m for m in report.methods if m.method == "edges")
    assert all(s.spearman_abs == pytest.approx(1.0) and s.ssim == pytest.approx(1.0) for s in edges.steps)
    assert edges.passes is False and edges.layer is None
    gc = next(m for m in report.methods if m.method == "gradcam")
    v = gc.verdict
    assert v.randomized == "layer4" and gc.layer == "layer4"
    assert gc.passes == (abs(v.spearman_abs or 0.0) < sanity.PASS_BELOW and v.ssim < sanity.PASS_BELOW)
    # A network-reading map changes once the weights do.
    assert max(abs(s.spearman_abs or 0.0) for s in gc.steps[1:]) < 0.99


def test_edges_is_sobel_magnitude_of_the_crop(image, spec, hosted):
    from scipy import ndimage

    model = load_model(spec, "cpu", precision="fp32")
    run = classify(model, image)
    ex = explain(model, run, "edges")
    grey = np.asarray(run.crop.convert("L"), dtype=np.float64) / 255.0
    ref = np.hypot(ndimage.sobel(grey, axis=1, mode="mirror"), ndimage.sobel(grey, axis=0, mode="mirror"))
    np.testing.assert_allclose(ex.raw, ref, rtol=1e-5, atol=1e-6)
    assert ex.layer is None and ex.raw.shape == (224, 224)


def test_similarity_helpers_against_libraries():
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 40)), rng.normal(size=(40, 40))
    b[:5] = a[:5]
    a[0, :4] = 0.0  # ties
    assert sanity.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert sanity.ssim(a, b) == pytest.approx(
        structural_similarity(np.abs(a) / np.abs(a).max(), np.abs(b) / np.abs(b).max(), data_range=1.0), abs=1e-12)
    assert sanity.spearman(np.zeros((8, 8)), b[:8, :8]) is None  # a flat map has no ranking


def test_reproducible_and_granularity_independent(spec, image, report, hosted):
    """Same seed: the same maps; a module gets the same weights at either granularity (so the block
    run's map with all of layer4 random equals the stage run's); another seed: other maps."""
    block = sanity.sanity_check(spec, image, ["gradcam"], seed=3, granularity="block", device="cpu")
    gc = block.methods[0]
    assert [s.randomized for s in gc.steps][:4] == ["none", "fc", "layer4.1", "layer4.0"]
    assert len(gc.steps) == 11 and gc.verdict.randomized == "layer4.0"
    stage = next(m for m in report.methods if m.method == "gradcam")
    np.testing.assert_array_equal(gc.heats[3], stage.heats[2])  # layer4.0 (block) == layer4 (stage)
    np.testing.assert_array_equal(gc.heats[-1], stage.heats[-1])  # everything random
    other = sanity.sanity_check(spec, image, ["gradcam"], seed=4, device="cpu")
    assert not np.array_equal(other.methods[0].heats[2], stage.heats[2])
    np.testing.assert_array_equal(other.methods[0].heats[0], stage.heats[0])  # the original is the original


def test_shared_model_untouched_before_during_after(zoo, image, hosted):
    """Classify before, during (between two randomization steps) and after: identical numbers, and
    the cached module's tensors unchanged."""
    explorer = Runtime(zoo, "cpu", precision="fp32")
    shared = explorer.cache.get(zoo.get("resnet18"))
    before_state = {k: v.clone() for k, v in shared.module.state_dict().items()}
    before = classify(shared, image).logits
    during = []

    def progress(fraction, message):
        if "layer3 randomized" in message:  # fc and layer4 of the private copy are random by now
            during.append(classify(shared, image).logits)

    report = feature.result(explorer, feature.Request.create(explorer, image, ["resnet18"], ["cam"]),
                            progress).reports[0]
    assert report.done and during
    after = classify(shared, image).logits
    np.testing.assert_array_equal(before, during[0])
    np.testing.assert_array_equal(before, after)
    for k, v in shared.module.state_dict().items():
        assert torch.equal(v, before_state[k]), k
    assert explorer.cache.loads == {"resnet18": 1}


def test_classify_in_another_thread_while_a_check_runs(zoo, image, hosted):
    explorer = Runtime(zoo, "cpu", precision="fp32")
    shared = explorer.cache.get(zoo.get("resnet18"))
    before = classify(shared, image).logits
    started, seen = threading.Event(), []

    def other():
        started.wait(120)
        seen.append(classify(shared, image).logits)

    t = threading.Thread(target=other)
    t.start()
    for report in checks(explorer, image, ["resnet18"], ["gradcam"]):
        if len(report.methods[0].steps) == 3:
            started.set()
    t.join(120)
    np.testing.assert_array_equal(before, seen[0])


def test_stop_between_steps(zoo, image, hosted):
    explorer = Runtime(zoo, "cpu", precision="fp32")
    token = cancel.Token()
    steps = []
    with cancel.running(token), pytest.raises(cancel.Cancelled):
        for report in checks(explorer, image, ["resnet18"], ["cam", "gradcam"]):
            steps.append(len(report.methods[0].steps))
            if len(steps) == 2:
                token.cancel()
    assert steps == [1, 2]  # nothing ran after the Stop


def test_estimate_and_limit(zoo, image, hosted):
    explorer = Runtime(zoo, "cpu", precision="fp32")
    def est_of(models, methods, granularity="stage"):
        return feature.estimate(explorer, feature.Request.create(explorer, None, models, methods,
                                                                 granularity=granularity))

    est = est_of(["resnet18"], ["cam", "gradcam", "edges"])
    assert est.forwards == 7 * (1 + 0 + 3 + 0)
    assert est_of(["resnet18"], ["gradcam"], "block").forwards == 11 * 4
    assert est_of(["resnet18", "resnet50"], ["gradcam"]).forwards == 2 * 7 * 4
    with pytest.raises(sanity.SanityError, match="limit here is 10"):
        next(checks(explorer, image, ["resnet18"], ["gradcam"], max_forwards=10))
    with pytest.raises(Exception, match="Unknown method"):
        next(checks(explorer, image, ["resnet18"], ["nope"]))


# --- part 5: every stage -------------------------------------------------------------------

@pytest.mark.parametrize("method", ["gradcam", "xgradcam", "layercam", "gradcampp"])
def test_every_stage_equals_one_map_per_stage(spec, image, hosted, method):
    """One forward and one backward (Grad-CAM, XGrad-CAM, Layer-CAM) give what Captum and TorchCAM give
    stage by stage; other methods run once per stage."""
    model = load_model(spec, "cpu", precision="fp32")
    run = classify(model, image)
    maps = every_stage(model, run, method)
    assert [m.layer for m in maps] == list(STAGES)
    assert [m.raw.shape for m in maps] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    for ex in maps:
        ref = explain(model, run, method, layer=ex.layer).raw
        np.testing.assert_allclose(ex.raw, ref, rtol=1e-3, atol=1e-5 * max(1e-12, float(np.abs(ref).max())))


def test_every_stage_refuses_cam_and_input_methods(zoo, image, hosted):
    from zoo.features import classify

    explorer = Runtime(zoo, "cpu", precision="fp32")
    with pytest.raises(LayerError, match="exact only on layer4"):
        classify.Request.create(explorer, image, "resnet18", method="cam", every_stage=True)
    with pytest.raises(LayerError, match="input pixels"):
        classify.Request.create(explorer, image, "resnet18", method="saliency", every_stage=True)
    assert classify.every_stage_estimate(explorer, "resnet18", "gradcam").forwards == 1 + 3
    assert classify.estimate(explorer, classify.Request.create(explorer, None, "resnet18", method="gradcampp",
                                                               every_stage=True)).forwards == 1 + 4 * 3
    stages = classify.result(explorer, classify.Request.create(explorer, image, "resnet18", method="layercam",
                                                               every_stage=True))
    assert [ex.layer for ex in stages.explanations] == list(STAGES) and stages.passes == 3


# --- command line ----------------------------------------------------------------------------

def test_cli_sanity_json_and_npy(zoo_file, tmp_path):
    r = run_cli("sanity", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--methods", "gradcam", "edges", "--seed", "5", "--npy-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"model", "target", "seed", "granularity", "methods"} <= set(out)
    assert out["seed"] == 5 and out["granularity"] == "stage" and out["model"] == "resnet18"
    assert [m["method"] for m in out["methods"]] == ["gradcam", "edges"]
    for m in out["methods"]:
        assert {"method", "layer", "passes", "steps"} <= set(m)
        assert m["steps"][0] == {"randomized": "none", "spearman_abs": 1.0, "spearman": 1.0, "ssim": 1.0}
        assert [s["randomized"] for s in m["steps"]] == ["none", "fc", "layer4", "layer3", "layer2", "layer1",
                                                         "stem"]
    assert out["methods"][1]["passes"] is False
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 14 and "gradcam-none.npy" in files and "edges-stem.npy" in files
    from scipy.stats import spearmanr

    a, b = np.load(tmp_path / "gradcam-none.npy"), np.load(tmp_path / "gradcam-layer4.npy")
    assert a.shape == (224, 224)
    assert out["methods"][0]["steps"][2]["spearman_abs"] == pytest.approx(
        spearmanr(np.abs(a).ravel(), np.abs(b).ravel()).statistic, abs=1e-5)


def test_cli_sanity_text_and_errors(zoo_file):
    r = run_cli("sanity", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--methods", "edges")
    assert r.returncode == 0, r.stderr
    assert "FAILS" in r.stdout and "7 maps" in r.stderr
    r = run_cli("sanity", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--methods", "gradcam", "--granularity", "layer")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_cli_explain_layer_all(zoo_file, tmp_path):
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "gradcam", "--layer", "all", "--npy", str(tmp_path / "m.npy"), "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["layer"] for row in rows] == list(STAGES)
    assert [row["shape"] for row in rows] == [[56, 56], [28, 28], [14, 14], [7, 7]]
    assert all(row["passes"] == 3 for row in rows)
    assert np.load(tmp_path / "m-layer1.npy").shape == (56, 56)
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "layercam", "--layer", "all", "--out", str(tmp_path / "o.png"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Layer-CAM for") == 4 and "one forward and one backward for all four" in r.stdout
    assert (tmp_path / "o-layer4.png").is_file()
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--method", "cam", "--layer", "all")
    assert r.returncode == 2 and "exact only on layer4" in r.stderr


def test_every_depth_streams_one_report_per_depth(zoo, image, hosted):
    explorer = Runtime(zoo, "cpu", precision="fp32")
    seen = []
    for reports in checks(explorer, image, ["resnet18", "resnet34"], ["cam"]):
        seen.append([r.model for r in reports])
    assert seen[0] == ["resnet18"] and seen[-1] == ["resnet18", "resnet34"]
    assert len(seen) == 2 * 7
    assert all(r.done and r.methods[0].method == "cam" for r in reports)
    with pytest.raises(sanity.SanityError, match="limit here is 5"):
        next(checks(explorer, image, ["resnet18", "resnet34"], ["cam"], max_forwards=5))


def test_the_tabs_request_runs_residual_branches_with_smooth_mprt(zoo, hosted, image):
    """Issue 34, item 3, wired: the Sanity tab's one request builder takes the ``residual-branches`` choice
    and the smooth MPRT samples; the feature passes them to the engine, prices them once, and the report
    carries sMPRT and the readings (printed by ``zoo sanity`` under each method)."""
    from types import SimpleNamespace

    from ui.tabs.sanity import GRANULARITY_CHOICES, request
    from zoo.commands.sanity import text

    assert ("Residual branches (each block's branch, top down; stem, shortcuts, fc kept)",
            "residual-branches") in GRANULARITY_CHOICES
    ctx = SimpleNamespace(rt=Runtime(zoo, "cpu", precision="fp32"))
    req = request(ctx, str(EXAMPLES / "chelsea.png"), ["resnet18"], ["cam"], None, "residual-branches", 3, 2)
    assert req.granularity == "residual-branches" and req.smooth_samples == 2
    spec = zoo.get("resnet18")
    assert feature.estimate(ctx.rt, req).forwards == sanity.forwards(spec, ["cam"], "residual-branches",
                                                                     req.params, smooth_samples=2)
    assert feature.estimate(ctx.rt, req).forwards > feature.estimate(
        ctx.rt, request(ctx, None, ["resnet18"], ["cam"], None, "residual-branches", 3, 0)).forwards
    checks = feature.result(ctx.rt, req)
    out = checks.to_json()
    assert out["granularity"] == "residual-branches" and out["smooth_samples"] == 2
    assert out["steps"] == ["none"] + [f"layer{s}.{b}" for s in (4, 3, 2, 1) for b in (1, 0)]
    m = out["methods"][0]
    assert m["mprt"]["smooth"]["samples"] == 2 and m["mprt"]["smooth"]["score"] is not None
    assert any("sMPRT" in line for line in m["readings"])
    with pytest.raises(sanity.SanityError, match="smooth MPRT samples"):
        request(ctx, None, ["resnet18"], ["cam"], None, "stage", 3, 51)
    report = checks.reports[0]
    printed = text(report)
    assert all(f"  {line}" in printed for line in report.methods[0].readings())
    assert "with every residual branch random" in printed and "fc and layer4" not in printed
