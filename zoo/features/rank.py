"""Method ranking: several methods' maps of one image for one class, each scored for faithfulness.

The Method ranking tab and ``/rank_methods`` build a ``Request``; ``run`` yields the ranking so
far after each method (a page shows it grow, a Stop ends it between methods).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .. import params as rules
from ..costs import Estimate
from ..errors import ZooError
from ..explain import METHODS, Explanation, explain
from ..faithfulness import STEPS, Faithfulness
from ..faithfulness import faithfulness as score_map
from ..inference import Classification, Prediction, classify
from ..runtime import Runtime, decoded
from . import last
from .classify import DEFAULT_MODEL, map_estimate

# Methods a ranking runs when none are named: those costing a few passes at most
# (Integrated Gradients, Occlusion, Score-CAM and Ablation-CAM cost tens to thousands).
RANK_DEFAULT = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "smoothgradcampp", "saliency",
                "guided-gradcam", "hirescam", "gradcam-elementwise", "eigencam", "fullgrad", "shapleycam")
RANK_KEYS = ("deletion", "insertion", "road")


def sort_key(by: str) -> str:
    """One of ``RANK_KEYS``; anything else is refused with what each means."""
    if by not in RANK_KEYS:
        raise ZooError(f"Sort by 'deletion' (lower is better), 'insertion' (higher is better) or 'road' "
                       f"(ROAD's combined score, higher is better), not {by!r}.")
    return by


@dataclass(frozen=True)
class Request:
    """What to rank. Build it with ``Request.create``, which checks every value."""

    image: Any  # None only for an estimate
    model: str
    target: int | None = None  # None: the model's top-1
    methods: tuple[str, ...] = RANK_DEFAULT  # in order, once each
    by: str = "deletion"  # the order of the result's JSON

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, model: str = DEFAULT_MODEL, target: int | str | None = None,
               methods: Sequence[str] | None = None, by: str = "deletion") -> Request:
        """Every method runs with its default settings (stage methods on the last stage); none
        named: ``RANK_DEFAULT``."""
        spec = rt.zoo.get(model)
        names = tuple(dict.fromkeys(rules.method(m) for m in (methods or RANK_DEFAULT)))
        blank = target is None or (isinstance(target, str) and not target.strip())
        return cls(image, spec.name, None if blank else rules.target(spec, target), names, sort_key(by))


@dataclass
class Ranked:
    """One method's map of the image and how faithful it is."""

    explanation: Explanation
    faithfulness: Faithfulness

    @property
    def method(self) -> str:
        return self.explanation.method

    def to_json(self) -> dict[str, Any]:
        f = self.faithfulness
        return {"method": self.method, "label": METHODS[self.method].label, "layer": self.explanation.layer,
                "deletion_auc": f.deletion_auc, "insertion_auc": f.insertion_auc,
                "road_combined": None if f.road is None else f.road.combined,
                "seconds": round(self.explanation.seconds, 4), "score_seconds": round(f.seconds, 4),
                "shape": list(self.explanation.raw.shape), "faithfulness": f.to_json()}


@dataclass
class Ranking:
    """Several methods' maps of one image for one class, each scored."""

    run: Classification
    target: Prediction
    entries: list[Ranked] = field(default_factory=list)
    by: str = "deletion"  # the order ``to_json`` lists the methods in

    def sorted(self, by: str = "deletion") -> list[Ranked]:
        """Best first: lowest deletion area, highest insertion area, or highest ROAD combined score."""
        by = sort_key(by)
        if by == "deletion":
            return sorted(self.entries, key=lambda r: r.faithfulness.deletion_auc)
        if by == "road":  # maps scored without ROAD go last
            return sorted(self.entries, key=lambda r: -r.faithfulness.road.combined if r.faithfulness.road
                          else float("inf"))
        return sorted(self.entries, key=lambda r: -r.faithfulness.insertion_auc)

    def to_json(self, by: str | None = None) -> dict[str, Any]:
        """The one JSON of a ranking (``/rank_methods``'s), best first by ``by`` (default: the request's)."""
        by = by or self.by
        t = self.target
        return {**self.run.to_json(), "target": {"index": t.index, "label": t.label, "prob": t.prob},
                "sort_by": by, "steps": STEPS, "methods": [r.to_json() for r in self.sorted(by)],
                "notes": self.run.notes}


def rank_estimate(rt: Runtime, model: str, methods: Sequence[str] | None = None) -> Estimate:
    """The cost of a ranking: one classification, then each method's map and its scores."""
    names = list(dict.fromkeys(methods or RANK_DEFAULT))
    each = [map_estimate(rt, [model], m, faithfulness=True) for m in names]  # each counts the classification
    extra = len(each) - 1
    timed = rt.costs.forward_seconds(model)
    seconds = None if timed is None or any(e.seconds is None for e in each) else (
        sum(e.seconds for e in each) - extra * timed[0])  # type: ignore[misc]
    return Estimate(sum(e.forwards for e in each) - extra, seconds, each[0].basis, models=1,
                    passes=sum(e.passes for e in each) - extra)


def estimate(rt: Runtime, req: Request) -> Estimate:
    return rank_estimate(rt, req.model, req.methods)


def run(rt: Runtime, req: Request, progress: Any = None) -> Iterator[Ranking]:
    """The ranking so far: first with no entry, then after each method (the last is the result)."""
    spec = rt.zoo.get(req.model)
    loaded = decoded(req.image)
    lm = rt.cache.get(spec, progress)
    classified = classify(lm, loaded, top_k=5)
    idx = classified.predictions[0].index if req.target is None else req.target
    ranking = Ranking(classified, classified.prediction(idx), by=req.by)
    yield ranking
    n = len(req.methods)
    for i, name in enumerate(req.methods):
        m = METHODS[name]
        if progress:
            progress(i / n, f"{spec.name} · {m.label}: computing the map ({i + 1} of {n}; {m.cost})")
        ex = explain(lm, classified, name, idx)

        def scoring(fraction: float | None, message: str, i: int = i, label: str = m.label) -> None:
            if progress:
                progress((i + 0.5 + 0.5 * (fraction or 0.0)) / n, f"{label}: {message}")

        ranking.entries.append(Ranked(ex, score_map(lm, classified, ex.raw, idx, progress=scoring)))
        yield ranking
    if progress:
        progress(1.0, "done")


def result(rt: Runtime, req: Request, progress: Any = None) -> Ranking:
    """``run`` to its end: every method scored."""
    return last(run(rt, req, progress))
