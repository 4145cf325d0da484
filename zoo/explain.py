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

import contextlib
import inspect
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from .cancel import check
from .errors import UnknownMethodError, ZooError
from .inference import Classification, Prediction, resolve_target
from .models import LoadedModel
from .registry import Architecture

MethodFn = Callable[..., np.ndarray]
PassesFn = Callable[[Mapping[str, Any], int], int]

@dataclass(frozen=True)
class Setting:
    """One whole-number parameter of a method: the single source of its range, default and step.

    The page's slider, the CLI's option, the API's default and the checks below all read
    it, so no two of them can disagree.
    """

    name: str
    low: int
    high: int
    default: int
    step: int = 1


# The defaults answer in seconds on a 2-core CPU. What one request may cost is enforced
# here, not only by the page's sliders: anyone can call the API with any parameters.
# Occlusion runs one forward per window position, ((224 - window) / stride + 1)^2: 49 at
# the defaults (window 56, stride 28), at most MAX_OCCLUSION_POSITIONS; the sliders offer
# windows and strides within these ranges, and a pair over the limit is refused.
OCCLUSION_WINDOW = Setting("window", 16, 112, 56, 8)
OCCLUSION_STRIDE = Setting("stride", 8, 112, 28, 4)
MAX_OCCLUSION_POSITIONS = 400
# Integrated Gradients runs `steps` forwards and backwards, within this range everywhere.
IG_STEPS = Setting("steps", 4, 64, 16, 4)
MIN_IG_STEPS, MAX_IG_STEPS = IG_STEPS.low, IG_STEPS.high
OCCLUSION_DEFAULTS: Mapping[str, int] = MappingProxyType({"window": OCCLUSION_WINDOW.default,
                                                          "stride": OCCLUSION_STRIDE.default})
IG_DEFAULTS: Mapping[str, int] = MappingProxyType({"steps": IG_STEPS.default})
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


# --- stages: the layer a map is read from -----------------------------------------------

STAGES = ("layer1", "layer2", "layer3", "layer4")


class LayerError(ZooError):
    """A layer that is not one of the four stages, or one a method cannot use."""


def stage_name(layer: str | None, default: str = "layer4") -> str:
    """``layer`` checked against the four stages; None or blank means ``default``."""
    if layer is None or not str(layer).strip():
        return default
    name = str(layer).strip().lower()
    if name not in STAGES:
        raise LayerError(f"Unknown layer {layer!r}; choose one of {', '.join(STAGES)} (the four stages of a "
                         "ResNet; layer4 is the last).")
    return name


def check_cam_layer(cam_layer: str, layer: str | None) -> None:
    """CAM is defined by fc's weights, which apply to the last stage's channels only."""
    name = stage_name(layer, cam_layer)
    if name != cam_layer:
        raise LayerError(
            f"CAM is exact only on {cam_layer}, the last stage: its output feeds global average pooling and fc, "
            f"so fc's weights score its channels and no other stage's. For {name}, use Grad-CAM, Grad-CAM++, "
            "XGrad-CAM, Layer-CAM or Score-CAM, which take any stage.")


def stage_channels(arch: Architecture, layer: str | None) -> int:
    """Channels of a stage's output: 64, 128, 256, 512, times 4 for bottleneck blocks."""
    i = STAGES.index(stage_name(layer))
    return 64 * 2 ** i * (4 if arch.block == "bottleneck" else 1)


def takes_layer(method: str) -> bool:
    """True when ``method`` reads a stage and accepts ``layer=``."""
    return "layer" in inspect.signature(get_method(method).fn).parameters


# --- the hook-free method -------------------------------------------------------------

def cam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    """Class activation map (Zhou et al. 2016): sum_k w_ck f_k(x, y).

    Exact for a network that ends in global average pooling and one linear layer: the
    spatial mean of this map plus the fc bias is the class logit. Only the last stage
    feeds that pooling, so ``layer`` may only name it.
    """
    check_cam_layer(model.spec.cam_layer, layer)
    w = model.module.fc.weight[target].detach().float().cpu().numpy()
    return np.einsum("k,khw->hw", w, run.features).astype(np.float32)


# --- Captum methods -------------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


@contextlib.contextmanager
def hooks_restored(module: nn.Module) -> Iterator[nn.Module]:
    """Run a block that may add hooks; afterwards every module's hooks are as before.

    Captum removes its hooks itself when all goes well; this also covers an exception
    raised half-way, and restores train/eval mode and ``requires_grad``.
    """
    saved = [(m, {d: dict(getattr(m, d)) for d in _HOOK_DICTS if hasattr(m, d)}) for m in module.modules()]
    training = module.training
    grads = [p.requires_grad for p in module.parameters()]
    try:
        yield module
    finally:
        for m, dicts in saved:
            for d, hooks in dicts.items():
                current = getattr(m, d)
                current.clear()
                current.update(hooks)
        module.train(training)
        for p, g in zip(module.parameters(), grads):
            p.requires_grad_(g)


@contextlib.contextmanager
def _captum_session(model: LoadedModel, run: Classification) -> Iterator[torch.Tensor]:
    """The model's lock, restored hooks, gradients on, and a fresh input tensor.

    Attributions run in fp32 whatever precision classification uses: gradients in bf16
    or fp16 are too coarse for maps one is asked to trust.
    """
    with model.lock, hooks_restored(model.module), torch.enable_grad():
        cancellable(model.module)
        yield model.to_input(run.input.clone()).requires_grad_(True)


def cancellable(module: nn.Module) -> None:
    """Check the request's cancellation token before the stem and each residual block.

    Captum and TorchCAM call ``module(x)`` themselves (Score-CAM hundreds of times), so
    our own walker's checks never run there; these pre-hooks make a Stop end such a run
    within one block too. Call it inside ``hooks_restored``, which removes them.
    """
    def hook(_module: nn.Module, _args: Any) -> None:
        check()

    module.register_forward_pre_hook(hook)
    for name, child in module.named_modules():
        if name.count(".") == 1 and name.startswith("layer"):  # layerS.j: each residual block
            child.register_forward_pre_hook(hook)


def _to_map(attr: torch.Tensor, reduce: str) -> np.ndarray:
    """(1, C, H, W) attributions -> (H, W): 'sum', 'abs' (sum of |.|) or 'mean' over C."""
    a = attr.detach().float()[0]
    if reduce == "abs":
        a = a.abs().sum(0)
    elif reduce == "mean":
        a = a.mean(0)
    else:
        a = a.sum(0)
    return a.cpu().numpy().astype(np.float32)


def gradcam(model: LoadedModel, run: Classification, target: int, relu: bool = True,
            layer: str | None = None) -> np.ndarray:
    from captum.attr import LayerGradCam

    name = stage_name(layer, model.spec.cam_layer)
    with _captum_session(model, run) as x:
        stage = model.module.get_submodule(name)
        attr = LayerGradCam(model.module, stage).attribute(x, target=target, relu_attributions=relu)
    return attr.detach().float()[0, 0].cpu().numpy().astype(np.float32)


def guided_gradcam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    from captum.attr import GuidedGradCam

    name = stage_name(layer, model.spec.cam_layer)
    with _captum_session(model, run) as x:
        stage = model.module.get_submodule(name)
        attr = GuidedGradCam(model.module, stage).attribute(x, target=target)
    return _to_map(attr, "abs")


def _whole(params: Mapping[str, Any], key: str, default: int) -> int:
    """An integer parameter (a slider may send 32.0); anything else is the caller's mistake."""
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not v.is_integer():
        raise ZooError(f"Parameter '{key}' must be a whole number, got {v!r}.")
    return int(v)


def ig_steps(params: Mapping[str, Any]) -> int:
    """The validated ``steps`` of Integrated Gradients."""
    steps = _whole(params, "steps", IG_STEPS.default)
    if not IG_STEPS.low <= steps <= IG_STEPS.high:
        raise ZooError(f"Integrated Gradients takes between {IG_STEPS.low} and {IG_STEPS.high} steps, got {steps}. "
                       f"Choose a number in that range (the default is {IG_STEPS.default}).")
    return steps


def occlusion_positions(window: int, stride: int, size: int) -> int:
    """Window positions (one forward each) of a square window sliding over a square crop."""
    per_side = (size - window) // stride + 1
    return per_side * per_side


def occlusion_window(params: Mapping[str, Any], size: int) -> tuple[int, int]:
    """The validated (window, stride) of Occlusion on a ``size`` crop, within the pass limit."""
    window = _whole(params, "window", OCCLUSION_DEFAULTS["window"])
    stride = _whole(params, "stride", OCCLUSION_DEFAULTS["stride"])
    if not (1 <= stride <= window <= size):
        raise ZooError(f"Occlusion needs 1 <= stride <= window <= {size}; got window {window}, stride {stride}.")
    n = occlusion_positions(window, stride, size)
    if n > MAX_OCCLUSION_POSITIONS:
        side = int(MAX_OCCLUSION_POSITIONS ** 0.5)

        def least(w: int) -> int:  # the smallest stride that keeps a w px window within the limit
            return (size - w) // side + 1

        if least(window) <= window:
            hint = f"use a stride of at least {least(window)} for a {window} px window"
        else:
            w = next(w for w in range(window, size + 1) if least(w) <= w)
            hint = f"use a window and a stride of at least {w} px"
        raise ZooError(f"Occlusion with window {window} and stride {stride} would occlude {n} window positions, "
                       f"one forward pass each; the limit is {MAX_OCCLUSION_POSITIONS}. To stay within it, {hint}.")
    return window, stride


def integrated_gradients(model: LoadedModel, run: Classification, target: int, steps: int = IG_DEFAULTS["steps"],
                         batch: int = 8) -> np.ndarray:
    from captum.attr import IntegratedGradients

    steps = ig_steps({"steps": steps})
    with _captum_session(model, run) as x:
        # internal_batch_size bounds memory: at most `batch` interpolated images at once.
        attr = IntegratedGradients(model.module).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=steps, internal_batch_size=batch)
    return _to_map(attr, "sum")


def saliency(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    from captum.attr import Saliency

    with _captum_session(model, run) as x:
        attr = Saliency(model.module).attribute(x, target=target, abs=True)
    return _to_map(attr, "abs")


def occlusion(model: LoadedModel, run: Classification, target: int, window: int = OCCLUSION_DEFAULTS["window"],
              stride: int = OCCLUSION_DEFAULTS["stride"], batch: int = 16) -> np.ndarray:
    from captum.attr import Occlusion

    window, stride = occlusion_window({"window": window, "stride": stride}, run.input.shape[-1])
    with _captum_session(model, run) as x:
        attr = Occlusion(model.module).attribute(
            x, target=target, sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride), baselines=0.0, perturbations_per_eval=batch)
    return _to_map(attr, "mean")


# --- TorchCAM's CAM family ------------------------------------------------------------
# A TorchCAM extractor hooks its layer when built and unhooks on exit. It runs inside the
# same session as Captum (lock, hooks_restored, fp32 gradients), so no hook, mode or
# requires_grad survives an exception either. Maps are taken unnormalised (TorchCAM's
# ``normalized=False``), after the ReLU each method applies.

def _torchcam(model: LoadedModel, run: Classification, target: int, extractor: type, layer: str | None,
              setup: Callable[[Any], None] | None = None, **kwargs: Any) -> np.ndarray:
    name = stage_name(layer, model.spec.cam_layer)
    with _captum_session(model, run) as x:
        with extractor(model.module, name, **kwargs) as ex:
            if setup is not None:
                setup(ex)
            scores = model.module(x)
            maps = ex(target, scores, normalized=False)
    return maps[0][0].detach().float().cpu().numpy().astype(np.float32)


def gradcampp(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    from torchcam.methods import GradCAMpp

    return _torchcam(model, run, target, GradCAMpp, layer)


def xgradcam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    from torchcam.methods import XGradCAM

    return _torchcam(model, run, target, XGradCAM, layer)


def layercam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    from torchcam.methods import LayerCAM

    return _torchcam(model, run, target, LayerCAM, layer)


class _SeededNormal:
    """N(0, std) noise from a private generator, in place of Smooth Grad-CAM++'s distribution.

    TorchCAM samples from torch's global generator, which every thread shares: the map
    would change from call to call and with other requests. Same ``sample`` interface;
    with the same seed it draws what ``torch.manual_seed(seed)`` then TorchCAM would.
    """

    def __init__(self, std: float, seed: int):
        self.std = std
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, shape: Any) -> torch.Tensor:
        return torch.normal(0.0, self.std, size=tuple(shape), generator=self.generator)


def smoothgradcampp(model: LoadedModel, run: Classification, target: int, layer: str | None = None,
                    samples: int = 4, std: float = 0.3, seed: int = 0) -> np.ndarray:
    from torchcam.methods import SmoothGradCAMpp

    if not 1 <= int(samples) <= 64:
        raise ZooError(f"Smooth Grad-CAM++ needs between 1 and 64 noisy samples, got {samples}.")
    if not 0.0 < float(std) <= 5.0:
        raise ZooError(f"Smooth Grad-CAM++ needs a noise std in (0, 5] (normalised input units), got {std}.")

    def seeded(ex: Any) -> None:
        ex._distrib = _SeededNormal(float(std), int(seed))

    return _torchcam(model, run, target, SmoothGradCAMpp, layer, setup=seeded, num_samples=int(samples),
                     std=float(std))


def scorecam(model: LoadedModel, run: Classification, target: int, layer: str | None = None,
             batch: int = 32) -> np.ndarray:
    """Score-CAM: each channel of the stage, upsampled and min-max scaled, masks the input.

    One forward per channel (``stage_channels``), in batches of ``batch``, plus two.
    """
    from torchcam.methods import ScoreCAM

    if not 1 <= int(batch) <= 256:
        raise ZooError(f"Score-CAM's batch must be between 1 and 256 masked images, got {batch}.")
    return _torchcam(model, run, target, ScoreCAM, layer, batch_size=int(batch))


# Measured time of one pass of each method, in batch-1 forwards of the same model
# (``benchmarks/methods.py``: a map's median time over a paired fp32 forward's, divided by
# the map's passes; ResNet-18 / 50 / 152 on a 2-core CPU, see the README). Batched passes
# (Occlusion 16 at a time, Score-CAM 32, Integrated Gradients 8) cost less than a lone
# forward each; a backward to a stage adds little, one to the input about as much as the
# forward. ``Explorer.estimate`` multiplies these by the forward it measured, and replaces
# them by what a method's own runs took once it has run (see ``Explorer.pass_seconds``).
# The two dear ones are in the Explorer's own unit, the classification's forward at the
# model's precision (bf16 on CPUs with AVX-512 BF16, where it is no faster than fp32):
# ``benchmarks/estimate.py`` on such a 2-core CPU, shared and loaded (so noisy: the forward
# itself varied 2x between runs), gave Integrated Gradients 1.24 (ResNet-18), 0.74 and 1.78
# (ResNet-50) forwards a pass, Occlusion 0.73, 0.28 and 0.56; issue 17's ResNet-50 run, 0.63
# and 0.56. The figures below are about their geometric means; the fp32 ones (1.6, 0.8)
# overestimated Integrated Gradients 2.4x there.
PASS_COSTS: Mapping[str, float] = MappingProxyType({
    "cam": 0.0, "gradcam": 1.1, "guided-gradcam": 1.6, "integrated-gradients": 0.9, "saliency": 2.0,
    "occlusion": 0.55, "gradcampp": 1.1, "smoothgradcampp": 1.1, "xgradcam": 1.1, "layercam": 1.1, "scorecam": 1.0,
})


def _occlusion_cost() -> str:
    w, s = OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default
    return (f"1 forward per window position, ((224 - window) / stride + 1)^2: {occlusion_positions(w, s, 224)} "
            f"by default (window {w}, stride {s} px), at most {MAX_OCCLUSION_POSITIONS}")


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
           # ``channels``: the stage's (``stage_channels``), which ``Explorer.estimate`` fills in;
           # without the model at hand, the largest stage (2048 channels) bounds the estimate.
           count=lambda params, size: int(params.get("channels", 2048)) + 2),
)}
for _name, _cost in PASS_COSTS.items():  # the measured figures travel with each Method
    METHODS[_name] = replace(METHODS[_name], pass_cost=_cost)


def get_method(name: str) -> Method:
    if name not in METHODS:
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
    return Explanation(method, pred, raw, time.perf_counter() - t0, flat_map_notes(m, raw, pred.label), layer)


# Why a method's map can come out all zero, where it has a reason of its own.
_ZERO_WHY = {
    "gradcam": "Grad-CAM keeps only positive evidence (a ReLU over the gradient-weighted layer4 channels), "
               "and no region of this image counts *for* {label}",
    "guided-gradcam": "Guided Grad-CAM multiplies by Grad-CAM, whose ReLU keeps only positive evidence, and no "
                      "region of this image counts *for* {label}",
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
