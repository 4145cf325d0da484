"""The rules of the explanation methods' settings and costs: ranges, defaults, limits, stages.

No network runs here and nothing heavy is imported: the method table (``zoo.explain``),
the parameter rules (``zoo.params``) and the estimates read these without loading torch's
models. The runners live in ``zoo.attribution.captum_maps`` and ``zoo.attribution.cam_family``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import ZooError
from ..registry import Architecture

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



def _occlusion_cost() -> str:
    w, s = OCCLUSION_WINDOW.default, OCCLUSION_STRIDE.default
    return (f"1 forward per window position, ((224 - window) / stride + 1)^2: {occlusion_positions(w, s, 224)} "
            f"by default (window {w}, stride {s} px), at most {MAX_OCCLUSION_POSITIONS}")




MAX_ABLATION_BATCH = 256


# FullGrad's loop over the bias layers, per channel, in multiply-adds of a forward: a
# channel's min-max scaling and resize to 224 x 224 took 150 us on a 2-core CPU that ran
# 70 G multiply-adds a second in a forward (``benchmarks/methods.py --methods fullgrad``:
# ResNet-50 75 forwards a map, ResNet-152 69). It grows with the output's pixels.
FULLGRAD_MACS_PER_CHANNEL = 10e6


@functools.lru_cache(maxsize=None)
def bias_channels(arch: str) -> int:
    """Channels of every conv/BN bias of ``arch`` (what FullGrad maps one by one): its BatchNorms' features."""
    import torch
    import torchvision
    from torch import nn

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
        from ..stats import model_stats

        p["bias_channels"] = bias_channels(arch.name)
        p["macs"] = model_stats(arch.name, crop).macs
    return p


def fullgrad_passes(params: Mapping[str, Any], size: int) -> int:
    """FullGrad's forward-pass equivalents: the forward and backward to the input (3), then the
    bias layers' maps (``FULLGRAD_MACS_PER_CHANNEL`` each, over the model's multiply-adds).

    ``params``: ``bias_channels`` and ``macs`` of the model (``zoo.features.classify.map_estimate`` fills them
    in); without them, ResNet-152's, the dearest built-in per multiply-add.
    """
    channels = int(params.get("bias_channels", 75_712))
    macs = float(params.get("macs", 11.56e9))
    return 3 + math.ceil(channels * FULLGRAD_MACS_PER_CHANNEL * (size / 224) ** 2 / macs)


def ablation_batch(params: Mapping[str, Any]) -> int:
    """The validated ``batch`` (ablated copies per forward) of Ablation-CAM."""
    batch = _whole(params, "batch", 32)
    if not 1 <= batch <= MAX_ABLATION_BATCH:
        raise ZooError(f"Ablation-CAM's batch must be between 1 and {MAX_ABLATION_BATCH} ablated copies, got "
                       f"{batch}.")
    return batch

