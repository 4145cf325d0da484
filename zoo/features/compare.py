"""Compare depths: several models on one image, maps for one shared class, and how far they agree.

The one JSON of ``python -m zoo compare --json``, the ``/compare`` endpoint and the MCP
compare tool is ``Comparison.to_json()``. With ``transfer``, the comparison also holds the
evidence-transfer matrix between its depths (``zoo.transfer``), in ``map_agreement.transfer``.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from .. import params as rules
from ..agreement import MapAgreement, map_agreement
from ..cancel import check
from ..costs import FAITHFULNESS, Estimate
from ..errors import ZooError
from ..explain import get_method
from ..faithfulness import STEPS, road_forwards
from ..faithfulness import faithfulness as score_map
from ..hub import ProgressFn
from ..inference import Classification, Prepared, classify, prepare, resolve_target
from ..registry import Preprocessing
from ..runtime import Runtime, decoded
from ..transfer import Depth, Transfer, evidence_transfer, with_transfer
from . import last
from .classify import Result, calibrate_map, map_estimate



@dataclass(frozen=True)
class Request:
    """What a comparison needs; ``create`` validates raw values (a form's, argparse's, a payload's)."""

    image: Any  # a path, bytes, a PIL image or a LoadedImage; None only for pricing
    models: tuple[str, ...]
    method: str = "cam"
    target: int | str | None = None  # None: the class most depths put first (``consensus``)
    top_k: int = 5
    faithfulness: bool = False  # also score each depth's map (about 40 forwards per depth)
    params: Mapping[str, Any] = field(default_factory=dict)  # the method's settings (zoo.explain.SETTINGS)
    transfer: bool = False  # issue 34: the evidence-transfer matrix between depths (zoo.transfer)

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, models: Sequence[str] | str | None = None,
               method: str = "cam", target: int | str | None = None, top_k: Any = 5,
               faithfulness: bool = False, params: Mapping[str, Any] | None = None,
               transfer: bool = False) -> Request:
        """Checked before any work: the models, the method, the class (against every model's classes)."""
        names = rules.model_names(rt.zoo, models)
        get_method(method)
        target = rules.targets(rt.specs(names), target)
        if transfer and len(names) < 2:
            raise ZooError("Evidence transfer compares depths pairwise: choose at least two models.")
        return cls(image, tuple(names), method, target, rules.top_k(top_k), bool(faithfulness),
                   dict(params or {}), bool(transfer))


@dataclass
class Comparison:
    """Several depths on one image, explained for one shared target class."""

    results: list[Result]
    target: int
    target_label: str
    agreement: dict[str, Any] = field(default_factory=dict)
    chosen: str = "consensus"  # how the target was picked: "consensus" (see ``consensus``) or "given"
    transfer: Transfer | None = None  # the evidence-transfer matrix, when asked for

    @functools.cached_property
    def map_agreement(self) -> MapAgreement:
        """Do the depths look at the same place? Each pair of maps, as drawn on the crop (see zoo.agreement)."""
        return map_agreement([(r.run.model, r.explanation.raw, int(r.run.input.shape[-1])) for r in self.results])

    def to_json(self) -> dict[str, Any]:
        return {"target": {"index": self.target, "label": self.target_label, "chosen": self.chosen},
                "agreement": self.agreement,
                "map_agreement": {**self.map_agreement.to_json(),
                                  "transfer": None if self.transfer is None else self.transfer.to_json()},
                "models": [r.to_json() for r in self.results]}


# --- the feature ---------------------------------------------------------------------------

def estimate(rt: Runtime, req: Request) -> Estimate:
    """Per depth: its classification, the map's passes and, with ``faithfulness``, the scores';
    with ``transfer``, the transfer matrix's scorings (``zoo.transfer.with_transfer``)."""
    est = map_estimate(rt, req.models, req.method, req.params, req.faithfulness)
    if req.transfer and len(req.models) > 1:
        # With scoring on, the matrix has ROAD too and reuses each depth's own scores.
        est = with_transfer(rt, est, req.models, road=req.faithfulness, own_scored=req.faithfulness)
    return est


def run(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Iterator[Comparison]:
    """Classify with every depth, pick the class, then explain (and score) each depth's map.

    Yields the finished ``Comparison`` (the only event: the work between is reported
    through ``progress``). ``zoo.cancel.check`` runs before each depth's classification and map.
    """
    from ..explain import explain

    specs = rt.specs(req.models)
    loaded = decoded(req.image)
    runs: list[tuple[Any, Classification, float]] = []
    prepared: dict[Preprocessing, Prepared] = {}  # one resize-and-crop per distinct recipe
    for i, spec in enumerate(specs):
        check()
        if progress:
            progress(i / len(specs), f"{spec.name}: classifying ({i + 1} of {len(specs)})")
        lm = rt.cache.get(spec, progress)
        t0 = time.perf_counter()
        if spec.preprocessing not in prepared:
            prepared[spec.preprocessing] = prepare(loaded, spec.preprocessing)
        run_ = rt.costs.timed(classify(lm, loaded, req.top_k, prepared[spec.preprocessing]))
        runs.append((lm, run_, time.perf_counter() - t0))
    labels = shared_labels([r for _, r, _ in runs])
    idx = resolve_target(labels, req.target, default=consensus([r for _, r, _ in runs]))
    results = []
    for lm, run_, secs in runs:
        check()
        t0 = time.perf_counter()
        ex = explain(lm, run_, req.method, idx, **req.params)
        calibrate_map(rt, ex, lm.spec, req.params)
        scores = None
        if req.faithfulness:
            if progress:
                progress(None, f"{run_.model}: scoring its map ({2 * STEPS - 1 + road_forwards()} forwards)")
            scores = score_map(lm, run_, ex.raw, idx)
            rt.costs.calibrate(FAITHFULNESS, run_.model, scores.seconds, scores.forwards)
        results.append(Result(run_, ex, req.method, secs + time.perf_counter() - t0, scores))
    moved = _transfer(req, [lm for lm, _, _ in runs], results, idx, progress)
    if progress:
        progress(1.0, "done")
    yield Comparison(results, idx, labels[idx], agreement(results),
                     "consensus" if req.target is None else "given", moved)


def _transfer(req: Request, models: Sequence[Any], results: Sequence[Result], target: int,
              progress: ProgressFn | None) -> Transfer | None:
    """The evidence-transfer matrix from the models and maps the comparison holds (None unless asked).

    With ``faithfulness``, ROAD too, and each depth's own scores are reused rather than recomputed."""
    if not req.transfer:
        return None
    depths = [Depth(r.run.model, lm, r.run, r.explanation.raw) for lm, r in zip(models, results)]
    own = [r.faithfulness for r in results] if req.faithfulness else None
    return evidence_transfer(depths, target, road=req.faithfulness, own=own, progress=progress)


def result(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Comparison:
    return last(run(rt, req, progress))


# --- what the depths agree on --------------------------------------------------------------

def shared_labels(runs: Sequence[Classification]) -> tuple[str, ...]:
    """The one label set of ``runs``; a ``ZooError`` when the models predict different classes."""
    labels = runs[0].labels
    if any(r.labels != labels for r in runs):
        raise ZooError(f"Models {', '.join(r.model for r in runs)} do not share one label set; compare models "
                       "that predict the same classes.")
    return labels


def consensus(runs: Sequence[Classification]) -> int:
    """The class most models rank first; ties go to the higher mean probability."""
    votes = Counter(r.predictions[0].index for r in runs)
    return max(votes, key=lambda c: (votes[c], sum(float(r.probs[c]) for r in runs)))


def agreement(results: Sequence[Result]) -> dict[str, Any]:
    """How far the depths agree: on top-1, and in the overlap of their top-5 sets."""
    top1 = [r.run.predictions[0].index for r in results]
    sets = [{p.index for p in r.run.predictions[:5]} for r in results]
    common = set.intersection(*sets) if sets else set()
    votes = Counter(top1)
    majority = consensus([r.run for r in results]) if results else None  # ties broken as for the maps' class
    n = votes[majority] if results else 0
    return {
        "models": len(results),
        "top1_majority": majority,
        "top1_majority_count": n,
        "top1_unanimous": len(votes) == 1,
        "top5_common": sorted(common),
        "top1": {r.run.model: r.run.predictions[0].index for r in results},
    }
