"""Depth lab: per-block statistics (and lesions) of each depth on one image (engine: zoo.analysis).

The feature's result is one depth's ``zoo.analysis.Analysis``: ``run`` yields one per model as
it finishes (a front end shows each depth as it comes, and a Stop lands in between). Its
``to_json()`` is the one JSON of ``python -m zoo analyze --json``, the ``/analyze`` endpoint
and the MCP analyze tool (each asks for one model). With ``relevance``, each model's analysis
also carries its ``zoo.relevance.RelevanceFlow`` (one LRP pass, for the analysis's own class):
each block's JSON gains ``relevance{shortcut, branch, share_branch}``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

from .. import params as rules
from ..analysis import Analysis
from ..cancel import check
from ..costs import Estimate
from ..hub import ProgressFn
from ..runtime import Runtime, decoded, share
from . import last


@dataclass(frozen=True)
class Request:
    """What a Depth lab run needs; ``create`` validates raw values (a form's, argparse's, a payload's)."""

    image: Any  # a path, bytes, a PIL image or a LoadedImage; None only for pricing
    models: tuple[str, ...]
    target: int | str | None = None  # None: each model's top-1
    lesion: bool = False  # delete each block's residual branch in turn (Veit et al. 2016)
    deletions: bool = False  # delete k random identity-shortcut blocks at once
    relevance: bool = False  # issue 34: where relevance flows in each block (zoo.relevance), one LRP pass
    composite: str = rules.LRP_COMPOSITES[0]  # the LRP composite of the relevance flow

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, models: Sequence[str] | str | None = None,
               target: int | str | None = None, lesion: bool = False, deletions: bool = False,
               relevance: bool = False, composite: str | None = None) -> Request:
        """Checked before any work: the models, the class against each model's classes (a typo
        fails now, not after minutes of work) and the composite."""
        from ..lrp import CompositeError

        names = rules.model_names(rt.zoo, models)
        target = rules.targets(rt.specs(names), target)
        return cls(image, tuple(names), target, bool(lesion), bool(deletions), bool(relevance),
                   rules.composite(composite, CompositeError))


@functools.lru_cache(maxsize=None)
def _analysis_passes(arch: str, lesion: bool, deletions: bool | None = None) -> float:
    """Forward-pass equivalents of ``zoo.analysis.analyze`` on one model of ``arch`` (see ``estimate``).

    ``deletions`` None: as ``lesion`` (the app runs both together).
    """
    import torch
    import torchvision

    from ..analysis import blocks, deletion_sets

    deletions = lesion if deletions is None else deletions
    with torch.device("meta"):  # the block layout only: no weights, no memory
        refs = blocks(torchvision.models.get_model(arch, weights=None))
    n = len(refs)
    passes = 3.0  # one forward and one backward (about two forwards)
    if lesion or deletions:
        sets = [frozenset({r.index}) for r in refs] if lesion else []
        sets += [s for _, draw in deletion_sets(refs) for s in draw] if deletions else []
        passes += 1 + sum(n - min(s) for s in sets) / n
    return passes


def estimate(rt: Runtime, req: Request) -> Estimate:
    """The cost of ``run``, before running it.

    Per model: the signal pass (one forward and one backward, three forwards' worth); with
    lesions or deletions, one more clean forward and every lesioned variant from its first
    deleted block on, in forwards' worth (block counts over the number of blocks).
    With ``relevance``, one LRP map's forwards more (``zoo.relevance.forwards``).
    Statistics run in fp32, so on a machine whose classification runs in bf16 the seconds
    are a low estimate.
    """
    from ..relevance import forwards

    extra = forwards(req.composite) if req.relevance else 0.0
    return rt.costs.priced({spec.name: _analysis_passes(spec.arch.name, req.lesion, req.deletions) + extra
                            for spec in rt.specs(req.models)})


def run(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Iterator[Analysis]:
    """Each model's ``Analysis`` in turn; ``zoo.cancel.check`` runs between models (and inside each).

    With ``relevance``, the flow is computed after the model's analysis, for the class the
    analysis resolved (so both read the same class), and attached to it.
    """
    from ..analysis import analyze
    from ..relevance import relevance_flow

    specs = rt.specs(req.models)
    loaded = decoded(req.image)  # decoded once for every depth
    for i, spec in enumerate(specs):
        check()
        lm = rt.cache.get(spec, progress)
        part = share(progress, i, len(specs))
        a = analyze(lm, loaded, req.target, lesion=req.lesion, deletions=req.deletions, progress=part)
        if req.relevance:
            check()
            a = replace(a, relevance=relevance_flow(lm, loaded, a.target.index, req.composite, part))
        yield a


def result(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Analysis:
    """The last model's ``Analysis`` (a request for one model: its analysis)."""
    return last(run(rt, req, progress))
