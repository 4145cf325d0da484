"""Does a map depend on the weights it claims to explain? The sanity check of Adebayo et al. 2018.

Cascading model-parameter randomization ("Sanity Checks for Saliency Maps", NeurIPS 2018,
https://arxiv.org/abs/1810.03292): starting from the top, re-initialise ``fc``, then
``layer4``, ``layer3``, ``layer2``, ``layer1``, then the stem (``conv1`` and ``bn1``), one step
at a time and cumulatively (granularity ``stage``), or every residual block from the last
to the first (``block``), or only each block's residual branch, from the last block to the
first, with the stem, every shortcut (identity or downsampling projection) and ``fc`` kept
(``residual-branches``: does the map follow the branches' weights, or what the identity
paths carry from the input?). After each step the map is computed again, for the same class
index, and compared with the original map: Spearman rank correlation of the absolute maps
and of the signed maps, and SSIM, on the maps as drawn on the model's crop (upsampled to
the crop bilinearly, ``zoo.render.heat_on_crop``).

A map that reflects the network loses most of its similarity once ``fc`` and ``layer4`` are
random; one that keeps it shows something the weights do not decide. ``edges``, a Sobel
edge detector that never reads the network, keeps a similarity of 1 at every step.

Everything runs on a private copy of the weights, read again from the verified safetensors
file: the shared cached model, and any request using it, is never touched. Each step's
copy is prepared exactly as ``load_model`` prepares a model (``zoo.models.ready``: BatchNorm
folded, channels-last), in fp32, so every method runs on it unchanged.

Re-initialisation follows torchvision's ``ResNet.__init__``: convolutions
``kaiming_normal_(mode="fan_out", nonlinearity="relu")``; BatchNorm weight 1, bias 0 and
its running statistics reset (mean 0, variance 1), since a stage's BatchNorms belong to it;
``fc`` as ``nn.Linear`` initialises itself (Kaiming-uniform weight, uniform bias). Each
module draws from its own generator, seeded from the run's seed and the module's name, so a
run reproduces and a module gets the same weights at any granularity. Beside the cascade: smooth
and efficient MPRT (Hedström et al. 2023), original against the last step's model (``zoo.mprt``).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import mprt
from .cancel import check
from .errors import ZooError
from .explain import METHODS, STAGES, explain, get_method, layer_param, model_params
from .hub import ProgressFn
from .images import LoadedImage
from .inference import Classification, Prediction, classify, prepare, resolve_target
from .models import ready
from .params import seed as seed_rule
from .private import private_copy
from .registry import ModelSpec
from .render import heat_on_crop

SEED = 0
GRANULARITIES = ("stage", "block", "residual-branches")
# The step after which a method passes or fails: fc and all of layer4 random (stage, block), or
# every residual branch random (residual-branches: the first block is the last step).
VERDICT_STEP = {"stage": "layer4", "block": "layer4.0", "residual-branches": "layer1.0"}
# What the check runs when no methods are named: the four methods and the control.
DEFAULT_METHODS = ("cam", "gradcam", "guided-gradcam", "integrated-gradients", "edges")
# A method passes when, once fc and layer4 are random, its map keeps less than this of its
# similarity with the original, by rank (|Spearman|) and by structure (SSIM) alike. Why
# 0.5: README, "Can I trust this map?".
PASS_BELOW = 0.5
STEM = ("conv1", "bn1")


class SanityError(ZooError):
    """Settings the sanity check cannot run with."""


# --- the steps ------------------------------------------------------------------------------

def plan(module: nn.Module, granularity: str = "stage") -> list[tuple[str, tuple[str, ...]]]:
    """The randomization steps, top down: (name, modules it re-initialises), after the original.

    ``stage``: fc, layer4, layer3, layer2, layer1, stem. ``block``: fc, then each residual
    block from the last (``layer4.2``) to the first (``layer1.0``), then the stem.
    ``residual-branches``: each block from the last to the first, named by the block, but only
    its residual branch (convolutions and BatchNorms, not ``downsample``); nothing else.
    """
    if granularity not in GRANULARITIES:
        raise SanityError(f"Unknown granularity {granularity!r}; choose 'stage' (fc, each stage, the stem: "
                          "6 steps), 'block' (fc, every residual block, the stem) or 'residual-branches' (each "
                          "block's residual branch, top down; stem, shortcuts and fc kept).")
    if granularity == "residual-branches":
        return [(f"{stage}.{j}", branch(module.get_submodule(f"{stage}.{j}"), f"{stage}.{j}"))
                for stage in reversed(STAGES) for j in reversed(range(len(module.get_submodule(stage))))]
    steps: list[tuple[str, tuple[str, ...]]] = [("fc", ("fc",))]
    for stage in reversed(STAGES):
        if granularity == "stage":
            steps.append((stage, (stage,)))
        else:
            n = len(module.get_submodule(stage))
            steps += [(f"{stage}.{j}", (f"{stage}.{j}",)) for j in reversed(range(n))]
    steps.append(("stem", STEM))
    return steps


def branch(block: nn.Module, name: str) -> tuple[str, ...]:
    """A residual block's branch: its modules with weights (conv1, bn1, ...), not the ``downsample``
    projection, which lies on the shortcut."""
    return tuple(f"{name}.{child}" for child, m in block.named_children()
                 if child != "downsample" and any(True for _ in m.parameters()))


def verdict_step(granularity: str = "stage") -> str:
    """The step where a method passes or fails: fc and all of layer4 random, or every branch random."""
    return VERDICT_STEP.get(granularity, "layer4")


def step_count(spec: ModelSpec, granularity: str = "stage") -> int:
    """Maps per method: the original and one per step (7 at ``stage``)."""
    if granularity not in GRANULARITIES:
        plan(nn.Module(), granularity)  # raises the message
    if granularity == "stage":
        return 1 + 1 + len(STAGES) + 1
    if granularity == "residual-branches":
        return 1 + sum(spec.arch.blocks_per_stage)
    return 1 + 1 + sum(spec.arch.blocks_per_stage) + 1


def _module_seed(seed: int, name: str) -> int:
    # crc32, not hash(): Python salts str hashes per process, and a run must reproduce.
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 63)


@torch.no_grad()
def reinitialize(module: nn.Module, prefix: str, seed: int) -> int:
    """Re-initialise ``module`` (named ``prefix`` in the model) and everything in it, in place,
    with torchvision's ResNet init rules; returns how many modules were reset."""
    n = 0
    for name, m in module.named_modules(prefix=prefix):
        g = torch.Generator().manual_seed(_module_seed(seed, name))
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
            if m.bias is not None:  # torchvision's convs have none; a fold would have added one
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            # nn.Linear.reset_parameters, with our generator
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
            if m.bias is not None:
                bound = 1 / math.sqrt(m.weight.shape[1]) if m.weight.shape[1] > 0 else 0
                nn.init.uniform_(m.bias, -bound, bound, generator=g)
        else:
            continue
        n += 1
    return n


# --- similarity -------------------------------------------------------------------------------

def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation of two maps (ties get their mean rank); None when a map is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None  # undefined: a constant map has no ranking to compare
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = float(spearmanr(a, b).statistic)
    return r if math.isfinite(r) else None


def unit_abs(m: np.ndarray) -> np.ndarray:
    """|map| scaled to [0, 1] by its largest value (an all-zero map stays zero): what SSIM compares."""
    a = np.abs(np.nan_to_num(np.asarray(m, np.float64)))
    peak = a.max() if a.size else 0.0
    return a / peak if peak > 0 else a


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (scikit-image's defaults: 7x7 uniform window) of the two maps' ``unit_abs``, data range 1."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(unit_abs(a), unit_abs(b), data_range=1.0))


# --- results ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One method's map after one randomization step, compared with the original map."""

    randomized: str  # "none" (the original), "fc", "layer4", ... or "layer4.2", ..., "stem"
    spearman_abs: float | None  # rank correlation of |map| with |original|; None if a map is constant
    spearman: float | None  # of the signed maps
    ssim: float

    def to_json(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 6)  # noqa: E731
        return {"randomized": self.randomized, "spearman_abs": r(self.spearman_abs), "spearman": r(self.spearman),
                "ssim": r(self.ssim)}


@dataclass
class MethodCheck:
    """One method through every randomization step."""

    method: str
    layer: str | None
    steps: list[Step] = field(default_factory=list)
    heats: list[np.ndarray] = field(default_factory=list, repr=False)  # each step's map on the crop (similarity input)
    raws: list[np.ndarray] = field(default_factory=list, repr=False)  # each step's map as the method produced it
    notes: list[str] = field(default_factory=list)
    verdict_at: str = "layer4"
    granularity: str = "stage"
    mprt: mprt.Mprt | None = None  # sMPRT and eMPRT, once the last step ran

    @property
    def verdict(self) -> Step | None:
        """The step after which fc and layer4 are random (None until it has run)."""
        return next((s for s in self.steps if s.randomized == self.verdict_at), None)

    @property
    def passes(self) -> bool | None:
        """True when the map lost most of its similarity once fc and layer4 are random; None
        until that step ran, or when the original map is flat (nothing to compare)."""
        v = self.verdict
        if v is None or self.flat_original:
            return None
        rank = abs(v.spearman_abs) if v.spearman_abs is not None else 0.0  # a constant map kept no ranking
        return rank < PASS_BELOW and v.ssim < PASS_BELOW

    @property
    def flat_original(self) -> bool:
        return bool(self.heats) and float(np.ptp(self.heats[0])) == 0.0

    @property
    def still_like_original(self) -> bool | None:
        """At the verdict step (residual-branches: every branch random), does the map still look
        like the original (it fails the threshold)? None until then, or for a flat original."""
        return None if self.passes is None else not self.passes

    def readings(self) -> list[str]:
        """The shortcut question's answer (residual-branches) and sMPRT/eMPRT's, in words."""
        label = METHODS[self.method].label
        out = []
        v = self.verdict
        if self.granularity == "residual-branches" and v is not None and self.passes is not None:
            nums = f"rank correlation {abs(v.spearman_abs or 0.0):.2f} of |map|, SSIM {v.ssim:.2f}"
            out.append(f"With every residual branch random (stem, shortcuts and fc kept), {label}'s map "
                       + (f"still looks like the original ({nums}): it follows what the identity paths carry "
                          "from the input more than the branches' learned weights." if self.still_like_original
                          else f"no longer looks like the original ({nums}): it follows the residual branches' "
                               "learned weights, not just what the identity paths carry."))
        if self.mprt is not None:
            out += self.mprt.readings(label, PASS_BELOW)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "layer": self.layer, "passes": self.passes,
                "still_like_original": self.still_like_original,
                "steps": [s.to_json() for s in self.steps], "notes": self.notes,
                "mprt": None if self.mprt is None else self.mprt.to_json(), "readings": self.readings()}


@dataclass
class SanityReport:
    """The check of several methods on one model and image, for one class."""

    model: str
    target: Prediction
    seed: int
    granularity: str
    methods: list[MethodCheck]
    run: Classification  # the original model's classification (its crop is what the maps cover)
    planned: list[str]  # every step's name, "none" first
    device: str = "cpu"
    seconds: float = 0.0
    smooth_samples: int = 0  # N of sMPRT (0: not computed)

    @property
    def done(self) -> bool:
        return all(len(m.steps) == len(self.planned) for m in self.methods)

    def to_json(self) -> dict[str, Any]:
        t = self.target
        return {"model": self.model, "target": {"index": t.index, "label": t.label, "prob": t.prob},
                "seed": self.seed, "granularity": self.granularity, "threshold": PASS_BELOW,
                "verdict_step": verdict_step(self.granularity), "steps": self.planned, "device": self.device,
                "precision": "fp32", "seconds": round(self.seconds, 3), "complete": self.done,
                "smooth_samples": self.smooth_samples, "noise": mprt.NOISE if self.smooth_samples else None,
                "methods": [m.to_json() for m in self.methods]}

    def save_maps(self, folder: str | Path) -> list[Path]:
        """Each step's map on the crop (what the similarities were computed from) as ``METHOD-STEP.npy``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for m in self.methods:
            for step, heat in zip(m.steps, m.heats):
                path = folder / f"{m.method}-{step.randomized}.npy"
                np.save(path, heat.astype(np.float32))
                paths.append(path)
        return paths


# --- the run ------------------------------------------------------------------------------------

def check_methods(methods: Sequence[str] | None) -> list[str]:
    """The methods named (in order, once each), or the defaults; unknown names fail now."""
    names = list(dict.fromkeys(methods or DEFAULT_METHODS))
    for name in names:
        get_method(name)
    return names


def per_step(spec: ModelSpec, methods: Sequence[str] | None,
             params: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """Forward-pass equivalents of one step: one classification and one map per method."""
    crop = spec.preprocessing.crop
    return 1 + sum(get_method(n).forwards(model_params(n, spec.arch, crop, (params or {}).get(n, {})), crop)
                   for n in check_methods(methods))


def mprt_passes(spec: ModelSpec, methods: Sequence[str] | None,
                params: Mapping[str, Mapping[str, Any]] | None = None, smooth_samples: int = 0) -> int:
    """What sMPRT adds to a check: N - 1 noisy copies on each of the two models, each a step's
    worth (a classification and a map per method). eMPRT adds nothing."""
    return mprt.passes(per_step(spec, methods, params), smooth_samples)


def forwards(spec: ModelSpec, methods: Sequence[str] | None, granularity: str = "stage",
             params: Mapping[str, Mapping[str, Any]] | None = None, smooth_samples: int = 0) -> int:
    """Forward-pass equivalents of a check: each step's, and sMPRT's noisy copies (``mprt_passes``)."""
    return (step_count(spec, granularity) * per_step(spec, methods, params)
            + mprt_passes(spec, methods, params, smooth_samples))


def _step_maps(report: SanityReport, model: Any, run: Classification, name: str, first: bool,
               method_params: Mapping[str, dict[str, Any]], crop: int) -> None:
    """Each method's map after one step, and its similarity with the original."""
    idx = report.target.index
    for mc in report.methods:
        check()
        ex = explain(model, run, mc.method, idx, **method_params[mc.method])
        heat = heat_on_crop(ex.raw, crop)
        if first:
            mc.notes += ex.notes
            if float(np.ptp(heat)) == 0.0:
                mc.notes.append("The original map is flat, so there is nothing for the check to compare: "
                                "no verdict.")
        original = mc.heats[0] if mc.heats else heat
        mc.raws.append(ex.raw)
        mc.heats.append(heat)
        mc.steps.append(Step(name, spearman(np.abs(original), np.abs(heat)), spearman(original, heat),
                             ssim(original, heat)))


def iter_sanity(spec: ModelSpec, image: LoadedImage, methods: Sequence[str] | None = None,
                target: int | str | None = None, granularity: str = "stage", seed: int = SEED,
                device: torch.device | str = "cpu", params: Mapping[str, Mapping[str, Any]] | None = None,
                cache_dir: Any = None, progress: ProgressFn | None = None,
                smooth_samples: int = 0) -> Iterator[SanityReport]:
    """The report after the original maps and after each randomization step (the same object, growing).

    A caller can show it grow and stop between steps; ``zoo.cancel.check`` runs before each
    step and each map. ``params``: per-method parameters (e.g. ``{"integrated-gradients":
    {"steps": 16}}``); stage methods read ``layer4`` unless a ``layer`` is given there.
    ``smooth_samples``: N of sMPRT (0: eMPRT only, which costs nothing more).
    """
    from .params import smooth_samples as samples_rule

    names = check_methods(methods)
    if isinstance(device, str):
        from .models import resolve_device

        device = resolve_device(device)
    seed = seed_rule(seed, SanityError)  # zoo.params: the one seed rule of every feature
    samples = samples_rule(smooth_samples, SanityError)
    method_params = {n: dict((params or {}).get(n, {})) for n in names}
    layers = {n: layer_param(n, method_params[n], spec.cam_layer) for n in names}  # a bad layer fails now
    for n in names:
        get_method(n).passes(method_params[n], spec.preprocessing.crop)  # parameters over the limits fail now
        if layers[n] is not None:
            method_params[n]["layer"] = layers[n]
    t0 = time.perf_counter()
    master = private_copy(spec, progress=progress, cache_dir=cache_dir)  # nothing shared with the cached model
    steps = [("none", ())] + plan(master, granularity)
    prepared = prepare(image, spec.preprocessing)
    crop = spec.preprocessing.crop
    rng = np.random.RandomState(seed)  # sMPRT's noise: the original model's copies first, then the random one's
    report: SanityReport | None = None
    smooth: dict[int, dict[str, np.ndarray]] = {}
    for k, (name, parts) in enumerate(steps):
        check()
        if progress:
            progress(k / len(steps), f"{spec.name}: {'original weights' if k == 0 else name + ' randomized'} "
                                     f"(step {k} of {len(steps) - 1})")
        for part in parts:
            reinitialize(master.get_submodule(part), part, seed)
        # A fresh folded copy per step: folding changes the module, and the next step
        # re-initialises the unfolded master.
        model = ready(spec, copy.deepcopy(master), device, None)
        run = classify(model, image, top_k=5, prepared=prepared)
        if report is None:
            idx = resolve_target(run.labels, target, default=run.predictions[0].index)
            report = SanityReport(spec.name, run.prediction(idx), seed, granularity,
                                  [MethodCheck(n, layers[n], verdict_at=verdict_step(granularity),
                                               granularity=granularity) for n in names],
                                  run, [s for s, _ in steps], str(device), smooth_samples=samples)
        _step_maps(report, model, run, name, k == 0, method_params, crop)
        if samples and k in (0, len(steps) - 1):
            if progress and samples > 1:
                progress(k / len(steps), f"{spec.name}: sMPRT, {samples - 1} noisy copies of the input")
            smooth[k] = mprt.denoised(model, run, image, method_params, report.target.index, crop,
                                      {mc.method: mc.heats[-1] for mc in report.methods}, samples, rng)
        if k == len(steps) - 1:
            for mc in report.methods:
                mc.mprt = mprt.measure(name, mc.heats[0], mc.heats[-1], spearman, samples,
                                       *(smooth[i][mc.method] if samples else None for i in (0, k)))
        report.seconds = time.perf_counter() - t0
        del model
        yield report
    if progress:
        progress(1.0, "done")


def sanity_check(spec: ModelSpec, image: LoadedImage, methods: Sequence[str] | None = None, **kwargs: Any) -> SanityReport:
    """``iter_sanity`` to the end: the finished report."""
    report = None
    for report in iter_sanity(spec, image, methods, **kwargs):
        pass
    assert report is not None
    return report
