"""Where the network looked: CAM and Captum attributions, one signature, one table.

Every method is ``fn(model, run, target, **params) -> np.ndarray``: a raw float32
map (h, w) for class ``target`` over the model's input crop, unnormalised. CAM comes
out of the classification's own forward pass (``run.features``); Captum methods run
on the model with hooks, inside ``hooks_restored`` and the model's lock.

DeepLift is not offered: torchvision's ResNets reuse one ReLU module several times per
block, which DeepLift's per-module bookkeeping cannot handle.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from .errors import UnknownMethodError, ZooError
from .inference import Classification, Prediction, resolve_target
from .models import LoadedModel

MethodFn = Callable[..., np.ndarray]
PassesFn = Callable[[Mapping[str, Any], int], int]

# What one request may cost, enforced here rather than only by the page's sliders: anyone
# can call the API with any parameters. Both bound the images sent through the network.
# Occlusion runs one forward per window position: at most 400, about 2.4x the default
# (window 32, stride 16 on a 224 crop: 13 x 13 = 169).
MAX_OCCLUSION_POSITIONS = 400
# Integrated Gradients runs `steps` forwards and backwards: at most 4x the default.
MIN_IG_STEPS, MAX_IG_STEPS = 2, 128
OCCLUSION_DEFAULTS: Mapping[str, int] = MappingProxyType({"window": 32, "stride": 16})
IG_DEFAULTS: Mapping[str, int] = MappingProxyType({"steps": 32})


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

    def passes(self, params: Mapping[str, Any] | None = None, size: int = 224) -> int:
        """Passes through the network for one map on a ``size`` x ``size`` crop.

        Raises ``ZooError`` for parameters the server refuses (the same check ``explain``
        makes), so a caller can estimate the time, or say what to change, before running.
        """
        return self.count(params or {}, int(size))


@dataclass
class Explanation:
    method: str
    target: Prediction
    raw: np.ndarray  # (h, w) float32, as the method produced it
    seconds: float
    notes: list[str] = field(default_factory=list)  # what a reader must know, e.g. "this map is all zero"


# --- the hook-free method -------------------------------------------------------------

def cam(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    """Class activation map (Zhou et al. 2016): sum_k w_ck f_k(x, y).

    Exact for a network that ends in global average pooling and one linear layer: the
    spatial mean of this map plus the fc bias is the class logit.
    """
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
        yield model.to_input(run.input.clone()).requires_grad_(True)


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


def gradcam(model: LoadedModel, run: Classification, target: int, relu: bool = True) -> np.ndarray:
    from captum.attr import LayerGradCam

    with _captum_session(model, run) as x:
        layer = model.module.get_submodule(model.spec.cam_layer)
        attr = LayerGradCam(model.module, layer).attribute(x, target=target, relu_attributions=relu)
    return attr.detach().float()[0, 0].cpu().numpy().astype(np.float32)


def guided_gradcam(model: LoadedModel, run: Classification, target: int) -> np.ndarray:
    from captum.attr import GuidedGradCam

    with _captum_session(model, run) as x:
        layer = model.module.get_submodule(model.spec.cam_layer)
        attr = GuidedGradCam(model.module, layer).attribute(x, target=target)
    return _to_map(attr, "abs")


def _whole(params: Mapping[str, Any], key: str, default: int) -> int:
    """An integer parameter (a slider may send 32.0); anything else is the caller's mistake."""
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or isinstance(v, float) and not v.is_integer():
        raise ZooError(f"Parameter '{key}' must be a whole number, got {v!r}.")
    return int(v)


def ig_steps(params: Mapping[str, Any]) -> int:
    """The validated ``steps`` of Integrated Gradients."""
    steps = _whole(params, "steps", IG_DEFAULTS["steps"])
    if not MIN_IG_STEPS <= steps <= MAX_IG_STEPS:
        raise ZooError(f"Integrated Gradients takes between {MIN_IG_STEPS} and {MAX_IG_STEPS} steps, got {steps}. "
                       f"Choose a number in that range (the default is {IG_DEFAULTS['steps']}).")
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


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("cam", "CAM (global average pooling)", cam,
           "free: reuses the classification's forward pass", "feature", backward=False,
           count=lambda params, size: 0),
    Method("gradcam", "Grad-CAM", gradcam, "1 forward + 1 backward", "feature"),
    Method("guided-gradcam", "Guided Grad-CAM", guided_gradcam, "2 forwards + 2 backwards", "input",
           count=lambda params, size: 2),
    Method("integrated-gradients", "Integrated Gradients", integrated_gradients,
           f"`steps` forwards + backwards (default {IG_DEFAULTS['steps']}, at most {MAX_IG_STEPS})", "input",
           signed=True, count=lambda params, size: ig_steps(params)),
    Method("saliency", "Saliency (input gradient)", saliency, "1 forward + 1 backward", "input"),
    # Captum also runs the unoccluded input once, hence the + 1.
    Method("occlusion", "Occlusion", occlusion,
           "1 forward per window position, ((224 - window) / stride + 1)^2: 169 by default, at most "
           f"{MAX_OCCLUSION_POSITIONS}", "input", signed=True, backward=False,
           count=lambda params, size: occlusion_positions(*occlusion_window(params, size), size) + 1),
)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UnknownMethodError(f"Unknown method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name]


def explain(model: LoadedModel, run: Classification, method: str = "cam", target: int | str | None = None,
            **params: Any) -> Explanation:
    """Map for ``target`` (index, name, or None for the top-1 class) by ``method``."""
    m = get_method(method)
    idx = resolve_target(run.labels, target, default=run.predictions[0].index)
    t0 = time.perf_counter()
    raw = m.fn(model, run, idx, **params)
    pred = run.prediction(idx)
    return Explanation(method, pred, raw, time.perf_counter() - t0, flat_map_notes(m, raw, pred.label))


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
