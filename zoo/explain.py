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
import functools
import inspect
import math
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from . import lrp
from .cancel import check, holding
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
    with holding(model.lock), hooks_restored(model.module), torch.enable_grad():
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
    # pytorch-grad-cam's (benchmarks/methods.py on ResNet-18/50 under load, README: about ±50 %);
    # Ablation-CAM's batched passes priced as Score-CAM's; FullGrad's passes are already forward
    # equivalents (``fullgrad_passes``); edges reads no network.
    "hirescam": 2.1, "gradcam-elementwise": 2.5, "eigencam": 2.4, "ablationcam": 1.0, "fullgrad": 1.0,
    "shapleycam": 1.0, "edges": 0.0,
    # zoo.lrp's, per forward-pass equivalent (``lrp.FORWARDS``): benchmarks/methods.py, README.
    **{f"lrp-{name}": cost for name, cost in lrp.PASS_COST.items()},
})


def _occlusion_cost() -> str:
    w, s = OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default
    return (f"1 forward per window position, ((224 - window) / stride + 1)^2: {occlusion_positions(w, s, 224)} "
            f"by default (window {w}, stride {s} px), at most {MAX_OCCLUSION_POSITIONS}")



# --- pytorch-grad-cam's methods -------------------------------------------------------
# pytorch-grad-cam (``grad-cam`` on PyPI) has CAM methods TorchCAM lacks. Its CAM objects
# hook the layers when built; ``_gradcam_lib`` releases them in ``finally`` rather than
# through ``with``: the library's ``__exit__`` swallows IndexError (it prints and returns
# True), which would turn a failure into a missing map. The session around it (lock,
# hooks_restored, fp32 gradients, cancellation pre-hooks) is the one every method uses.
# Maps are taken before the library's min-max scaling and resizing: its ``get_cam_image``
# output (feature resolution, unnormalised) after the ReLU it applies next.

MAX_ABLATION_BATCH = 256


def _gradcam_lib(model: LoadedModel, run: Classification, target: int, cls_name: str, layer: str | None,
                 whole: bool = False, score: str = "ClassifierOutputTarget",
                 setup: Callable[[Any], None] | None = None, **kwargs: Any) -> np.ndarray:
    """Run pytorch-grad-cam's ``cls_name`` on ``layer`` for ``target``; the raw map.

    ``whole``: the method reads the whole network (FullGrad) and its own output, already
    at the input's resolution, is the map. ``score``: the library's target class (what is
    differentiated; by default the class's logit). ``setup(extractor)``: adjust the
    library's object before it runs.
    """
    import pytorch_grad_cam
    from pytorch_grad_cam.utils import model_targets

    cls = getattr(pytorch_grad_cam, cls_name)
    with _captum_session(model, run) as x, _modules_restored(model.module):
        layers = [] if whole else [model.module.get_submodule(stage_name(layer, model.spec.cam_layer))]
        extractor = cls(model.module, layers, **kwargs)
        try:
            if setup is not None:
                setup(extractor)
            maps: list[np.ndarray] = []
            if not whole:
                image = extractor.get_cam_image

                def kept(*args: Any, **kw: Any) -> np.ndarray:
                    out = image(*args, **kw)
                    maps.append(np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out))
                    return out

                extractor.get_cam_image = kept
            out = extractor(input_tensor=x, targets=[getattr(model_targets, score)(int(target))])
        finally:
            extractor.activations_and_grads.release()
    raw = out[0] if whole else np.maximum(maps[0][0], 0)  # the library's own ReLU, before scaling
    return np.ascontiguousarray(raw, dtype=np.float32)


@contextlib.contextmanager
def _modules_restored(module: nn.Module) -> Iterator[None]:
    """Every submodule back in its place afterwards: Ablation-CAM swaps a stage for an
    ablation layer while it runs, and an exception (or a Stop) half-way must not leave it there."""
    saved = [(m, dict(m._modules)) for m in module.modules()]
    try:
        yield
    finally:
        for m, children in saved:
            if dict(m._modules) != children:
                m._modules.clear()
                m._modules.update(children)


def hirescam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    """HiResCAM (Draelos & Carin 2020): sum over channels of gradient x activation, element-wise."""
    return _gradcam_lib(model, run, target, "HiResCAM", layer)


def gradcam_elementwise(model: LoadedModel, run: Classification, target: int,
                        layer: str | None = None) -> np.ndarray:
    """Grad-CAM element-wise: like HiResCAM, with a ReLU on each gradient x activation before the sum."""
    return _gradcam_lib(model, run, target, "GradCAMElementWise", layer)


def eigencam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    """Eigen-CAM (Muhammad & Yeasin 2020): the stage's first principal component. Class-agnostic:
    ``target`` does not change it (the same map for every class)."""
    return _gradcam_lib(model, run, target, "EigenCAM", layer)


def shapleycam(model: LoadedModel, run: Classification, target: int, layer: str | None = None) -> np.ndarray:
    """ShapleyCAM (Cai et al. 2025): channel weights from the gradient minus half the Hessian-vector
    product, of the paper's ReST score (the logit plus the log-softmax of the class).

    With the bare logit the Hessian is zero in a ReLU network (everything after the stage is
    piecewise linear) and ShapleyCAM would be Grad-CAM; ReST's softmax term is what curves.
    """
    return _gradcam_lib(model, run, target, "ShapleyCAM", layer, score="ClassifierOutputReST")


def fullgrad(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    """FullGrad (Srinivas & Fleuret 2019): |input x input-gradient| plus |bias x gradient| of every
    conv/BN bias, each min-max scaled and upsampled; at the input's resolution, scaled to [0, 1].

    BatchNorm is folded into the convolutions here, so each conv's bias is the folded BN
    bias and its output is BN's output: the same terms as on plain torchvision. Most of
    the time goes to the library's loop over the bias layers after the backward (every
    channel min-max scaled and resized to the input: 155 layers, 75,712 channels on
    ResNet-152); the request's token is checked before each layer there (``_Checked``).
    """
    return _gradcam_lib(model, run, target, "FullGrad", None, whole=True, setup=_checked_bias_loop)


class _Checked(list):
    """A list whose iteration checks the request's token (``zoo.cancel.check``) before each item."""

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            check()
            yield item


def _checked_bias_loop(extractor: Any) -> None:
    # FullGrad's compute_cam_per_layer walks ``zip(self.bias_data, grads)``: a Stop ends it
    # within one bias layer's maps instead of after all of them (tens of seconds).
    extractor.bias_data = _Checked(extractor.bias_data)


# FullGrad's loop over the bias layers, per channel, in multiply-adds of a forward: a
# channel's min-max scaling and resize to 224 x 224 took 150 us on a 2-core CPU that ran
# 70 G multiply-adds a second in a forward (``benchmarks/methods.py --methods fullgrad``:
# ResNet-50 75 forwards a map, ResNet-152 69). It grows with the output's pixels.
FULLGRAD_MACS_PER_CHANNEL = 10e6


@functools.lru_cache(maxsize=None)
def bias_channels(arch: str) -> int:
    """Channels of every conv/BN bias of ``arch`` (what FullGrad maps one by one): its BatchNorms' features."""
    import torchvision

    with torch.device("meta"):  # the layout only: no weights, no memory
        module = torchvision.models.get_model(arch, weights=None)
    return sum(m.num_features for m in module.modules() if isinstance(m, nn.BatchNorm2d))


def model_params(method: str, arch: Architecture, crop: int, params: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """``params`` plus what ``method``'s pass count needs to know of the model: the stage's
    channels (Score-CAM, Ablation-CAM), the bias channels and multiply-adds (FullGrad)."""
    p = dict(params or {})
    if method in ("scorecam", "ablationcam"):  # one pass per channel of the stage it reads
        p["channels"] = stage_channels(arch, p.get("layer"))
    elif method == "fullgrad":
        from .stats import model_stats

        p["bias_channels"] = bias_channels(arch.name)
        p["macs"] = model_stats(arch.name, crop).macs
    return p


def fullgrad_passes(params: Mapping[str, Any], size: int) -> int:
    """FullGrad's forward-pass equivalents: the forward and backward to the input (3), then the
    bias layers' maps (``FULLGRAD_MACS_PER_CHANNEL`` each, over the model's multiply-adds).

    ``params``: ``bias_channels`` and ``macs`` of the model (``Explorer.estimate`` fills them
    in); without them, ResNet-152's, the dearest built-in per multiply-add.
    """
    channels = int(params.get("bias_channels", 75_712))
    macs = float(params.get("macs", 11.56e9))
    return 3 + math.ceil(channels * FULLGRAD_MACS_PER_CHANNEL * (size / 224) ** 2 / macs)


class _NoBar:
    """Stands in for the ``tqdm`` module inside pytorch-grad-cam's Ablation-CAM: no progress
    bar on the server's stderr for each request (progress goes through the app's own)."""

    @staticmethod
    def tqdm(iterable: Any, *args: Any, **kwargs: Any) -> Any:
        return iterable


def ablation_batch(params: Mapping[str, Any]) -> int:
    """The validated ``batch`` (ablated copies per forward) of Ablation-CAM."""
    batch = _whole(params, "batch", 32)
    if not 1 <= batch <= MAX_ABLATION_BATCH:
        raise ZooError(f"Ablation-CAM's batch must be between 1 and {MAX_ABLATION_BATCH} ablated copies, got "
                       f"{batch}.")
    return batch


def ablationcam(model: LoadedModel, run: Classification, target: int, layer: str | None = None,
                batch: int = 32) -> np.ndarray:
    """Ablation-CAM (Desai & Ramaswamy 2020): each channel's weight is the relative drop of the
    target's logit when that channel of the stage is zeroed; one forward per channel, in
    batches of ``batch``, plus two. Nothing is skipped (the library's ratio stays 1.0)."""
    import pytorch_grad_cam.ablation_cam as ablation_module
    from pytorch_grad_cam import AblationLayer

    batch = ablation_batch({"batch": batch})
    ablation_module.tqdm = _NoBar
    # A fresh ablation layer per call: the library's default one is shared by every instance.
    return _gradcam_lib(model, run, target, "AblationCAM", layer, ablation_layer=AblationLayer(),
                        batch_size=batch)

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

# --- a control that reads no network --------------------------------------------------

def edges(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    """Sobel gradient magnitude of the crop the model saw, in grey (0-1): an edge detector.

    It reads neither the network nor the class, yet looks like a plausible saliency map:
    the control of the sanity check (Adebayo et al. 2018, which compares saliency maps
    with an edge detector; pytorch-grad-cam ships the same baseline as ``sobel_cam``).
    Grey as ``PIL``'s "L" (ITU-R 601-2 luma); 3x3 Sobel kernels with the border mirrored
    without repeating the edge pixel (OpenCV's default, SciPy's ``mode="mirror"``).
    """
    grey = np.asarray(run.crop.convert("L"), dtype=np.float64) / 255.0
    p = np.pad(grey, 1, mode="reflect")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy).astype(np.float32)


# Appended, never reordered: other tables and tests list the methods in this order.
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
