"""Depth lab: the paper's claims about depth, measured on one image, block by block.

For each residual block (torchvision's ``layerS[j]``, numbered in order) of one model:

* ``response_std``: std over C x H x W of the block's ``bn2`` output, before ReLU and
  before the addition (He et al. 2016, section 4.2 and Fig. 7);
* ``residual_ratio``: ||F(x)|| / ||shortcut(x)||, how much the block changes the signal;
* ``grad_norm``: ||dz_c / dx_b||, the gradient of the target logit reaching the block's input;
* optionally a lesion study (Veit et al. 2016): the target's probability with the
  block's residual branch deleted, so the block outputs ReLU(shortcut(x)); and
  cumulative deletions of k random identity-shortcut blocks.

No hooks: the network is walked with plain functions over torchvision's block
submodules, which read like torchvision's own ``BasicBlock.forward`` and
``Bottleneck.forward`` (the ``bnN`` are ``nn.Identity`` after folding; they are called
anyway, so the same code runs on an unfolded model). Each module runs through its
``forward`` (see ``call``), so no hook, this model's or a process-wide one, runs inside. The statistics come from one fp32
forward pass and one backward pass. The lesions reuse that pass's block inputs: a lesion
at block b cannot change anything before b, so each lesioned variant starts at its
block, and the variants travel through the remaining blocks together, in batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from .explain import hooks_restored
from .hub import ProgressFn
from .images import LoadedImage, load_image, model_crop, to_tensor
from .inference import Prediction, resolve_target
from .models import LoadedModel, block_forward, call, residual_branch, shortcut, stem  # noqa: F401

STAGES = ("layer1", "layer2", "layer3", "layer4")
MAX_BATCH = 32  # lesioned variants travelling together; bounds memory (~32 activations of one image)
DELETION_DRAWS = 5  # random draws per k in the cumulative-deletion curve
DELETION_SEED = 0


# --- the network, walked without hooks ---------------------------------------------------

@dataclass(frozen=True)
class BlockRef:
    """One residual block of a torchvision ResNet, in network order."""

    name: str  # "layer3.12"
    stage: int  # 1..4
    index: int  # 0-based position among all blocks
    downsample: bool  # has a projection shortcut (1x1 conv + BN)
    module: nn.Module = field(repr=False, compare=False)


def blocks(module: nn.Module) -> list[BlockRef]:
    """Every ``layerS[j]`` of a torchvision ResNet in order (works on meta-device models too)."""
    refs: list[BlockRef] = []
    for s, stage in enumerate(STAGES, start=1):
        for j, block in enumerate(module.get_submodule(stage)):
            if not isinstance(block, (BasicBlock, Bottleneck)):
                raise TypeError(f"{stage}.{j} is a {type(block).__name__}, not a torchvision ResNet block")
            refs.append(BlockRef(f"{stage}.{j}", s, len(refs), block.downsample is not None, block))
    return refs


def head(m: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Global average pooling and ``fc`` in fp32, as ``LoadedModel.head``."""
    return call(m.fc, features.float().mean(dim=(2, 3)))


# --- results --------------------------------------------------------------------------

@dataclass(frozen=True)
class Lesion:
    """The network's answer with one block's residual branch deleted."""

    prob: float  # p(target)
    logit: float  # z_target
    top1: Prediction

    def to_json(self) -> dict[str, Any]:
        return {"prob": self.prob, "logit": self.logit, "top1": {"index": self.top1.index, "label": self.top1.label}}


@dataclass(frozen=True)
class BlockStats:
    name: str
    stage: int
    index: int
    downsample: bool
    response_std: float
    residual_ratio: float
    grad_norm: float
    lesion: Lesion | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "stage": self.stage, "downsample": self.downsample,
               "response_std": self.response_std, "residual_ratio": self.residual_ratio, "grad_norm": self.grad_norm}
        if self.lesion is not None:
            out["lesion"] = self.lesion.to_json()
        return out


@dataclass(frozen=True)
class Deletion:
    """k random identity-shortcut blocks deleted at once, over several draws."""

    k: int
    draws: int
    prob_mean: float  # mean p(target) over the draws
    top1_kept: float  # fraction of draws whose top-1 is the undamaged network's top-1

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "draws": self.draws, "prob_mean": self.prob_mean, "top1_kept": self.top1_kept}


@dataclass
class Analysis:
    """One model's Depth lab results for one image and one target class."""

    model: str
    target: Prediction  # from the fp32 pass
    top1: Prediction  # the model's own top-1, from the same pass
    blocks: list[BlockStats]
    deletions: list[Deletion] | None = None
    precision: str = "fp32"  # of the lesion and deletion passes; statistics and gradients are always fp32
    baseline_prob: float | None = None  # p(target) of the undamaged network at ``precision``
    device: str = "cpu"
    seconds: float = 0.0
    # zoo.relevance.RelevanceFlow of the same model and class (issue 34), its blocks in this order
    relevance: Any = None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "target": {"index": self.target.index, "label": self.target.label, "prob": self.target.prob},
            "precision": self.precision,
            "blocks": [b.to_json() for b in self.blocks],
        }
        if self.relevance is not None:  # each block gains {shortcut, branch, share_branch}; the pass's own figures
            for out_block, flow in zip(out["blocks"], self.relevance.blocks):
                out_block["relevance"] = flow.to_json()
            out["relevance"] = {k: v for k, v in self.relevance.to_json().items() if k not in ("blocks", "model")}
        if self.deletions is not None:
            out["deletions"] = [d.to_json() for d in self.deletions]
        return out


# --- the measurements ----------------------------------------------------------------

@dataclass
class _Signal:
    logits: torch.Tensor  # (num_classes,) fp32
    target: int
    inputs: list[torch.Tensor]  # each block's input x_b, detached, fp32
    response_std: list[float]
    residual_ratio: list[float]
    grad_norm: list[float]


def signal_pass(lm: LoadedModel, x: torch.Tensor, target: int | str | None = None) -> _Signal:
    """One fp32 forward pass through every block and one backward from the target logit.

    Call inside ``lm.lock`` and ``hooks_restored`` (``analyze`` does). ``x`` is a prepared
    (1, 3, H, W) input on the model's device.
    """
    m, refs = lm.module, blocks(lm.module)
    stds, ratios = [], []
    with torch.enable_grad():
        # The weights do not need gradients; marking the stem's output puts every block
        # input in the graph, so one backward reaches them all.
        h = stem(m, x.float()).requires_grad_(True)
        inputs = []
        for ref in refs:
            inputs.append(h)
            f, response = residual_branch(ref.module, h)
            s = shortcut(ref.module, h)
            with torch.no_grad():
                stds.append(float(response.float().std(correction=0)))
                ratios.append(float(torch.linalg.vector_norm(f) / torch.linalg.vector_norm(s)))
            h = call(ref.module.relu, f + s)
        logits = head(m, h)[0]
        c = resolve_target(lm.labels, target, default=int(logits.argmax()))
        grads = torch.autograd.grad(logits[c], inputs)
    return _Signal(logits.detach(), c, [t.detach() for t in inputs], stds, ratios,
                   [float(torch.linalg.vector_norm(g)) for g in grads])


def clean_inputs(lm: LoadedModel, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits, each block's input) of the undamaged network at the model's precision."""
    m, refs = lm.module, blocks(lm.module)
    with torch.inference_mode(), lm.autocast():
        h = stem(m, x)
        inputs = []
        for ref in refs:
            inputs.append(h)
            h = block_forward(ref.module, h)
    with torch.inference_mode():
        return head(m, h)[0], inputs


def _rows(h: torch.Tensor, idx: list[int]) -> torch.Tensor:
    """Rows ``idx`` of a batch: a view when they are consecutive, else a channels-last copy."""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return h[idx[0]: idx[0] + len(idx)]
    picked = h.index_select(0, torch.tensor(idx, device=h.device))
    return picked.contiguous(memory_format=torch.channels_last)


def _step(block: nn.Module, j: int, h: torch.Tensor, ids: list[int],
          sets: list[frozenset[int]]) -> tuple[torch.Tensor, list[int]]:
    """Block ``j`` on a batch of variants: those that delete ``j`` skip its residual branch."""
    cut = [i for i, v in enumerate(ids) if j in sets[v]]
    if not cut:
        return block_forward(block, h), ids
    keep = [i for i, v in enumerate(ids) if j not in sets[v]]
    if not keep:
        return block_forward(block, h, lesioned=True), ids
    out = torch.cat([block_forward(block, _rows(h, keep)), block_forward(block, _rows(h, cut), lesioned=True)])
    return out.contiguous(memory_format=torch.channels_last), [ids[i] for i in keep] + [ids[i] for i in cut]


def lesioned_logits(lm: LoadedModel, inputs: list[torch.Tensor], sets: list[frozenset[int]],
                    progress: Callable[[float, str], None] | None = None, max_batch: int = MAX_BATCH) -> torch.Tensor:
    """(len(sets), num_classes) fp32 logits, variant v with the blocks in ``sets[v]`` deleted.

    ``inputs`` are the undamaged network's block inputs (``clean_inputs``). Nothing before
    a variant's first deleted block can change, so it starts there from the stored input;
    variants are sorted by that block and travel in batches of at most ``max_batch``: at
    block j the batch holds every variant that started earlier plus those starting at j.
    Runs at the model's precision; the head in fp32.
    """
    if any(not s for s in sets):
        raise ValueError("every variant must delete at least one block")
    refs = blocks(lm.module)
    n = len(refs)
    order = sorted(range(len(sets)), key=lambda v: min(sets[v]))
    total = sum(n - min(s) for s in sets)
    done = 0
    out: list[torch.Tensor | None] = [None] * len(sets)
    with torch.inference_mode():
        for c0 in range(0, len(order), max_batch):
            chunk = order[c0: c0 + max_batch]
            h, ids = None, []
            with lm.autocast():
                for j in range(min(sets[chunk[0]]), n):
                    joining = [v for v in chunk if min(sets[v]) == j]
                    if joining:
                        fresh = inputs[j].expand(len(joining), *inputs[j].shape[1:])
                        h = fresh if h is None else torch.cat([h, fresh])
                        h = h.contiguous(memory_format=torch.channels_last)
                        ids += joining
                    h, ids = _step(refs[j].module, j, h, ids, sets)
                    done += len(ids)
                    if progress:
                        progress(done / total, f"block {j + 1} of {n}")
            logits = head(lm.module, h)
            for i, v in enumerate(ids):
                out[v] = logits[i]
    return torch.stack(out)  # type: ignore[arg-type]


def deletion_sets(refs: list[BlockRef], draws: int = DELETION_DRAWS,
                  seed: int = DELETION_SEED) -> list[tuple[int, list[frozenset[int]]]]:
    """[(k, [set of deleted block indices per draw])] for k = 1, 2, 4, ... and all identity blocks.

    Only identity-shortcut blocks are drawn (deleting a projection changes the signal's
    shape on purpose). Seeded: the same model gives the same draws every time.
    """
    pool = [r.index for r in refs if not r.downsample]
    if not pool:
        return []
    rng = np.random.default_rng(seed)
    ks, k = [], 1
    while k < len(pool):
        ks.append(k)
        k *= 2
    ks.append(len(pool))
    out = []
    for k in ks:
        n = 1 if k == len(pool) else draws  # deleting all of them has one draw only
        out.append((k, [frozenset(int(i) for i in rng.choice(pool, size=k, replace=False)) for _ in range(n)]))
    return out


def prepare(lm: LoadedModel, image: Any) -> torch.Tensor:
    """The model's crop of ``image`` as a normalised input on its device."""
    loaded = image if isinstance(image, LoadedImage) else load_image(image)
    pre = lm.spec.preprocessing
    return lm.to_input(to_tensor(model_crop(loaded.image, pre), pre))


def analyze(lm: LoadedModel, image: Any, target: int | str | None = None, *, lesion: bool = False,
            deletions: bool = False, progress: ProgressFn | None = None) -> Analysis:
    """Every block's statistics for ``image`` and ``target`` (default: the model's top-1).

    ``lesion``: delete each block in turn; ``deletions``: delete k random identity-shortcut
    blocks at once. Runs under the model's lock with hooks restored, so no other request
    (Captum's hooks included) meets this one half-way; the model itself is never changed.
    """
    t0 = time.perf_counter()
    name = lm.spec.name

    def say(fraction: float, message: str) -> None:
        if progress:
            progress(fraction, f"{name}: {message}")

    x = prepare(lm, image)
    refs = blocks(lm.module)
    singles = [frozenset({r.index}) for r in refs] if lesion else []
    drawn = deletion_sets(refs) if deletions else []
    sets = singles + [s for _, draw in drawn for s in draw]
    with lm.lock, hooks_restored(lm.module):
        say(0.0, f"signal analysis, {len(refs)} blocks (one forward and one backward pass)")
        sig = signal_pass(lm, x, target)
        if lesion or deletions:
            if lm.precision is None:  # fp32: the signal pass's block inputs are the ones needed
                base, inputs = sig.logits, sig.inputs
            else:
                base, inputs = clean_inputs(lm, x)
        if sets:
            phase = "lesion study, " if lesion else "deletions, "
            cut = lesioned_logits(lm, inputs, sets, lambda f, msg: say(f, phase + msg)).float()
    c, labels = sig.target, lm.labels

    def pred(logits: torch.Tensor, index: int) -> Prediction:
        return Prediction(index, labels[index], float(torch.softmax(logits.float(), 0)[index]))

    lesions: list[Lesion | None] = [None] * len(refs)
    for i in range(len(singles)):
        lesions[i] = Lesion(pred(cut[i], c).prob, float(cut[i, c]), pred(cut[i], int(cut[i].argmax())))
    stats = [BlockStats(r.name, r.stage, r.index, r.downsample, sig.response_std[i], sig.residual_ratio[i],
                        sig.grad_norm[i], lesions[i]) for i, r in enumerate(refs)]
    baseline = pred(base, c).prob if lesion or deletions else None
    dels = None
    if deletions:
        dels = [Deletion(0, 1, baseline, 1.0)]
        row, top = len(singles), int(base.argmax())
        for k, draw in drawn:
            z = cut[row: row + len(draw)]
            row += len(draw)
            dels.append(Deletion(k, len(draw), float(torch.softmax(z, 1)[:, c].mean()),
                                 float((z.argmax(1) == top).float().mean())))
    say(1.0, "done")
    return Analysis(model=name, target=pred(sig.logits, c), top1=pred(sig.logits, int(sig.logits.argmax())),
                    blocks=stats, deletions=dels, precision=lm.precision_name, baseline_prob=baseline,
                    device=str(lm.device), seconds=time.perf_counter() - t0)


def relative_depths(analysis: Analysis) -> list[float]:
    """Block position / number of blocks, so depths of different length share one axis."""
    n = analysis.num_blocks
    return [(b.index + 1) / n for b in analysis.blocks]
