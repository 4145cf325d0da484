"""The CAM family from TorchCAM and pytorch-grad-cam, adapted to ``fn(model, run, target, **params)``
(see ``zoo.explain``); each runs inside ``captum_maps.session``, as Captum's methods do."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..cancel import check
from ..errors import ZooError
from ..inference import Classification
from ..models import LoadedModel
from .captum_maps import _captum_session
from .rules import ablation_batch, stage_name

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


# --- pytorch-grad-cam's methods -------------------------------------------------------
# pytorch-grad-cam (``grad-cam`` on PyPI) has CAM methods TorchCAM lacks. Its CAM objects
# hook the layers when built; ``_gradcam_lib`` releases them in ``finally`` rather than
# through ``with``: the library's ``__exit__`` swallows IndexError (it prints and returns
# True), which would turn a failure into a missing map. The session around it (lock,
# hooks_restored, fp32 gradients, cancellation pre-hooks) is the one every method uses.
# Maps are taken before the library's min-max scaling and resizing: its ``get_cam_image``
# output (feature resolution, unnormalised) after the ReLU it applies next.



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


class _NoBar:
    """Stands in for the ``tqdm`` module inside pytorch-grad-cam's Ablation-CAM: no progress
    bar on the server's stderr for each request (progress goes through the app's own)."""

    @staticmethod
    def tqdm(iterable: Any, *args: Any, **kwargs: Any) -> Any:
        return iterable


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
