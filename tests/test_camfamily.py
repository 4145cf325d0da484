"""pytorch-grad-cam's methods and ROAD, checked against pytorch-grad-cam itself on plain torchvision.

Each map is compared with the library's CAM class called directly, as its README shows,
on plain (unfolded, fp32, contiguous) torchvision built from the same safetensors:
Spearman rank correlation (scipy) at the crop's resolution, each of ours upsampled as it
is drawn. ROAD is compared with ``pytorch_grad_cam.metrics.road`` on the same map and
plain model. Everything runs at fp32 (this CPU would pick bf16 under ``auto``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from conftest import EXAMPLES, explained, hook_count, plain_model, run_cli
from zoo import cancel
from zoo.errors import ZooError
from zoo.explain import METHODS, explain, takes_layer
from zoo.faithfulness import ROAD_PERCENTILES, faithfulness, road, road_cam, road_forwards
from zoo.inference import classify
from zoo.models import load_model
from zoo.render import heat_on_crop
from zoo.features.classify import map_estimate

# ours -> (pytorch-grad-cam class, target class, reads a stage)
LIBRARY = {"hirescam": ("HiResCAM", "ClassifierOutputTarget", True),
           "gradcam-elementwise": ("GradCAMElementWise", "ClassifierOutputTarget", True),
           "eigencam": ("EigenCAM", "ClassifierOutputTarget", True),
           "shapleycam": ("ShapleyCAM", "ClassifierOutputReST", True),
           "fullgrad": ("FullGrad", "ClassifierOutputTarget", False),
           "ablationcam": ("AblationCAM", "ClassifierOutputTarget", True)}


@pytest.fixture(scope="module")
def r18(zoo, hosted):
    return load_model(zoo.get("resnet18"), "cpu", precision="fp32")


@pytest.fixture(scope="module")
def r18_plain(hosted):
    return plain_model("resnet18", hosted)


@pytest.fixture(scope="module")
def coffee(r18):
    return classify(r18, EXAMPLES / "coffee.png")


def library_map(model: torch.nn.Module, name: str, layer: str, x: torch.Tensor, target: int, **kwargs) -> np.ndarray:
    """pytorch-grad-cam's map (crop-sized, scaled to [0, 1]) exactly as its README calls it."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils import model_targets

    cls_name, score, staged = LIBRARY[name]
    layers = [model.get_submodule(layer)] if staged else []
    with getattr(pytorch_grad_cam, cls_name)(model=model, target_layers=layers, **kwargs) as cam:
        out = cam(input_tensor=x, targets=[getattr(model_targets, score)(target)])
    return out[0]


def rho_on_crop(ours: np.ndarray, ref: np.ndarray) -> float:
    drawn = ours if ours.shape == ref.shape else heat_on_crop(ours, ref.shape[0])
    return float(spearmanr(drawn.ravel(), ref.ravel()).statistic)


# --- the maps ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, layer", [("hirescam", "layer4"), ("hirescam", "layer2"),
                                         ("gradcam-elementwise", "layer4"), ("eigencam", "layer4"),
                                         ("eigencam", "layer3"), ("shapleycam", "layer4"), ("fullgrad", None),
                                         ("ablationcam", "layer1")])
def test_maps_match_pytorch_grad_cam_on_plain_torchvision(name, layer, r18, r18_plain, coffee):
    target = coffee.predictions[1].index  # not the top-1: the target must be honoured
    kwargs = {"batch_size": 32} if name == "ablationcam" else {}
    ref = library_map(r18_plain, name, layer or "layer4", coffee.input.clone(), target, **kwargs)
    params = {"layer": layer} if layer else {}
    ex = explain(r18, coffee, name, target, **params)
    assert ex.raw.dtype == np.float32 and np.isfinite(ex.raw).all() and ex.raw.max() > 0
    side = {"layer1": 56, "layer2": 28, "layer3": 14, "layer4": 7, None: 224}[layer]
    assert ex.raw.shape == (side, side) and ex.layer == layer
    assert takes_layer(name) == (layer is not None)
    assert rho_on_crop(ex.raw, ref) >= 0.99
    # nothing left behind: hooks, modules, mode, gradients, and the same logits as before
    assert hook_count(r18.module) == 0 and hook_count(r18_plain) == 0
    assert not r18.module.training and all(not p.requires_grad for p in r18.module.parameters())
    np.testing.assert_array_equal(classify(r18, EXAMPLES / "coffee.png").logits, coffee.logits)


def test_every_new_method_is_listed_with_its_cost():
    for name in LIBRARY:
        m = METHODS[name]
        assert m.cost and m.passes() >= 1
    assert METHODS["eigencam"].forwards() == 1 and not METHODS["eigencam"].backward
    assert METHODS["hirescam"].forwards() == 3
    # FullGrad: a forward and a backward (3), then a map per bias channel (see the tests below).
    assert METHODS["fullgrad"].forwards() == METHODS["fullgrad"].passes() > 3
    assert METHODS["shapleycam"].forwards() == 6  # a forward, a backward and the Hessian-vector product's
    assert METHODS["ablationcam"].passes() == 2050 and METHODS["ablationcam"].passes({"channels": 512}) == 514
    with pytest.raises(ZooError, match="between 1 and 256"):
        METHODS["ablationcam"].passes({"batch": 1000})


def test_ablation_cam_puts_the_stage_back_after_a_failure(r18, coffee, monkeypatch):
    from pytorch_grad_cam import AblationLayer

    stage = r18.module.layer4

    def boom(self, x):
        raise RuntimeError("failure while a channel is ablated")

    monkeypatch.setattr(AblationLayer, "__call__", boom)
    with pytest.raises(RuntimeError, match="ablated"):
        explain(r18, coffee, "ablationcam", layer="layer4")
    assert r18.module.layer4 is stage and hook_count(r18.module) == 0
    np.testing.assert_array_equal(classify(r18, EXAMPLES / "coffee.png").logits, coffee.logits)


def test_a_stop_ends_a_library_method_and_leaves_no_hooks(r18, coffee):
    token = cancel.Token()
    token.cancel()
    with cancel.running(token), pytest.raises(cancel.Cancelled):
        explain(r18, coffee, "ablationcam", layer="layer4")
    assert hook_count(r18.module) == 0 and isinstance(r18.module.layer4, torch.nn.Sequential)


# --- ROAD -------------------------------------------------------------------------------

@pytest.fixture
def noiseless_library(monkeypatch):
    """pytorch-grad-cam's imputer without its (global-generator) noise, so that it can be compared exactly."""
    from pytorch_grad_cam.metrics import road as lib

    init = lib.NoisyLinearImputer.__init__
    monkeypatch.setattr(lib.NoisyLinearImputer, "__init__",
                        lambda self, noise=0.01, weighting=lib.neighbors_weights: init(self, 0.0, weighting))
    return lib


def test_road_equals_pytorch_grad_cams_road_on_plain_torchvision(r18, r18_plain, coffee, noiseless_library):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    lib = noiseless_library
    target = coffee.predictions[0].index
    raw = explain(r18, coffee, "gradcam", target).raw
    ours = road(r18, coffee, raw, target, percentiles=(30, 70), noise=0.0)
    cam = road_cam(raw, (224, 224))[None]
    x, targets = coffee.input.clone(), [ClassifierOutputSoftmaxTarget(target)]
    for i, p in enumerate(ours.percentiles):
        morf = lib.ROADMostRelevantFirst(p)(x, cam, targets, r18_plain, return_diff=False)[0]
        lerf = lib.ROADLeastRelevantFirst(p)(x, cam, targets, r18_plain, return_diff=False)[0]
        assert abs(ours.morf[i] - morf) <= 1e-4 and abs(ours.lerf[i] - lerf) <= 1e-4
    combined = lib.ROADCombined(percentiles=list(ours.percentiles))(x, cam, targets, r18_plain)[0]
    assert abs(ours.combined - combined) <= 1e-4
    assert ours.forwards == road_forwards((30, 70)) == 4 and road_forwards() == 2 * len(ROAD_PERCENTILES)


def test_road_noise_is_seeded_and_private(r18, coffee):
    raw = explain(r18, coffee, "layercam").raw
    target = coffee.predictions[0].index
    torch.manual_seed(1)
    a = road(r18, coffee, raw, target, percentiles=(50,))
    torch.manual_seed(2)  # the global generator does not matter
    b = road(r18, coffee, raw, target, percentiles=(50,))
    c = road(r18, coffee, raw, target, percentiles=(50,), seed=1)
    assert a.morf[0] == b.morf[0] and a.lerf[0] == b.lerf[0]
    assert (a.morf[0], a.lerf[0]) != (c.morf[0], c.lerf[0])
    assert abs(a.morf[0] - c.morf[0]) < 0.05  # noise of std 0.01 moves little


def test_faithfulness_reports_road_beside_the_areas_and_can_be_stopped(r18, coffee):
    raw = explain(r18, coffee, "gradcam").raw
    target = coffee.predictions[0].index
    f = faithfulness(r18, coffee, raw, target)
    j = f.to_json()
    assert set(j["road"]) >= {"percentiles", "morf", "lerf", "combined"}
    assert j["road"]["percentiles"] == list(ROAD_PERCENTILES) and len(j["road"]["morf"]) == len(ROAD_PERCENTILES)
    assert j["road"]["combined"] == pytest.approx((np.mean(j["road"]["lerf"]) - np.mean(j["road"]["morf"])) / 2)
    assert faithfulness(r18, coffee, raw, target, road_percentiles=None).road is None
    with pytest.raises(ZooError, match="from 1 to 99"):
        faithfulness(r18, coffee, raw, target, road_percentiles=(0, 50))
    token = cancel.Token()
    token.cancel()
    with cancel.running(token), pytest.raises(cancel.Cancelled):
        road(r18, coffee, raw, target)


def test_ranking_sorts_by_road_and_the_estimate_counts_it(zoo, hosted):
    from zoo.faithfulness import STEPS
    from zoo.features import rank
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu", precision="fp32")
    explained(explorer, EXAMPLES / "chelsea.png", "resnet18", 5, "cam")  # times a forward, for the estimate
    before = map_estimate(explorer, ["resnet18"], "hirescam", None, False)
    ranking = rank.result(explorer, rank.Request.create(explorer, EXAMPLES / "chelsea.png", "resnet18", None,
                                                        ["hirescam", "eigencam"]))
    by_road = ranking.sorted("road")
    combined = [r.faithfulness.road.combined for r in by_road]
    assert combined == sorted(combined, reverse=True)
    out = ranking.to_json("road")
    assert out["sort_by"] == "road" and [m["road_combined"] for m in out["methods"]] == combined
    assert out["methods"][0]["faithfulness"]["road"]["combined"] == combined[0]
    with pytest.raises(ZooError, match="'road'"):
        ranking.sorted("roads")
    after = map_estimate(explorer, ["resnet18"], "hirescam", None, True)
    assert after.forwards == before.forwards + 2 * STEPS - 1 + road_forwards()
    # ROAD's imputation runs on the CPU, priced apart from the forwards
    assert after.seconds > before.seconds * after.forwards / before.forwards


def test_cli_explain_new_method_with_road(zoo_file, hosted):
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--precision", "fp32", "--method", "hirescam", "--layer", "layer3", "--faithfulness", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["method"] == "hirescam" and out["shape"] == [14, 14]
    assert set(out["faithfulness"]["road"]) >= {"percentiles", "morf", "lerf", "combined"}
    r = run_cli("explain", str(EXAMPLES / "coffee.png"), "--model", "resnet18", "--zoo", str(zoo_file),
                "--precision", "fp32", "--method", "fullgrad", "--faithfulness")
    assert r.returncode == 0, r.stderr
    assert "FullGrad" in r.stdout and "ROAD" in r.stdout


# --- FullGrad: priced by its real work, and stopped inside it (issue 29 item 4) -------------

def test_fullgrads_price_grows_with_its_bias_channels(zoo):
    """FullGrad maps every channel of every bias layer: 4,800 on ResNet-18, 75,712 on ResNet-152.
    Its price, in forwards of the same model, follows that work (it was one pass on every depth)."""
    from zoo.explain import bias_channels, model_params
    from zoo.stats import model_stats

    r18, r152 = zoo.get("resnet18"), zoo.get("resnet152")
    assert (bias_channels("resnet18"), bias_channels("resnet152")) == (4800, 75712)
    fg = METHODS["fullgrad"]
    small, big = (fg.passes(model_params("fullgrad", s.arch, 224), 224) for s in (r18, r152))
    assert 20 <= small <= 40 and 60 <= big <= 80  # benchmarks/methods.py: about 25 and 69 forwards
    # In seconds: ResNet-152's map costs its forwards' share of the work, far above the quick lane
    # (the old price was 3 forwards: 1 s at ResNet-152's assumed 0.3 s a forward).
    work = lambda s, n: n * model_stats(s.arch.name, 224).macs  # noqa: E731 - multiply-adds of n forwards
    assert work(r152, big) / work(r18, small) > 10  # 16x the channels, 6x the multiply-adds a forward
    assert fg.passes() == big  # without a model: ResNet-152's, the dearest


def test_fullgrad_estimate_on_resnet152_is_its_real_work(zoo):
    from types import SimpleNamespace

    from zoo.explain import model_params
    from zoo.limits import Limits, seconds_of
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu", precision="fp32")
    est = map_estimate(explorer, ["resnet152"], "fullgrad")
    assert est.seconds is None and est.forwards >= 60 and map_estimate(explorer, ["resnet152"], "gradcam").forwards == 4
    seconds, _ = seconds_of(est.forwards, est.seconds)  # before any forward here: the gate's assumption
    assert seconds > 3 * Limits().quick_seconds  # no longer the quick lane (it was 3 forwards: 0.9 s)
    explorer.costs.timed(SimpleNamespace(model="resnet152", seconds=0.3))  # one forward timed here
    assert map_estimate(explorer, ["resnet152"], "fullgrad").seconds == pytest.approx(0.3 * est.forwards)
    # Compare on five depths: each depth's own map, priced by its own bias channels.
    five = map_estimate(explorer, [s.name for s in zoo.builtin_depths], "fullgrad")
    assert five.forwards == sum(1 + METHODS["fullgrad"].passes(model_params("fullgrad", s.arch, 224), 224)
                                for s in zoo.builtin_depths) > 5 * 25


def test_a_stopped_fullgrad_ends_within_one_bias_layer(r18, coffee, monkeypatch):
    """Counted in the library's per-layer maps after the Stop, not in seconds."""
    import pytorch_grad_cam.fullgrad_cam as fullgrad_module

    token = cancel.Token()
    calls = {"n": 0, "after_stop": 0}
    scale = fullgrad_module.scale_accross_batch_and_channels

    def counted(*args, **kwargs):
        calls["n"] += 1
        if token.cancelled:
            calls["after_stop"] += 1
        if calls["n"] == 3:  # the input's map, two bias layers' maps: then Stop
            token.cancel()
        return scale(*args, **kwargs)

    monkeypatch.setattr(fullgrad_module, "scale_accross_batch_and_channels", counted)
    with cancel.running(token), pytest.raises(cancel.Cancelled):
        explain(r18, coffee, "fullgrad")
    assert calls == {"n": 3, "after_stop": 0}  # of 21 (the input and 20 bias layers)
    assert hook_count(r18.module) == 0  # nothing left on the model
    monkeypatch.setattr(fullgrad_module, "scale_accross_batch_and_channels", scale)
    assert explain(r18, coffee, "fullgrad").raw.shape == (224, 224)  # and it still works
