"""Where relevance flows in each residual block: into the shortcut, or into the residual branch.

Zennit's ``ResNetCanonizer`` computes each block's output as ReLU(Sum(stack(shortcut(x), F(x))))
with a ``Sum`` module, and LRP's Norm rule at that ``Sum`` splits the relevance arriving at the
block's output between the two summands in proportion to what each contributed, position by
position: R_shortcut = s / (s + f) * R, R_branch = f / (s + f) * R (s, f: the two summands at one
position and channel). Summed over the block's positions and channels, these are ``shortcut`` and
``branch``; ``share_branch`` = branch / (shortcut + branch).

It is read at the ``Sum``'s input in one LRP pass (``zoo.lrp.propagate``, on a private copy of the
model), for one class and one composite. What the share is not: a causal measure (that is the
Depth lab's lesion study), nor rule-free: another rule at the ``Sum`` would split differently, and
where the two summands have opposite signs their relevances do too, so the share can leave 0..1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import lrp, params
from .analysis import blocks, prepare
from .hub import ProgressFn
from .inference import Prediction, resolve_target
from .models import LoadedModel


@dataclass(frozen=True)
class BlockRelevance:
    """The relevance at the two inputs of one block's ``Sum``, summed over positions and channels."""

    name: str  # "layer3.12"
    stage: int
    downsample: bool  # the shortcut is a projection (1x1 conv + BN), not the identity
    shortcut: float
    branch: float

    @property
    def share_branch(self) -> float | None:
        """branch / (shortcut + branch); None when nothing arrived at the block."""
        total = self.shortcut + self.branch
        return self.branch / total if total else None

    def to_json(self) -> dict[str, Any]:
        return {"shortcut": self.shortcut, "branch": self.branch, "share_branch": self.share_branch}


@dataclass(frozen=True)
class RelevanceFlow:
    """Every block's split, in network order, for one model, class and composite."""

    model: str
    composite: str
    target: Prediction  # from the LRP pass's own fp32 logits
    logit: float  # where the relevance started
    input_relevance: float  # what reached the pixels
    blocks: list[BlockRelevance]
    seconds: float = 0.0

    @property
    def conservation(self) -> float:
        return self.input_relevance / self.logit if self.logit else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "composite": self.composite,
                "target": {"index": self.target.index, "label": self.target.label, "prob": self.target.prob},
                "logit": self.logit, "input_relevance": self.input_relevance, "conservation": self.conservation,
                "blocks": [{"name": b.name, **b.to_json()} for b in self.blocks]}


class _Taps:
    """Hooks that read the relevance arriving at each block's ``Sum`` input on the way back."""

    def __init__(self, module: nn.Module):
        self.refs = blocks(module)  # before the canonizer: the same block objects it changes
        self.totals: dict[int, tuple[float, float]] = {}

    def __call__(self, module: nn.Module) -> None:
        for ref in self.refs:
            # First in line, before Zennit's own pre-hook wraps the input: this tensor's gradient
            # is what the Norm rule hands down, (..., 2): [..., 0] the shortcut, [..., 1] F(x).
            ref.module.canonizer_sum.register_forward_pre_hook(self._reader(ref.index), prepend=True)

    def _reader(self, index: int) -> Any:
        def store(grad: torch.Tensor) -> None:
            g = grad.detach().double()
            self.totals[index] = (float(g[..., 0].sum()), float(g[..., 1].sum()))

        def pre(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if args[0].requires_grad:
                args[0].register_hook(store)
        return pre


def forwards(composite: str | None = None) -> float:
    """What one ``relevance_flow`` costs, in batch-1 forwards of its model: one LRP map's (``zoo.lrp``)."""
    name = params.composite(composite, lrp.CompositeError)
    return lrp.FORWARDS[name] * lrp.PASS_COST[name]


def relevance_flow(lm: LoadedModel, image: Any, target: int | str | None = None,
                   composite: str | None = None, progress: ProgressFn | None = None) -> RelevanceFlow:
    """Each residual block's relevance into its shortcut and its residual branch (see the module).

    ``image``: anything ``zoo.analysis.prepare`` takes, or a prepared (1, 3, H, W) tensor.
    ``target``: an index or a class name (default: the top-1); ``composite``: one of
    ``zoo.params.LRP_COMPOSITES`` (default the first). One forward and one LRP backward, in
    fp32, on a private copy of the model; cancellable between blocks (``zoo.cancel``).
    """
    t0 = time.perf_counter()
    name = params.composite(composite, lrp.CompositeError)
    idx = None if target is None else resolve_target(lm.labels, target, default=0)
    x = lm.to_input(image) if isinstance(image, torch.Tensor) else prepare(lm, image)
    module = lrp.private_copy(lm)
    taps = _Taps(module)
    if progress:
        progress(None, f"{lm.spec.name}: relevance through {len(taps.refs)} blocks ({name})")
    rel = lrp.propagate(module, x, idx, name, lm.spec.preprocessing, taps=taps)
    rows = [BlockRelevance(r.name, r.stage, r.downsample, *taps.totals.get(r.index, (float("nan"),) * 2))
            for r in taps.refs]
    return RelevanceFlow(lm.spec.name, name, Prediction(rel.target, lm.labels[rel.target], rel.prob), rel.seed,
                         rel.total, rows, time.perf_counter() - t0)
