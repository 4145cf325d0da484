"""CAM, Captum's attributions and the edge-detector control: each ``fn(model, run, target, **params)``
returns a raw float32 map (see ``zoo.explain``). Every method that hooks the model runs inside
``session``: the model's lock, hooks restored, fp32 gradients, cancellation pre-hooks.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..cancel import check, holding
from ..inference import Classification
from ..models import LoadedModel
from .rules import IG_DEFAULTS, OCCLUSION_DEFAULTS, check_cam_layer, ig_steps, occlusion_window, stage_name

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


