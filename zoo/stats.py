"""What each depth costs: parameters, multiply-adds, FLOPs and latency, per model and stage.

Counts come from the architecture alone: the model is built on the meta device (no
memory, no weights, no network) and run once, its operations counted with the formulas
of ``torch.utils.flop_counter``. Results are cached per (arch, resolution, classes).
Nothing here depends on, or disturbs, what other threads run at the same time.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Callable

import torch
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .cancel import check
from .registry import ARCHITECTURES, ModelSpec

# The paper's Table 1 rows, and the torchvision modules that implement them.
STAGES = (("conv1", ("conv1", "bn1")), ("conv2_x", ("layer1",)), ("conv3_x", ("layer2",)),
          ("conv4_x", ("layer3",)), ("conv5_x", ("layer4",)), ("fc", ("fc",)))
WIDTHS = (64, 128, 256, 512)

NOTES = (
    "Multiply-adds vs FLOPs: the paper's Table 1 'FLOPs' count multiply-adds. "
    "torch.utils.flop_counter counts a multiply and an add as two FLOPs, so its FLOPs are twice the "
    "multiply-accumulates (MACs) shown beside the paper's figure.",
    "ResNet-50/101/152 measure about 4.1/7.8/11.5 G multiply-adds against the paper's 3.8/7.6/11.3: "
    "torchvision puts the stride 2 of each downsampling bottleneck in its 3x3 convolution ('ResNet v1.5') "
    "instead of the first 1x1, so that 3x3 runs at twice the resolution. It costs ~0.3 G multiply-adds "
    "and buys about half a point of top-1.",
    "The counts cover convolutions and the fc layer (as the paper and torchvision do); batch norm, ReLU, "
    "pooling and the additions of the shortcuts are a small remainder and are not counted.",
)


@dataclass(frozen=True)
class StageStats:
    stage: str
    output_size: int  # side of the square feature map (1 for fc)
    layout: str  # as in Table 1
    params: int
    macs: int
    share: float  # of the model's multiply-adds

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelStats:
    arch: str
    resolution: int
    layers: int  # weighted layers as the paper counts them (conv + fc, no projections)
    block: str
    blocks_per_stage: tuple[int, ...]
    params: int
    macs: int
    stages: tuple[StageStats, ...]

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _layout(arch: str, stage: int) -> str:
    a = ARCHITECTURES[arch]
    if stage == 0:
        return "7x7, 64, stride 2"
    w, n = WIDTHS[stage - 1], a.blocks_per_stage[stage - 1]
    block = (f"[3x3, {w}; 3x3, {w}] x {n}" if a.block == "basic"
             else f"[1x1, {w}; 3x3, {w}; 1x1, {4 * w}] x {n}")
    return ("3x3 max pool, stride 2; " if stage == 1 else "") + block


# --- counting without nn.Module.__call__ ------------------------------------------------
#
# Other threads of the app run forwards while these tables are computed, and some of what
# they do is process-wide: FlopCounterMode's module tracking registers global module
# hooks, and torch.fx tracing (torchvision's create_feature_extractor, used when a model
# loads) patches ``nn.Module.__call__`` and ``__getattr__`` for the whole process, so any
# module called in another thread meanwhile fails with "module is not installed as a
# submodule". The counting below is private to this thread: a dispatch mode (modes are
# thread-local) that sums torch.utils.flop_counter's own formulas, on a model whose modules
# call their ``forward`` directly and look up their children without the patched methods.


class _DirectCalls:
    """Mixin: calls skip ``nn.Module.__call__`` (hooks, fx patches); lookups skip ``__getattr__``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tally: _Tally | None = self.__dict__.get("_tally")
        if tally is None:
            return self.forward(*args, **kwargs)
        return tally.run_stage(self.__dict__["_stage"], self.forward, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if name in d.get(store, ()):
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


_DIRECT: dict[type, type] = {}


def _direct(model: nn.Module) -> nn.Module:
    """Give every module of ``model`` (private to the caller) a ``_DirectCalls`` class."""
    for m in model.modules():
        cls = type(m)
        if cls not in _DIRECT:
            _DIRECT.setdefault(cls, type(cls.__name__, (_DirectCalls, cls), {"__module__": cls.__module__}))
        m.__class__ = _DIRECT[cls]
    return model


class _Tally(TorchDispatchMode):
    """FLOPs by torch.utils.flop_counter's registered formulas, billed to the running stage.

    Unlike ``FlopCounterMode`` it tracks modules itself (``_DirectCalls``), with no hooks.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage = ""
        self.flops: dict[str, int] = defaultdict(int)
        self.outputs: dict[str, torch.Tensor] = {}

    def run_stage(self, stage: str, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        outer, self.stage = self.stage, stage
        try:
            out = forward(*args, **kwargs)
        finally:
            self.stage = outer
        self.outputs.setdefault(stage, out)  # the first module of a stage gives its output size
        return out

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        # FlopCounterMode also decomposes uncounted ops, looking for matrix products inside;
        # a ResNet's uncounted ops (batch norm, ReLU, pooling, additions) hold none, and
        # decomposing batch norm took two thirds of the time. Tests compare with it.
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops[self.stage] += int(formula(*args, **kwargs, out_val=out))
        return out


@lru_cache(maxsize=64)
def model_stats(arch: str, resolution: int = 224, num_classes: int = 1000) -> ModelStats:
    """Parameters and multiply-adds of ``arch`` at ``resolution``, in total and per stage.

    Safe while other threads run, load or trace models (see ``_DirectCalls``).
    """
    if not 32 <= resolution <= 2048:
        raise ValueError(f"resolution must be between 32 and 2048, got {resolution}")
    with torch.device("meta"):
        model = _direct(torchvision.models.get_model(arch, weights=None, num_classes=num_classes)).eval()
        x = torch.empty(1, 3, resolution, resolution)
    tally = _Tally()
    for name, mods in STAGES:
        for mod in mods:
            m = model.get_submodule(mod)
            object.__setattr__(m, "_stage", name)  # plain attributes, not registered state
            object.__setattr__(m, "_tally", tally)
    with tally, torch.no_grad():
        model(x)
    total_macs = sum(tally.flops.values()) // 2
    stages = []
    for i, (name, mods) in enumerate(STAGES):
        out = tally.outputs[name]
        params = sum(p.numel() for m in mods for p in model.get_submodule(m).parameters())
        macs = tally.flops[name] // 2
        layout = f"average pool, {num_classes}-d fc, softmax" if name == "fc" else _layout(arch, i)
        stages.append(StageStats(name, out.shape[-1] if out.ndim == 4 else 1, layout, params, macs, macs / total_macs))
    layers = sum(1 for n, m in model.named_modules()
                 if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and "downsample" not in n)
    a = ARCHITECTURES[arch]
    return ModelStats(arch, resolution, layers, a.block, a.blocks_per_stage,
                      sum(p.numel() for p in model.parameters()), total_macs, tuple(stages))


def stage_stats(arch: str, resolution: int = 224, num_classes: int = 1000) -> list[StageStats]:
    return list(model_stats(arch, resolution, num_classes).stages)


def torchvision_meta(arch: str) -> dict[str, Any]:
    """torchvision's own reported figures for its IMAGENET1K_V1 weights (no download)."""
    return torchvision.models.get_model_weights(arch).IMAGENET1K_V1.meta


# --- latency -------------------------------------------------------------------------

@dataclass(frozen=True)
class Latency:
    device: str
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    images_per_s: float  # at ``throughput_batch``
    throughput_batch: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_latency(arch: str, device: torch.device, resolution: int = 224, repeats: int = 10,
                    warmup: int = 3, throughput_batch: int | None = None) -> Latency:
    """Median batch-1 latency after warm-up (and images/s at a larger batch on GPU).

    The weights are random: speed depends on the architecture, not the values. The
    network is prepared as the app prepares it (BatchNorm folded, channels-last, at
    ``$ZOO_PRECISION``; at ``auto``, fp32: which precision auto runs is measured per loaded
    model, zoo.autotune, and this network at any resolution is none of them).
    """
    from .models import autocast, fold_batchnorm, resolve_precision, to_input

    torch.manual_seed(0)
    dtype = resolve_precision(None, device)
    # Direct calls, as for the counts: a model loading in another thread cannot break this.
    model = _direct(torchvision.models.get_model(arch, weights=None)).eval()
    with torch.no_grad():
        fold_batchnorm(model)
    model = model.to(device, memory_format=torch.channels_last)

    def run(batch: int, n: int) -> list[float]:
        x = to_input(torch.randn(batch, 3, resolution, resolution), device)
        times = []
        with torch.inference_mode(), autocast(device, dtype):
            for _ in range(warmup):
                check()  # a stopped request ends between timed forwards (zoo.cancel)
                model(x)
            _sync(device)
            for _ in range(n):
                check()
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
        return times

    t1 = sorted(run(1, repeats))
    q = statistics.quantiles(t1, n=10) if len(t1) >= 2 else [t1[0]] * 9
    tb = throughput_batch or (64 if device.type != "cpu" else 1)
    per_batch = statistics.median(run(tb, max(3, repeats // 2))) if tb > 1 else statistics.median(t1)
    return Latency(str(device), 1, statistics.median(t1) * 1e3, q[0] * 1e3, q[-1] * 1e3, tb / per_batch, tb)


# --- one row per model ----------------------------------------------------------------

@dataclass(frozen=True)
class ZooRow:
    name: str
    arch: str
    depth: int
    layers: int
    block: str
    blocks_per_stage: tuple[int, ...]
    resolution: int
    params: int
    macs: int
    flops: int
    paper_flops: float  # Table 1 (multiply-adds), at 224
    torchvision_gflops: float  # torchvision's reported figure (GMACs), at 224
    torchvision_params: int
    size_bytes: int | None
    top1: float | None
    top5: float | None
    latency: Latency | None = None
    published: dict[str, Any] | None = None  # published ImageNet-variant figures (zoo.published), not measured here

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks_per_stage"] = list(self.blocks_per_stage)
        return d


def zoo_row(spec: ModelSpec, resolution: int = 224, latency_device: torch.device | None = None) -> ZooRow:
    from .hub import cached_path

    s = model_stats(spec.arch.name, resolution, spec.num_classes)
    meta = torchvision_meta(spec.arch.name)
    size = spec.size_bytes
    if size is None and (path := cached_path(spec)) is not None:
        size = path.stat().st_size
    return ZooRow(
        spec.name, spec.arch.name, spec.depth, s.layers, s.block, s.blocks_per_stage, resolution, s.params,
        s.macs, s.flops, spec.arch.paper_flops, meta["_ops"], meta["num_params"], size, spec.top1, spec.top5,
        measure_latency(spec.arch.name, latency_device, resolution) if latency_device is not None else None,
        spec.published.to_json() if spec.published is not None else None,
    )


def format_table(rows: list[ZooRow], resolution: int = 224) -> str:
    head = (f"{'model':<14}{'layers':>7}{'params':>13}{'MACs (G)':>10}{'paper (G)':>10}{'FLOPs (G)':>10}"
            f"{'size (MB)':>10}{'top-1':>7}{'top-5':>7}{'latency ms':>16}")
    lines = [f"Complexity at {resolution}x{resolution} (MACs = multiply-adds, the paper's 'FLOPs')", head]
    for r in rows:
        lat = f"{r.latency.median_ms:8.1f} ({r.latency.device})" if r.latency else "-"
        acc = lambda v: f"{v:7.2f}" if v is not None else f"{'-':>7}"  # noqa: E731
        size = f"{r.size_bytes / 1e6:10.1f}" if r.size_bytes else f"{'-':>10}"
        lines.append(f"{r.name:<14}{r.layers:>7}{r.params:>13,}{r.macs / 1e9:10.2f}{r.paper_flops / 1e9:10.1f}"
                     f"{r.flops / 1e9:10.2f}{size}{acc(r.top1)}{acc(r.top5)}{lat:>16}")
    return "\n".join(lines)


def format_stage_table(name: str, rows: list[StageStats], resolution: int = 224) -> str:
    lines = [f"{name} per stage at {resolution}x{resolution}",
             f"{'stage':<9}{'output':>9}{'params':>13}{'MACs (M)':>11}{'share':>8}  layout"]
    for r in rows:
        lines.append(f"{r.stage:<9}{f'{r.output_size}x{r.output_size}':>9}{r.params:>13,}{r.macs / 1e6:11.1f}"
                     f"{r.share * 100:7.1f}%  {r.layout}")
    return "\n".join(lines)
