"""Build torchvision ResNets, load verified safetensors into them, cache them.

Loading is strict: every key and shape must match ``torchvision.models.<arch>``.
The module is built on the meta device and the weights are *assigned*, so no time is
spent on a random initialisation that would be overwritten anyway.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from .errors import ArchitectureMismatchError, CorruptWeightsError, ZooError
from .hub import ProgressFn, fetch_weights
from .registry import ModelSpec

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceUnavailableError(ZooError):
    """The device asked for is not present on this machine."""


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU: one code path for all three."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("CUDA was asked for but no CUDA GPU is available here; use --device auto or cpu.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError("MPS was asked for but Apple's Metal backend is not available; use --device auto or cpu.")
    if name not in DEVICES:
        raise DeviceUnavailableError(f"Unknown device {name!r}; choose one of {', '.join(DEVICES)}.")
    return torch.device(name)


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (no download)."""
    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


@dataclass(eq=False)
class LoadedModel:
    """A ready model: eval mode, on its device, with a hook-free feature extractor."""

    spec: ModelSpec
    module: nn.Module
    features: nn.Module  # FX graph sharing ``module``'s weights: x -> {"features", "logits"}
    device: torch.device
    labels: tuple[str, ...]
    # Captum attaches hooks to ``module``; requests that do so take turns on this lock so
    # that no request sees another's hooks. The hook-free forward needs no lock.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device)

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        return to_input(batch, self.device)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Half precision on GPUs (bf16 where supported), None (fp32) on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    dtype = amp_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def to_input(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to ``device``; channels_last on CUDA, where convolutions prefer it."""
    batch = batch.to(device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else batch


def build(spec: ModelSpec, *, meta: bool = False) -> nn.Module:
    """``torchvision.models.<arch>(weights=None)`` sized for the spec's classes."""
    ctx = torch.device("meta") if meta else contextlib.nullcontext()
    with ctx:
        return torchvision.models.get_model(spec.arch.name, weights=None, num_classes=spec.num_classes)


def read_state_dict(path: Path, spec: ModelSpec) -> dict[str, torch.Tensor]:
    """Read a safetensors file (never pickle); damaged files raise ``CorruptWeightsError``."""
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CorruptWeightsError(
            f"{spec.name}: {spec.source} is not a readable safetensors file ({e}). It may be truncated; "
            "delete it (python -m zoo download --force NAME) or check the file.") from None
    # Weights saved in half precision still load into an fp32 model.
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_model(spec: ModelSpec, device: torch.device | str = "auto", *, progress: ProgressFn | None = None,
               cache_dir: str | os.PathLike | None = None) -> LoadedModel:
    """Fetch, verify and load ``spec``; eval mode, on ``device``."""
    device = resolve_device(device) if isinstance(device, str) else device
    path = fetch_weights(spec, progress=progress, cache_dir=cache_dir)
    if progress:
        progress(None, f"Loading {spec.name} onto {device.type}")
    state = read_state_dict(path, spec)
    model = build(spec, meta=True)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise ArchitectureMismatchError(
            f"{spec.name}: the weights in {spec.source} do not fit {spec.arch.name} with "
            f"{spec.num_classes} classes: {detail[:400]}. Check 'arch' (and 'labels') in your zoo file.") from None
    for m in model.modules():
        # torchvision reuses in-place ReLUs; Captum's backward hooks (Guided Grad-CAM)
        # cannot wrap an in-place op. Out-of-place gives identical outputs.
        if isinstance(m, nn.ReLU):
            m.inplace = False
    model.requires_grad_(False)  # attributions need input gradients only; shared weights never get .grad
    model.eval()
    if device.type == "cuda":
        model = model.to(device, memory_format=torch.channels_last)
    else:
        model = model.to(device)
    feats = create_feature_extractor(model, {spec.cam_layer: "features", "fc": "logits"})
    labels = spec.labels if spec.labels is not None else imagenet_labels()
    return LoadedModel(spec, model, feats, device, labels)


class ModelCache:
    """A bounded, thread-safe LRU of loaded models.

    Two requests for the same model at once load it once: the second waits on a
    per-model lock while other models load in parallel.
    """

    def __init__(self, capacity: int | None = None, device: str = "auto",
                 cache_dir: str | os.PathLike | None = None):
        self.capacity = max(1, capacity or int(os.environ.get("ZOO_MODEL_CACHE", "5")))
        self.device = resolve_device(device)
        self.cache_dir = cache_dir
        self._models: OrderedDict[ModelSpec, LoadedModel] = OrderedDict()
        self._loading: dict[ModelSpec, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads: dict[str, int] = {}  # name -> times loaded; for tests and the load script

    def get(self, spec: ModelSpec, progress: ProgressFn | None = None) -> LoadedModel:
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            key_lock = self._loading.setdefault(spec, threading.Lock())
        with key_lock:
            with self._lock:
                if spec in self._models:
                    return self._models[spec]
            model = load_model(spec, self.device, progress=progress, cache_dir=self.cache_dir)
            with self._lock:
                self._models[spec] = model
                self.loads[spec.name] = self.loads.get(spec.name, 0) + 1
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
                self._loading.pop(spec, None)
        return model

    def loaded(self) -> list[str]:
        with self._lock:
            return [s.name for s in self._models]

    def models(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())
