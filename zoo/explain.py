"""Where the network looked: CAM, Captum attributions and TorchCAM's CAM family, one signature, one table.

Every method is ``fn(model, run, target, **params) -> np.ndarray``: a raw float32
map (h, w) for class ``target`` over the model's input crop, unnormalised. CAM comes
out of the classification's own forward pass (``run.features``); Captum and TorchCAM
methods run on the model with hooks, inside ``hooks_restored`` and the model's lock.
Methods that read a stage take ``layer`` (``layer1`` ... ``layer4``, default the last).

DeepLift is not offered: torchvision's ResNets reuse one ReLU module several times per
block, which DeepLift's per-module bookkeeping cannot handle.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch

from . import lrp
from .cancel import check
from .errors import UnknownMethodError
from .inference import Classification, Prediction, resolve_target
from .models import LoadedModel
# The runners and the rules of their settings live in zoo.attribution; their names stay
# importable from here, where the method table is.
from .attribution.cam_family import (ablationcam, eigencam, fullgrad, gradcam_elementwise, gradcampp,  # noqa: F401
                                     hirescam, layercam, scorecam, shapleycam, smoothgradcampp, xgradcam)
from .attribution.captum_maps import (_HOOK_DICTS, cam, cancellable, edges, gradcam, guided_gradcam,  # noqa: F401
                                      hooks_restored, integrated_gradients, occlusion, saliency)
from .attribution.rules import (FULLGRAD_MACS_PER_CHANNEL, IG_DEFAULTS, IG_STEPS, MAX_ABLATION_BATCH,  # noqa: F401
                                MAX_IG_STEPS, MAX_OCCLUSION_POSITIONS, MIN_IG_STEPS, OCCLUSION_DEFAULTS,
                                OCCLUSION_STRIDE, OCCLUSION_WINDOW, STAGES, LayerError, Setting, _occlusion_cost,
                                ablation_batch, bias_channels, check_cam_layer, fullgrad_passes, ig_steps,
                                model_params, occlusion_positions, occlusion_window, stage_channels, stage_name)

MethodFn = Callable[..., np.ndarray]
PassesFn = Callable[[Mapping[str, Any], int], int]

# The settings with a slider and a CLI option, per method (ranges and defaults: zoo.attribution.rules).
SETTINGS: Mapping[str, tuple[Setting, ...]] = MappingProxyType({
    "occlusion": (OCCLUSION_WINDOW, OCCLUSION_STRIDE), "integrated-gradients": (IG_STEPS,)})


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    fn: MethodFn
    cost: str  # what one map costs, in passes through the network
    resolution: str  # "feature" (7x7 at 224) or "input" (224x224)
    signed: bool = False  # True when negative values mean evidence against the class
    backward: bool = True  # each pass is a forward and a backward (about 3x a forward alone)
    count: PassesFn = lambda params, size: 1  # noqa: E731 - see ``passes``
    # Measured time of one pass, in batch-1 forwards of the same model (PASS_COSTS, below):
    # below 1 where the method batches its images, near 1 where the backward stops at a
    # stage, 1.6 to 2 where it goes back to the input.
    pass_cost: float = 1.0
    # What a reader must know of one map besides ``flat_map_notes``: (raw, run, target) -> sentences.
    notes: Callable[[np.ndarray, Classification, int], list[str]] | None = None

    def passes(self, params: Mapping[str, Any] | None = None, size: int = 224) -> int:
        """Passes through the network for one map on a ``size`` x ``size`` crop.

        Raises ``ZooError`` for parameters the server refuses (the same check ``explain``
        makes), so a caller can estimate the time, or say what to change, before running.
        """
        return self.count(params or {}, int(size))

    def forwards(self, params: Mapping[str, Any] | None = None, size: int = 224) -> int:
        """The map's cost in forward-pass equivalents: a forward and a backward count as three."""
        return self.passes(params, size) * (3 if self.backward else 1)

    def measured_cost(self, params: Mapping[str, Any] | None = None, size: int = 224) -> float:
        """The map's measured cost in batch-1 forwards of the model (``pass_cost`` per pass)."""
        return self.passes(params, size) * self.pass_cost


@dataclass
class Explanation:
    method: str
    target: Prediction
    raw: np.ndarray  # (h, w) float32, as the method produced it
    seconds: float
    notes: list[str] = field(default_factory=list)  # what a reader must know, e.g. "this map is all zero"
    layer: str | None = None  # the stage the map was read from; None for input-gradient methods



def takes_layer(method: str) -> bool:
    """True when ``method`` reads a stage and accepts ``layer=``."""
    return "layer" in inspect.signature(get_method(method).fn).parameters




# Measured time of one pass of each method, in batch-1 forwards of the same model
# (``benchmarks/methods.py``: a map's median time over a paired fp32 forward's, divided by
# the map's passes; ResNet-18 / 50 / 152 on a 2-core CPU, see the README). Batched passes
# (Occlusion 16 at a time, Score-CAM 32, Integrated Gradients 8) cost less than a lone
# forward each; a backward to a stage adds little, one to the input about as much as the
# forward. ``zoo.features.classify.map_estimate`` multiplies these by the forward it measured, and replaces
# them by what a method's own runs took once it has run (see ``CostModel.pass_seconds``).
# The two dear ones are in the cost model's own unit, the classification's forward at the
# model's precision (bf16 on CPUs with AVX-512 BF16, where it is no faster than fp32):
# ``benchmarks/estimate.py`` on such a 2-core CPU, shared and loaded (so noisy: the forward
# itself varied 2x between runs), gave Integrated Gradients 1.24 (ResNet-18), 0.74 and 1.78
# (ResNet-50) forwards a pass, Occlusion 0.73, 0.28 and 0.56; issue 17's ResNet-50 run, 0.63
# and 0.56. The figures below are about their geometric means; the fp32 ones (1.6, 0.8)
# overestimated Integrated Gradients 2.4x there.
PASS_COSTS: Mapping[str, float] = MappingProxyType({
    "cam": 0.0, "gradcam": 1.1, "guided-gradcam": 1.6, "integrated-gradients": 0.9, "saliency": 2.0,
    "occlusion": 0.55, "gradcampp": 1.1, "smoothgradcampp": 1.1, "xgradcam": 1.1, "layercam": 1.1, "scorecam": 1.0,
    # pytorch-grad-cam's (benchmarks/methods.py on ResNet-18/50 under load, README: about ±50 %);
    # Ablation-CAM's batched passes priced as Score-CAM's; FullGrad's passes are already forward
    # equivalents (``fullgrad_passes``); edges reads no network.
    "hirescam": 2.1, "gradcam-elementwise": 2.5, "eigencam": 2.4, "ablationcam": 1.0, "fullgrad": 1.0,
    "shapleycam": 1.0, "edges": 0.0,
    # zoo.lrp's, per forward-pass equivalent (``lrp.FORWARDS``): benchmarks/methods.py, README.
    **{f"lrp-{name}": cost for name, cost in lrp.PASS_COST.items()},
})



METHODS: dict[str, Method] = {m.name: m for m in (
    Method("cam", "CAM (global average pooling)", cam,
           "free: reuses the classification's forward pass", "feature", backward=False,
           count=lambda params, size: 0),
    Method("gradcam", "Grad-CAM", gradcam, "1 forward + 1 backward", "feature"),
    Method("guided-gradcam", "Guided Grad-CAM", guided_gradcam, "2 forwards + 2 backwards", "input",
           count=lambda params, size: 2),
    Method("integrated-gradients", "Integrated Gradients", integrated_gradients,
           f"`steps` forwards + backwards (default {IG_STEPS.default}, {IG_STEPS.low} to {IG_STEPS.high})", "input",
           signed=True, count=lambda params, size: ig_steps(params)),
    Method("saliency", "Saliency (input gradient)", saliency, "1 forward + 1 backward", "input"),
    # Captum also runs the unoccluded input once, hence the + 1.
    Method("occlusion", "Occlusion", occlusion, _occlusion_cost(), "input", signed=True, backward=False,
           count=lambda params, size: occlusion_positions(*occlusion_window(params, size), size) + 1),
    # TorchCAM's CAM family; every one takes ``layer``.
    Method("gradcampp", "Grad-CAM++", gradcampp, "1 forward + 1 backward", "feature"),
    Method("smoothgradcampp", "Smooth Grad-CAM++", smoothgradcampp,
           "1 forward + `samples` noisy forwards and backwards (default 4)", "feature",
           count=lambda params, size: 1 + int(params.get("samples", 4))),
    Method("xgradcam", "XGrad-CAM", xgradcam, "1 forward + 1 backward", "feature"),
    Method("layercam", "Layer-CAM", layercam, "1 forward + 1 backward", "feature"),
    Method("scorecam", "Score-CAM", scorecam,
           "1 forward per channel of the layer, + 2: 512 (ResNet-18/34) or 2048 (ResNet-50 and deeper) at layer4, "
           "64 to 1024 at layer1-3", "feature", backward=False,
           # ``channels``: the stage's (``stage_channels``), which ``map_estimate`` fills in;
           # without the model at hand, the largest stage (2048 channels) bounds the estimate.
           count=lambda params, size: int(params.get("channels", 2048)) + 2),
    # pytorch-grad-cam's methods that neither Captum nor TorchCAM has.
    Method("hirescam", "HiResCAM", hirescam, "1 forward + 1 backward", "feature"),
    Method("gradcam-elementwise", "Grad-CAM element-wise", gradcam_elementwise, "1 forward + 1 backward",
           "feature"),
    Method("eigencam", "Eigen-CAM", eigencam, "1 forward (no backward; the same map for every class)",
           "feature", backward=False),
    Method("ablationcam", "Ablation-CAM", ablationcam,
           "1 forward per channel of the layer, + 2: 512 (ResNet-18/34) or 2048 (ResNet-50 and deeper) at layer4, "
           "64 to 1024 at layer1-3 (batched, 32 at a time)", "feature", backward=False,
           count=lambda params, size: (ablation_batch(params), int(params.get("channels", 2048)) + 2)[1]),
    # Counted in forward-pass equivalents (``fullgrad_passes``), its backward included.
    Method("fullgrad", "FullGrad", fullgrad, "1 forward + 1 backward (every conv bias's gradient), then a map per "
           "bias channel: about 30 (ResNet-18) to 70 (ResNet-50 and deeper) forwards' worth", "input",
           backward=False, count=lambda params, size: fullgrad_passes(params, size)),
    # The Hessian-vector product is a second backward through the graph of the first.
    Method("shapleycam", "ShapleyCAM", shapleycam, "1 forward + 2 backwards (gradient, then Hessian-vector "
           "product)", "feature", count=lambda params, size: 2),
)}

METHODS["edges"] = Method("edges", "Edges (Sobel; ignores the network)", edges,
                          "free: no network at all (a control: an edge detector)", "input", backward=False,
                          count=lambda params, size: 0)
# LRP with Zennit (zoo.lrp): signed input maps, counted in forward-pass equivalents as FullGrad.
for _m in (Method("lrp-epsilon-plus-flat", "LRP epsilon-plus-flat (Zennit)", lrp.epsilon_plus_flat,
                  lrp.COST["epsilon-plus-flat"], "input", signed=True, backward=False,
                  count=lambda params, size: lrp.FORWARDS["epsilon-plus-flat"], notes=lrp.conservation_notes),
           Method("lrp-epsilon-gamma-box", "LRP epsilon-gamma-box (Zennit)", lrp.epsilon_gamma_box,
                  lrp.COST["epsilon-gamma-box"], "input", signed=True, backward=False,
                  count=lambda params, size: lrp.FORWARDS["epsilon-gamma-box"], notes=lrp.conservation_notes)):
    METHODS[_m.name] = _m
for _name, _cost in PASS_COSTS.items():  # the measured figures travel with each Method
    METHODS[_name] = replace(METHODS[_name], pass_cost=_cost)


def get_method(name: str) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise UnknownMethodError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def explain(model: LoadedModel, run: Classification, method: str = "cam", target: int | str | None = None,
            **params: Any) -> Explanation:
    """Map for ``target`` (index, name, or None for the top-1 class) by ``method``."""
    m = get_method(method)
    idx = resolve_target(run.labels, target, default=run.predictions[0].index)
    layer = layer_param(method, params, model.spec.cam_layer)
    t0 = time.perf_counter()
    raw = m.fn(model, run, idx, **params)
    pred = run.prediction(idx)
    notes = flat_map_notes(m, raw, pred.label) + (m.notes(raw, run, idx) if m.notes else [])
    return Explanation(method, pred, raw, time.perf_counter() - t0, notes, layer)


# Why a method's map can come out all zero, where it has a reason of its own.
_ZERO_WHY = {
    "gradcam": "Grad-CAM keeps only positive evidence (a ReLU over the gradient-weighted layer4 channels), "
               "and no region of this image counts *for* {label}",
    "guided-gradcam": "Guided Grad-CAM multiplies by Grad-CAM, whose ReLU keeps only positive evidence, and no "
                      "region of this image counts *for* {label}",
    "eigencam": "Eigen-CAM projects the stage's activations on their first principal component, whose sign is "
                "arbitrary, and pytorch-grad-cam's ReLU then keeps only the positive side, which is empty here "
                "(the map ignores the class anyway)",
}


def flat_map_notes(method: Method, raw: np.ndarray, label: str) -> list[str]:
    """Say when a map shows no "where": all zero, constant or not finite, and why.

    Such a map renders as one flat colour, which readers take for a real (if dull) answer.
    """
    try_cam = "" if method.name == "cam" else " CAM shows the negative evidence as well; try it."
    if raw.size == 0 or not np.isfinite(raw).all():
        return [f"The {method.label} map for {label} has values that are not finite (NaN or infinity), so it "
                f"cannot be drawn faithfully.{try_cam}"]
    peak = float(np.abs(raw).max())
    if peak == 0.0:
        why = _ZERO_WHY.get(method.name, "the method found no evidence either way").format(label=label)
        return [f"The {method.label} map for {label} is all zero: {why}. It says nothing about where the "
                f"network looked.{try_cam}"]
    if float(raw.max() - raw.min()) <= 1e-6 * peak:
        return [f"The {method.label} map for {label} is constant ({float(raw.flat[0]):.3g} everywhere), so it "
                f"says nothing about where the network looked.{try_cam}"]
    return []


def layer_param(method: str, params: dict[str, Any], default: str = "layer4") -> str | None:
    """The stage ``method`` will read (``params['layer']`` or ``default``); None if it reads no stage.

    Methods of the input pixels refuse a layer rather than ignore it; a blank one is dropped.
    """
    layer = params.pop("layer", None)
    blank = layer is None or not str(layer).strip()
    if takes_layer(method):
        params["layer"] = stage_name(layer, default)
        if get_method(method).fn is cam:  # the one method bound to one stage: refuse before any work
            check_cam_layer(default, params["layer"])
        return params["layer"]
    if not blank:
        raise LayerError(f"{get_method(method).label} works on the input pixels, not on a stage, so it takes no "
                         f"layer (got {layer!r}). Layers are for {', '.join(m for m in METHODS if takes_layer(m))}.")
    return None


# What each method's raw values are, for the colour bar's label. Captum's methods read the
# model's logits; CAM's map averages (plus fc's bias) to the class logit, and Integrated
# Gradients' sums to the logit's change from the baseline (a mean-colour image), so both
# are in logit units. The CAM family of TorchCAM and Grad-CAM keep the positive part only.
# ASCII only: the colour bar is drawn with Pillow's built-in font, which has no "≥" or "∂".
VALUE_UNITS: Mapping[str, str] = MappingProxyType({
    "cam": "class evidence (logit units)",
    "gradcam": "attribution (gradient x activation, non-negative)",
    "guided-gradcam": "attribution magnitude (non-negative)",
    "integrated-gradients": "attribution (logit units)",
    "saliency": "gradient magnitude |d logit / d pixel|",
    "occlusion": "logit drop when occluded",
    "gradcampp": "attribution (non-negative)",
    "smoothgradcampp": "attribution (non-negative)",
    "xgradcam": "attribution (non-negative)",
    "layercam": "attribution (non-negative)",
    "scorecam": "attribution (non-negative)",
    "hirescam": "attribution (gradient x activation, non-negative)",
    "gradcam-elementwise": "attribution (gradient x activation, non-negative)",
    "eigencam": "first principal component of the stage (non-negative)",
    "ablationcam": "attribution (non-negative)",
    "fullgrad": "attribution, scaled to [0, 1]",
    "shapleycam": "attribution (non-negative)",
    "edges": "edge magnitude (Sobel, normalised pixel units)",
    "lrp-epsilon-plus-flat": "relevance (logit units)",
    "lrp-epsilon-gamma-box": "relevance (logit units)",
})


def value_unit(method: str) -> str:
    """What ``method``'s map values are (for a colour bar's label)."""
    return VALUE_UNITS.get(method, "attribution")



# --- every stage at once ----------------------------------------------------------------
# Grad-CAM, XGrad-CAM and Layer-CAM need only each stage's activations A and the gradient G
# of the target logit with respect to them: one forward and one backward give all four
# stages. They are computed here as Captum (LayerGradCam) and TorchCAM (XGradCAM, LayerCAM)
# compute them, and the tests hold them to those libraries. Every other stage method is run
# once per stage.

def _gradcam_from(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))


def _xgradcam_from(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    w = (g * a).flatten(2).sum(-1) / a.flatten(2).sum(-1).add(1e-8)
    return torch.relu(torch.nansum(w[..., None, None] * a, dim=1))


def _layercam_from(a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.relu(torch.nansum(torch.relu(g) * a, dim=1))


ONE_PASS: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = MappingProxyType(
    {"gradcam": _gradcam_from, "xgradcam": _xgradcam_from, "layercam": _layercam_from})


def check_every_stage(method: str) -> None:
    """Refuse, before any work, a method that has no map at every stage (CAM, input methods)."""
    m = get_method(method)
    if not takes_layer(method) or m.fn is cam:
        what = ("CAM is exact only on layer4, the last stage" if m.fn is cam
                else f"{m.label} works on the input pixels, not on a stage")
        raise LayerError(f"{what}, so it has no map at every stage. For every stage, use one of "
                         f"{', '.join(n for n in METHODS if takes_layer(n) and METHODS[n].fn is not cam)}.")


def every_stage_passes(method: str, params: Mapping[str, Any] | None = None, size: int = 224) -> int:
    """Forward-pass equivalents of ``every_stage``: 3 (one forward, one backward) or 4 maps' worth."""
    check_every_stage(method)
    if method in ONE_PASS:
        return 3
    return 4 * get_method(method).forwards({k: v for k, v in (params or {}).items() if k != "layer"}, size)


def every_stage(model: LoadedModel, run: Classification, method: str = "gradcam", target: int | str | None = None,
                **params: Any) -> list[Explanation]:
    """``method``'s maps at ``layer1`` ... ``layer4``, finest first.

    Grad-CAM, XGrad-CAM and Layer-CAM: one forward and one backward through the hook-free
    walker, every stage's output and its gradient at once. Other stage methods: one run per
    stage. In fp32, like every explanation.
    """
    check_every_stage(method)
    params.pop("layer", None)
    m = get_method(method)
    idx = resolve_target(run.labels, target, default=run.predictions[0].index)
    pred = run.prediction(idx)
    if method not in ONE_PASS:
        out = []
        for stage in STAGES:
            check()
            out.append(explain(model, run, method, idx, layer=stage, **params))
        return out
    from .models import block_forward, call, stem

    t0 = time.perf_counter()
    module = model.module
    with torch.enable_grad():
        x = model.to_input(run.input.clone()).requires_grad_(True)  # something must need a gradient
        h = stem(module, x)
        acts = []
        for name in STAGES:
            for block in module.get_submodule(name):
                h = block_forward(block, h)
            acts.append(h)
        logits = call(module.fc, h.float().mean(dim=(2, 3)))
        grads = torch.autograd.grad(logits[0, idx], acts)
    seconds = (time.perf_counter() - t0) / len(STAGES)  # the pass is shared: each map gets a quarter
    fn = ONE_PASS[method]
    out = []
    for name, a, g in zip(STAGES, acts, grads):
        with torch.no_grad():
            raw = fn(a.detach().float(), g.float())[0].cpu().numpy().astype(np.float32)
        out.append(Explanation(method, pred, raw, seconds, flat_map_notes(m, raw, pred.label), name))
    return out
