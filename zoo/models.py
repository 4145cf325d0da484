"""Build torchvision ResNets, load verified safetensors into them, cache them.

Loading is strict: every key and shape must match ``torchvision.models.<arch>``.
The module is built on the meta device and the weights are *assigned*, so no time is
spent on a random initialisation that would be overwritten anyway.

The device and precision rules are in ``zoo.precision``, the hook-free forward in
``zoo.forward``; both are re-exported here, where callers have always imported them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.overrides import TorchFunctionMode

from .cancel import check
from .compiled import KINDS, resolve
from .compiling import Compiler
from .errors import ArchitectureMismatchError, CorruptWeightsError
from .hub import ProgressFn, fetch_weights
# Re-exported from their old home (callers import them from here); cpu_bf16_native is not, so a
# test that patches it must patch zoo.precision, where precision_candidates reads it.
from .forward import block_forward, call, residual_branch, shortcut, stem  # noqa: F401 (as above)
from .precision import (_DTYPES, DeviceUnavailableError, PrecisionUnavailableError,  # noqa: F401
                        _requested, autocast, precision_candidates, precision_name, precision_plan,
                        resolve_device, resolve_precision, to_input)
from .registry import ModelSpec


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (no download)."""
    return tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm that follows a convolution into it, in place (inference only).

    torchvision's ResNets always put ``bnN`` right after ``convN`` (and ``downsample.1``
    after ``downsample.0``); each BN becomes ``nn.Identity`` so module names stay as in
    torchvision: the output of ``layerS[j].bn2`` is still "the output of the 3x3 layer
    after BN". No tracing, no copies of the rest of the model.
    """
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for (cname, conv), (bname, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                            bn.eps, bn.weight, bn.bias)
                conv.weight, conv.bias = w, b
                setattr(parent, bname, nn.Identity())
    return module


@dataclass(eq=False)
class LoadedModel:
    """A ready model: eval mode, BatchNorm folded, channels-last, on its device.

    ``module`` is torchvision's ResNet (module names unchanged) in fp32; it serves the
    explanations and the Depth lab, which need fp32 gradients and per-block access.
    Classification runs ``forward``: the trunk (stem, layer1-4) at the chosen precision,
    then global average pooling and ``fc`` in fp32 on the fp32-cast features, so that
    CAM (from the same features) stays exact whatever precision the trunk ran in.
    """

    spec: ModelSpec
    module: nn.Module
    device: torch.device
    labels: tuple[str, ...]
    precision: torch.dtype | None = None  # None: fp32
    # Captum and TorchCAM attach hooks to ``module``; requests that do so take turns on
    # this lock so that no request sees another's hooks. ``forward`` needs no lock.
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The compiled trunk (zoo.compiled), once ready: ``forward`` uses it for inputs it was
    # compiled for. Set in one assignment (the swap), so a forward sees it whole or not at all.
    compiled: Any = None
    # Why the trunk runs at ``precision`` (zoo.autotune); ``tuned`` is clear while that is being
    # measured (the model answers in fp32 meanwhile). ``use_compiled``: False where eager measured
    # clearly faster than the compiled trunk (--compile auto).
    precision_note: str = ""
    tuned: threading.Event = field(default_factory=lambda: _set(threading.Event()))
    use_compiled: bool = True
    compile_note: str = ""  # how compiling went, or why this model runs eager
    compile_log: dict[str, str] = field(default_factory=dict)  # graph kind -> how it was had, or why not
    weights_file: Path | None = None  # the verified file it was read from (a run's journal names its bytes)

    @property
    def precision_name(self) -> str:
        return precision_name(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def to_input(self, batch: torch.Tensor) -> torch.Tensor:
        return to_input(batch, self.device)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the four stages: (N, 3, H, W) -> layer4's (N, C, h, w), hook-free (see ``call``)."""
        m = self.module
        x = stem(m, x)
        for stage in (m.layer1, m.layer2, m.layer3, m.layer4):
            for block in stage:
                x = block_forward(block, x)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pooling and ``fc``, always in fp32."""
        return call(self.module.fc, features.float().mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features fp32, logits fp32) for a prepared input batch (see ``to_input``)."""
        features, logits, _ = self.run(x)
        return features, logits

    def run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, str]:
        """``forward``, and which path ran the trunk: "compiled" or "eager".

        The compiled trunk (when ready, and for inputs it was compiled for: inference mode,
        channels-last, the model's image size) cannot check the request's token between
        blocks; it is checked before and after it, and a compiled forward is short.
        """
        compiled = self.compiled if self.use_compiled else None  # read once: a swap changes nothing here
        trunk = "eager"
        with self.autocast():
            if compiled is not None and compiled.accepts(x):
                check()
                features = compiled(x)  # fp32 features, from a trunk that ran at the model's precision
                check()
                trunk = "compiled"
            else:
                features = self.trunk(x)
        features = features.float()
        return features, self.head(features), trunk

    @property
    def compile_missing(self) -> dict[str, str]:
        """Graph kinds that were tried and are not there, with why (``compile_log``)."""
        have = self.compiled.graphs if self.compiled is not None else {}
        return {k: note for k, note in self.compile_log.items() if k not in have}

    @property
    def trunk_kind(self) -> str:
        """The trunk classification takes now: "compiled" once the swap happened, else "eager"."""
        return "eager" if self.compiled is None else "compiled"

    @property
    def graphs(self) -> tuple[str, ...]:
        """The compiled graph kinds loaded now (``zoo.compiled.KINDS``: "one", "any"); () when eager."""
        return tuple(k for k in KINDS if self.compiled is not None and k in self.compiled.graphs)


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


class _SkipInit(TorchFunctionMode):
    """Skips the random initialisation a module's ``__init__`` runs (``nn.init.*``, ``normal_``...).

    On the meta device those draws run PyTorch's Python reference ops: about 0.1 s of a
    ResNet-152 load, for values the weights replace at once. A function mode is
    thread-local, so a model built for real in another thread keeps its init.
    """

    SKIPPED = (torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init" or func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def build(spec: ModelSpec, *, meta: bool = False) -> nn.Module:
    """``torchvision.models.<arch>(weights=None)`` sized for the spec's classes.

    ``meta``: shapes only (no memory, no init), for ``load_state_dict(assign=True)``.
    """
    if not meta:
        return torchvision.models.get_model(spec.arch.name, weights=None, num_classes=spec.num_classes)
    with torch.device("meta"), _SkipInit():
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


def assigned(spec: ModelSpec, state: dict[str, torch.Tensor]) -> nn.Module:
    """``build(spec)`` with ``state`` assigned (strict): torchvision's module, BatchNorm not yet folded."""
    model = build(spec, meta=True)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())
        raise ArchitectureMismatchError(
            f"{spec.name}: the weights in {spec.source} do not fit {spec.arch.name} with "
            f"{spec.num_classes} classes: {detail[:400]}. Check 'arch' (and 'labels') in your zoo file.") from None
    return model


def load_model(spec: ModelSpec, device: torch.device | str = "auto", *, progress: ProgressFn | None = None,
               cache_dir: str | os.PathLike | None = None, precision: str | None = None,
               batch_size: int = 1, wait: bool = True) -> LoadedModel:
    """Fetch, verify and load ``spec``; eval mode, BatchNorm folded, on ``device``.

    At ``auto`` the precision is the one measured fastest here at ``batch_size``
    (``zoo.autotune``; cached after the first time); with ``wait`` False that measuring
    goes on in a thread and the model answers in fp32 until it is done.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    candidates, why = precision_plan(precision, device)
    path = fetch_weights(spec, progress=progress, cache_dir=cache_dir)
    if progress:
        progress(None, f"Loading {spec.name} onto {device.type}")
    model = assigned(spec, read_state_dict(path, spec))
    lm = ready(spec, model, device, _DTYPES[candidates[0]])
    lm.precision_note = why
    lm.weights_file = path
    if len(candidates) > 1:
        from . import autotune

        if progress and wait:
            progress(None, f"Measuring {spec.name} at {', '.join(candidates)}")
        autotune.start(lm, candidates, batch_size, wait=wait)
    return lm


def ready(spec: ModelSpec, model: nn.Module, device: torch.device, dtype: torch.dtype | None = None) -> LoadedModel:
    """A torchvision ResNet with its weights in place, made a ``LoadedModel`` (in place).

    What every model goes through before use: out-of-place ReLUs, eval mode, BatchNorm
    folded, no parameter gradients, channels-last on ``device``. The sanity check
    (``zoo.sanity``) prepares its private, partly re-initialised copies with it too.
    """
    for m in model.modules():
        # torchvision reuses in-place ReLUs; Captum's backward hooks (Guided Grad-CAM)
        # cannot wrap an in-place op. Out-of-place gives identical outputs.
        if isinstance(m, nn.ReLU):
            m.inplace = False
    model.eval()
    with torch.no_grad():
        fold_batchnorm(model)
    model.requires_grad_(False)  # attributions need input gradients only; shared weights never get .grad
    model = model.to(device, memory_format=torch.channels_last)
    labels = spec.labels if spec.labels is not None else imagenet_labels()
    return LoadedModel(spec, model, device, labels, dtype)


class ModelCache:
    """A bounded, thread-safe LRU of loaded models.

    Two requests for the same model at once load it once: the second waits on a
    per-model lock while other models load in parallel.
    """

    def __init__(self, capacity: int | None = None, device: str = "auto",
                 cache_dir: str | os.PathLike | None = None, precision: str | None = None,
                 compile: str | None = None, compile_forbidden: str | None = None):
        self.capacity = max(1, capacity or int(os.environ.get("ZOO_MODEL_CACHE", "5")))
        self.device = resolve_device(device)
        # Resolved once, up front: a bad --precision fails at start, not at the first request.
        # At auto, ``precision`` is fp32 (what a model starts at); each model then runs what
        # zoo.autotune measured fastest here at ``batch_size`` (1, or a batch run's).
        self.precision = resolve_precision(precision, self.device)
        self.precision_asked = precision
        self.batch_size = 1
        self._tune_background = False
        # Likewise --compile (zoo.compiled): whether the trunk may be compiled here, or why not.
        # The compiler (zoo.compiling) is the one way graphs reach a model.
        self.compiler = Compiler(resolve(compile, self.device, compile_forbidden))
        self.cache_dir = cache_dir
        self._models: OrderedDict[ModelSpec, LoadedModel] = OrderedDict()
        self._loading: dict[ModelSpec, threading.Lock] = {}
        self._lock = threading.Lock()
        self.loads: dict[str, int] = {}  # name -> times loaded; for tests and the load script
        self._background = False  # compile_in_background: every model loaded is queued

    @property
    def compile_plan(self) -> Any:
        """What --compile resolved to here (``zoo.compiled.Plan``)."""
        return self.compiler.plan

    def get(self, spec: ModelSpec, progress: ProgressFn | None = None) -> LoadedModel:
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            key_lock = self._loading.setdefault(spec, threading.Lock())
        if progress:
            # Said before anything that may take a while: another request's load of this model
            # (the lock), the cache lookup, the Hub's first answer before a download.
            progress(None, f"Preparing {spec.name}: checking its weights")
        with key_lock:
            with self._lock:
                if spec in self._models:
                    return self._models[spec]
            model = load_model(spec, self.device, progress=progress, cache_dir=self.cache_dir,
                               precision=self.precision_asked, batch_size=self.batch_size,
                               wait=not self._tune_background)
            if not self.compile_plan.enabled:
                model.compile_note = self.compile_plan.note
            with self._lock:
                self._models[spec] = model
                self.loads[spec.name] = self.loads.get(spec.name, 0) + 1
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
                self._loading.pop(spec, None)
                background = self._background
        if background:
            self.compiler.submit(model)
        return model

    # --- the compiled path (zoo.compiling) ----------------------------------------------------

    def compile(self, model: LoadedModel, kinds: Sequence[str] | None = None, background: bool = False) -> bool:
        """Give ``model`` its compiled graphs of ``kinds`` (default: every kind) if the plan allows: now
        (a build runs in a child process and this waits), or with ``background``, queued for the
        compiler's worker. True if the model runs compiled when this returns."""
        if background:
            self.compiler.submit(model, kinds or KINDS)
            return model.compiled is not None
        return self.compiler.run(model, kinds or KINDS)

    def tune_in_background(self) -> None:
        """From now on, a model loaded at ``auto`` answers in fp32 while its precision is measured
        (zoo.autotune) in a thread, instead of the load waiting for it."""
        self._tune_background = True

    def precision_label(self) -> str:
        """What the loaded models run: one precision, or each model's; "auto" before any is loaded."""
        models = self.models()
        names = {m.precision_name for m in models}
        if not models:
            return _requested(self.precision_asked)[0]
        if len(names) == 1:
            return names.pop()
        return ", ".join(f"{m.spec.name} {m.precision_name}" for m in models)

    def precision_note(self) -> str:
        """Why: each loaded model's ``precision_note`` (one line when they share it)."""
        notes: dict[str, list[str]] = {}
        for m in self.models():
            notes.setdefault(m.precision_note, []).append(m.spec.name)
        if not notes:
            candidates, why = precision_plan(self.precision_asked, self.device)
            return why or f"measured per model when it loads ({' against '.join(candidates)})"
        if len(notes) == 1:
            return next(iter(notes))
        return "; ".join(f"{', '.join(names)}: {note}" for note, names in notes.items())

    def compile_in_background(self, report: Callable[[LoadedModel], None] | None = None) -> None:
        """From now on, compile every loaded model (and each one loaded later) in the background.

        The eager model answers until its compiled trunk is swapped in (``LoadedModel.run``).
        ``report`` is called with the model after each graph is done (or failed: see its
        ``compile_note``). Nothing happens where the plan rules compiling out.
        """
        if not self.compile_plan.enabled:
            return
        self.compiler.report = report
        with self._lock:
            self._background = True
            models = list(self._models.values())
        for model in models:
            self.compiler.submit(model)

    def compiling(self) -> list[str]:
        """Models waiting for or under compilation now."""
        return self.compiler.pending()

    def wait_compiled(self, timeout: float | None = None) -> bool:
        """Wait until no compile is pending; False if ``timeout`` passed first (for tests and scripts)."""
        return self.compiler.wait(timeout)

    def loaded(self) -> list[str]:
        with self._lock:
            return [s.name for s in self._models]

    def models(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._models.values())
