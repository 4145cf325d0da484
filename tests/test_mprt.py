"""Issue 34, item 3: smooth and efficient MPRT (Hedström et al. 2023, zoo.mprt) held to Quantus's own
``SmoothMPRT`` and ``EfficientMPRT`` on the same model, maps and seed; the ``residual-branches``
granularity of the sanity check.

Quantus randomises layers its own way (``reset_parameters``); the check re-initialises with
torchvision's rules (zoo.sanity). So Quantus is handed the check's fully randomised model through
its random-layer generator, and the check's maps through its explain function: what is compared
is each metric's definition (noise, averaging, |.|, Spearman; histogram entropy, relative rise).
Tolerance 1e-6: the same arithmetic on the same arrays, in the same order.

Kept small: ResNet-18, Grad-CAM and saliency, 3 noise samples.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import EXAMPLES, plain_model
from zoo import mprt, sanity
from zoo.explain import STAGES, explain
from zoo.images import load_image
from zoo.private import private_copy
from zoo.inference import Prepared, classify, prepare
from zoo.models import ready
from zoo.render import heat_on_crop

SEED = 7
SAMPLES = 3
METHODS = ["gradcam", "saliency"]
TOL = 1e-6


@pytest.fixture(scope="module")
def image():
    return load_image(EXAMPLES / "chelsea.png")


@pytest.fixture(scope="module")
def spec(zoo):
    return zoo.get("resnet18")


@pytest.fixture(scope="module")
def report(spec, image, hosted):
    return sanity.sanity_check(spec, image, METHODS, seed=SEED, device="cpu", smooth_samples=SAMPLES)


@pytest.fixture(scope="module")
def modules(spec, hosted):
    """The original and the fully randomised torchvision modules, built as the check builds them."""
    master = private_copy(spec)
    original = copy.deepcopy(master).eval()
    for _, parts in sanity.plan(master, "stage"):
        for part in parts:
            sanity.reinitialize(master.get_submodule(part), part, SEED)
    return original, master.eval()


def _explainer(spec, image, method):
    """Quantus's explain function: the check's map (on the crop) of whichever module Quantus passes."""
    crop = spec.preprocessing.crop
    pre = prepare(image, spec.preprocessing)
    ready_models: dict[int, object] = {}

    def explain_func(model, inputs, targets, **_):
        lm = ready_models.setdefault(id(model), ready(spec, copy.deepcopy(model), torch.device("cpu"), None))
        run = classify(lm, image, top_k=1, prepared=Prepared(pre.crop, torch.from_numpy(np.asarray(inputs, np.float32))))
        return np.stack([heat_on_crop(explain(lm, run, method, int(t)).raw, crop) for t in targets])

    return explain_func


@pytest.fixture
def quantus_on(monkeypatch, modules):
    """Quantus with its random-layer generator yielding the check's fully randomised model."""
    import quantus
    from quantus.helpers.model.pytorch_model import PyTorchModel

    random = modules[1]
    monkeypatch.setattr(PyTorchModel, "get_random_layer_generator",
                        lambda self, order="top_down", seed=42: iter([("all", random)]))
    monkeypatch.setattr(PyTorchModel, "random_layer_generator_length", property(lambda self: 1))
    return quantus


@pytest.mark.parametrize("method", METHODS)
def test_smooth_mprt_equals_quantus(report, spec, image, modules, quantus_on, monkeypatch, method):
    mc = next(m for m in report.methods if m.method == method)
    assert mc.mprt is not None and mc.mprt.samples == SAMPLES and mc.mprt.against == "stem"
    fn = _explainer(spec, image, method)
    monkeypatch.setattr(quantus_on, "explain", fn)  # SmoothMPRT maps its noisy copies with quantus.explain
    x = prepare(image, spec.preprocessing).batch.numpy()
    y = np.array([report.target.index])
    metric = quantus_on.SmoothMPRT(nr_samples=SAMPLES, layer_order="top_down", disable_warnings=True)
    np.random.seed(SEED)  # Quantus draws from numpy's global generator: the original's copies, then the random's
    scores = metric(model=modules[0], x_batch=x, y_batch=y, a_batch=mc.mprt.denoised[0][None], explain_func=fn)
    # Quantus's own denoised original against the check's: the same map
    assert scores["original"][0] == pytest.approx(1.0, abs=TOL)
    assert scores["all"][0] == pytest.approx(mc.mprt.smooth, abs=TOL)
    assert mc.mprt.smooth < 0.999  # a real comparison, not two copies of one map


@pytest.mark.parametrize("method", METHODS)
def test_efficient_mprt_equals_quantus(report, spec, image, modules, quantus_on, method):
    mc = next(m for m in report.methods if m.method == method)
    fn = _explainer(spec, image, method)
    x = prepare(image, spec.preprocessing).batch.numpy()
    y = np.array([report.target.index])
    metric = quantus_on.EfficientMPRT(layer_order="top_down", disable_warnings=True)
    scores = metric(model=modules[0], x_batch=x, y_batch=y, a_batch=mc.heats[0][None], explain_func=fn)
    assert metric.explanation_scores_by_layer["orig"][0] == pytest.approx(mc.mprt.entropy_original, abs=TOL)
    assert metric.explanation_scores_by_layer["all"][0] == pytest.approx(mc.mprt.entropy_random, abs=TOL)
    assert scores[0] == pytest.approx(mc.mprt.efficient, abs=TOL)


def test_mprt_in_json_and_priced(report, spec):
    out = report.to_json()
    assert out["smooth_samples"] == SAMPLES and out["noise"] == mprt.NOISE
    for m in out["methods"]:
        assert set(m["mprt"]) == {"against", "smooth", "efficient"}
        assert m["mprt"]["smooth"]["samples"] == SAMPLES and m["mprt"]["efficient"]["bins"] == mprt.BINS
        assert any(r.startswith("sMPRT") for r in m["readings"]) and any(r.startswith("eMPRT") for r in m["readings"])
    # sMPRT's extra passes: 2 x (N - 1) noisy copies, each a classification and every map (Grad-CAM 3, saliency 3)
    assert sanity.mprt_passes(spec, METHODS, None, SAMPLES) == 2 * (SAMPLES - 1) * (1 + 3 + 3)
    assert sanity.forwards(spec, METHODS, "stage", None, SAMPLES) == 7 * 7 + 2 * (SAMPLES - 1) * 7
    assert sanity.mprt_passes(spec, METHODS, None, 0) == sanity.mprt_passes(spec, METHODS, None, 1) == 0
    with pytest.raises(sanity.SanityError, match="smooth MPRT samples"):
        next(sanity.iter_sanity(spec, None, METHODS, smooth_samples=51))


def test_entropy_rise_helpers():
    flat = np.zeros((8, 8))
    assert mprt.entropy(flat) == 0.0 and mprt.rise(0.0, 1.0) is None
    spread = np.arange(100.0)  # one value per bin: log(100)
    assert mprt.entropy(spread) == pytest.approx(np.log(100))
    assert mprt.rise(2.0, 3.0) == pytest.approx(0.5)


def test_residual_branches_steps_are_the_blocks_from_the_top(spec, hosted):
    import torchvision

    m = plain_model("resnet18", hosted)
    steps = sanity.plan(m, "residual-branches")
    assert [s for s, _ in steps] == ["layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0",
                                     "layer1.1", "layer1.0"]
    assert steps[1][1] == ("layer4.0.conv1", "layer4.0.bn1", "layer4.0.conv2", "layer4.0.bn2")  # no downsample
    deep = torchvision.models.resnet50(weights=None)
    steps = sanity.plan(deep, "residual-branches")
    names = [f"{stage}.{j}" for stage in reversed(STAGES) for j in reversed(range(len(deep.get_submodule(stage))))]
    assert [s for s, _ in steps] == names and len(names) == 16
    assert all(parts == tuple(f"{s}.{c}" for c in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3"))
               for s, parts in steps)
    assert sanity.step_count(spec, "residual-branches") == 1 + 8
    assert sanity.verdict_step("residual-branches") == "layer1.0"


def test_residual_branches_keep_stem_shortcuts_and_fc(hosted):
    """After every step, exactly the branches' weights changed: stem, downsampling projections and fc kept."""
    m = plain_model("resnet18", hosted)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    for _, parts in sanity.plan(m, "residual-branches"):
        for part in parts:
            sanity.reinitialize(m.get_submodule(part), part, SEED)
    after = m.state_dict()
    kept = [k for k in before if k.startswith(("conv1.", "bn1.", "fc.")) or ".downsample." in k]
    convs = [k for k in before if ".conv" in k and k not in kept]  # the generated BatchNorms start at 1/0 already
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert len(convs) == 16 and all(not torch.equal(before[k], after[k]) for k in convs)


def test_residual_branches_check_reports_the_shortcut_answer(spec, image, hosted):
    r = sanity.sanity_check(spec, image, ["gradcam", "edges"], seed=SEED, granularity="residual-branches",
                            device="cpu")
    out = r.to_json()
    assert out["steps"][0] == "none" and out["steps"][1:] == [s for s, _ in sanity.plan(private_copy(spec),
                                                                                           "residual-branches")]
    assert out["verdict_step"] == "layer1.0" and out["smooth_samples"] == 0
    edges = next(m for m in out["methods"] if m["method"] == "edges")
    assert edges["still_like_original"] is True and edges["passes"] is False  # reads no weights at all
    assert edges["mprt"]["smooth"] is None and edges["mprt"]["efficient"]["score"] == 0.0
    assert edges["mprt"]["against"] == "layer1.0"
    grad = next(m for m in out["methods"] if m["method"] == "gradcam")
    assert grad["still_like_original"] is not None
    assert grad["readings"][0].startswith("With every residual branch random")
