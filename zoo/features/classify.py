"""Classify & explain: one model's top-k classes of one image and a map for one class, optionally
scored for faithfulness, or the method's maps at every stage.

The Classify tab, ``/classify`` and ``/explain`` (and their MCP tools) and ``python -m zoo
classify`` / ``explain`` all build a ``Request`` and print its result's ``to_json()``. The
pricing of a map (``map_estimate``) is shared with Compare, Method ranking and Robustness.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

from .. import params as rules
from ..costs import FAITHFULNESS, MIXED, NOT_TIMED, Estimate
from ..errors import ZooError
from ..explain import Explanation, explain, get_method, model_params
from ..faithfulness import STEPS, Faithfulness, road_forwards, road_impute_seconds
from ..faithfulness import faithfulness as score_map
from ..inference import Classification, classify
from ..runtime import Runtime, decoded
from . import last

DEFAULT_MODEL = "resnet50"


@dataclass(frozen=True)
class Request:
    """What to classify and explain. Build it with ``Request.create``, which checks every value."""

    image: Any  # a path, bytes, a PIL image or a ``LoadedImage``; None only for an estimate
    model: str
    top_k: int = 5
    method: str = "cam"
    target: int | None = None  # a class index of the model's; None: its top-1
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # the method's settings
    faithfulness: bool = False  # also score the map (deletion, insertion, ROAD)
    every_stage: bool = False  # the method's maps at layer1 ... layer4 instead of one map
    explain: bool = False  # asked as /explain or ``explain``: the JSON always names the layer and the scores

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, model: str = DEFAULT_MODEL, top_k: Any = 5,
               method: str = "cam", target: int | str | None = None, params: Mapping[str, Any] | None = None,
               faithfulness: bool = False, every_stage: bool = False, explain: bool = False,
               refuse_layer: bool = False) -> Request:
        """Check raw values (a form's, argparse's, a payload's) before any weights are fetched.

        ``params``: the method's settings; those it does not take are dropped (a form sends every
        slider), a layer for an input method too unless ``refuse_layer`` (see ``zoo.params.method_params``).
        """
        spec = rt.zoo.get(model)
        name = rules.method(method)
        blank = target is None or (isinstance(target, str) and not target.strip())
        if every_stage:
            from ..explain import check_every_stage

            check_every_stage(name)  # CAM and the input methods have no map at every stage
            if faithfulness:
                raise ZooError("Scoring (faithfulness) scores one map; ask for one layer, not every stage.")
            settings = rules.method_params(name, {k: v for k, v in (params or {}).items() if k != "layer"})
        else:
            settings = rules.method_params(name, params, spec, refuse_layer=refuse_layer)
        return cls(image, spec.name, rules.top_k(top_k), name, None if blank else rules.target(spec, target),
                   MappingProxyType(settings), bool(faithfulness), bool(every_stage), bool(explain))


@dataclass
class Result:
    """One model's classification and explanation of one image."""

    run: Classification
    explanation: Explanation
    method: str
    seconds: float  # model fetch excluded: classify + explain (+ score)
    faithfulness: Faithfulness | None = None  # deletion/insertion scores, when asked for
    explain: bool = False  # the request's ``explain``: the layer and the scores named even when unscored

    def to_json(self) -> dict[str, Any]:
        """The one JSON of a classification and its map (the CLI's, the endpoints', the MCP tools')."""
        t = self.explanation.target
        out = {**self.run.to_json(), "method": self.method,
               "target": {"index": t.index, "label": t.label, "prob": t.prob},
               "shape": list(self.explanation.raw.shape),
               "seconds": round(self.seconds, 4), "notes": self.run.notes + self.explanation.notes}
        if self.explain or self.faithfulness is not None:  # only then: /classify's answer stays as it was
            out["layer"] = self.explanation.layer
            out["faithfulness"] = None if self.faithfulness is None else self.faithfulness.to_json()
        return out


@dataclass
class Stages:
    """One method's maps of one image at every stage, finest first."""

    run: Classification
    method: str
    explanations: list[Explanation]
    passes: int  # forward-pass equivalents of the maps: 3 when one pass served all four stages

    def to_json(self) -> list[dict[str, Any]]:
        """One object per stage (the CLI prints one a line)."""
        run = self.run
        return [{"model": run.model, "method": self.method, "device": run.device, "precision": run.precision,
                 "precision_note": run.precision_note,
                 "target": {"index": ex.target.index, "label": ex.target.label, "prob": ex.target.prob},
                 "layer": ex.layer, "shape": list(ex.raw.shape), "seconds": round(ex.seconds, 4),
                 "passes": self.passes, "notes": run.notes + ex.notes} for ex in self.explanations]


# --- what it costs ------------------------------------------------------------------------

def map_estimate(rt: Runtime, models: Sequence[str], method: str = "cam", params: Mapping[str, Any] | None = None,
                 faithfulness: bool = False) -> Estimate:
    """The cost of classifying with each of ``models`` and drawing ``method``'s map (and scoring
    it), before running it. Raises ``ZooError`` for settings the server would refuse.

    Seconds: per model, its measured forward (the classification) plus the map's and the
    scores' passes at ``rt.costs.pass_seconds`` each.
    """
    m = get_method(method)
    forwards, passes, seconds, bases = 0, 0, 0.0, []
    scored = (2 * STEPS - 1 + road_forwards()) if faithfulness else 0  # deletion/insertion, then ROAD
    for name in models:
        spec = rt.zoo.get(name)
        crop = spec.preprocessing.crop
        p = model_params(method, spec.arch, crop, params)
        n = m.passes(p, crop)
        forwards += 1 + m.forwards(p, crop) + scored
        passes += 1 + n + scored
        timed = rt.costs.forward_seconds(name) if seconds is not None else None
        if timed is None:
            seconds = None
            continue
        unit, basis = timed
        map_s, measured = rt.costs.pass_seconds(method, name, unit) if n else (0.0, False)
        score_s, scores_measured = rt.costs.pass_seconds(FAITHFULNESS, name, unit) if scored else (0.0, False)
        # ROAD's sparse solves run on the CPU and do not scale with the model's forward.
        seconds += unit + n * map_s + scored * score_s + (road_impute_seconds() if faithfulness else 0.0)
        if measured or scores_measured:
            basis += "; the map's passes as timed here" if measured else "; scoring as timed here"
        bases.append(basis)
    basis = bases[0] if len(set(bases)) == 1 else MIXED
    return Estimate(forwards, seconds, basis if seconds is not None else NOT_TIMED, models=len(models),
                    passes=passes)


def every_stage_estimate(rt: Runtime, model: str, method: str, params: Mapping[str, Any] | None = None) -> Estimate:
    """The cost of the maps at every stage: a classification and the maps (one pass for Grad-CAM-like methods)."""
    from ..explain import every_stage_passes

    spec = rt.zoo.get(model)
    return rt.costs.priced({spec.name: 1 + every_stage_passes(method, params, spec.preprocessing.crop)})


def estimate(rt: Runtime, req: Request) -> Estimate:
    """What ``req`` will cost here: the figure the page shows, the ceilings check, ZeroGPU asks for."""
    if req.every_stage:
        return every_stage_estimate(rt, req.model, req.method, req.params)
    return map_estimate(rt, [req.model], req.method, req.params, req.faithfulness)


# --- the work -----------------------------------------------------------------------------

def calibrate_map(rt: Runtime, ex: Explanation, spec: Any, params: Mapping[str, Any] | None = None) -> None:
    """Feed a map's measured time to the estimates of its method (``rt.costs``)."""
    p = model_params(ex.method, spec.arch, spec.preprocessing.crop, {**(params or {}), "layer": ex.layer})
    try:
        n = get_method(ex.method).passes(p, spec.preprocessing.crop)
    except ZooError:
        return
    rt.costs.calibrate(ex.method, spec.name, ex.seconds, n)


def run(rt: Runtime, req: Request, progress: Any = None) -> Iterator[Result | Stages]:
    """Classify and explain (with ``faithfulness``, also score the map: about 50 forwards), or
    draw every stage's map; yields the ``Result`` (or ``Stages``). The map's methods check
    ``zoo.cancel`` between blocks."""
    spec = rt.zoo.get(req.model)
    loaded = decoded(req.image)  # check the upload before fetching weights
    lm = rt.cache.get(spec, progress)
    t0 = time.perf_counter()
    classified = rt.costs.timed(classify(lm, loaded, 5 if req.every_stage else req.top_k))
    params = dict(req.params)
    if req.every_stage:
        from ..explain import every_stage, every_stage_passes

        maps = every_stage(lm, classified, req.method, req.target, **params)
        yield Stages(classified, req.method, maps, every_stage_passes(req.method, params, spec.preprocessing.crop))
        return
    ex = explain(lm, classified, req.method, req.target, **params)
    calibrate_map(rt, ex, spec, params)
    scores = None
    if req.faithfulness:
        scores = score_map(lm, classified, ex.raw, ex.target.index, progress=progress)
        rt.costs.calibrate(FAITHFULNESS, spec.name, scores.seconds, scores.forwards)
    yield Result(classified, ex, req.method, time.perf_counter() - t0, scores, req.explain)


def result(rt: Runtime, req: Request, progress: Any = None) -> Result | Stages:
    """``run`` to its end."""
    return last(run(rt, req, progress))
