"""One entry point for front ends: classify + explain one model, rank methods, robustness, batch, sanity.

Compare, Depth lab and error surfaces moved to zoo.features.compare, .analyze and .landscape.

The app, its API and the load script all call ``Explorer``; it owns the read-only
zoo and the locked model cache, and keeps no per-request state.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from . import batch as batching
from .errors import ZooError
from .explain import METHODS, Explanation, explain, get_method, layer_param, model_params
from .faithfulness import STEPS, Faithfulness, road_forwards, road_impute_seconds
from .faithfulness import faithfulness as score_map
from .hub import ProgressFn
from .inference import Classification, Prediction, Prepared, classify, prepare, resolve_target, top_k_param
from .costs import FAITHFULNESS, Estimate, with_decoding
from .runtime import Runtime, decoded, share
from .registry import ModelSpec, Preprocessing

if TYPE_CHECKING:  # the engines are imported when a feature first runs (torch-heavy); named here for the types
    from .landscape import Landscape
    from .landscape import Step as LandscapeStep


@dataclass
class Result:
    """One model's classification and explanation of one image."""

    run: Classification
    explanation: Explanation
    method: str
    seconds: float  # model fetch excluded: classify + explain (+ score)
    faithfulness: Faithfulness | None = None  # deletion/insertion scores, when asked for

    def to_json(self) -> dict[str, Any]:
        t = self.explanation.target
        out = {**self.run.to_json(), "method": self.method,
               "target": {"index": t.index, "label": t.label, "prob": t.prob},
               "shape": list(self.explanation.raw.shape),
               "seconds": round(self.seconds, 4), "notes": self.run.notes + self.explanation.notes}
        if self.faithfulness is not None:  # only then: /classify's answer stays as it was
            out["layer"] = self.explanation.layer
            out["faithfulness"] = self.faithfulness.to_json()
        return out


# Methods a ranking runs when none are named: those costing a few passes at most
# (Integrated Gradients, Occlusion, Score-CAM and Ablation-CAM cost tens to thousands).
RANK_DEFAULT = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "smoothgradcampp", "saliency",
                "guided-gradcam", "hirescam", "gradcam-elementwise", "eigencam", "fullgrad", "shapleycam")
RANK_KEYS = ("deletion", "insertion", "road")


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

    def sorted(self, by: str = "deletion") -> list[Ranked]:
        """Best first: lowest deletion area, highest insertion area, or highest ROAD combined score."""
        if by not in RANK_KEYS:
            raise ZooError(f"Sort by 'deletion' (lower is better), 'insertion' (higher is better) or 'road' "
                           f"(ROAD's combined score, higher is better), not {by!r}.")
        if by == "deletion":
            return sorted(self.entries, key=lambda r: r.faithfulness.deletion_auc)
        if by == "road":  # maps scored without ROAD go last
            return sorted(self.entries, key=lambda r: -r.faithfulness.road.combined if r.faithfulness.road
                          else float("inf"))
        return sorted(self.entries, key=lambda r: -r.faithfulness.insertion_auc)

    def to_json(self, by: str = "deletion") -> dict[str, Any]:
        t = self.target
        return {**self.run.to_json(), "target": {"index": t.index, "label": t.label, "prob": t.prob},
                "sort_by": by, "steps": STEPS, "methods": [r.to_json() for r in self.sorted(by)],
                "notes": self.run.notes}


class Explorer(Runtime):
    """The features' old entry point, kept while front ends move to ``zoo.features``."""

    def estimate(self, models: Sequence[str], method: str = "cam", faithfulness: bool = False,
                 **params: Any) -> Estimate:
        """The cost of ``run`` (one model) or ``compare`` (several) with these settings, before
        running them. Raises ``ZooError`` for settings the server would refuse.

        Seconds: per model, its measured forward (the classification) plus the map's and the
        scores' passes at ``pass_seconds`` each.
        """
        m = get_method(method)
        forwards, passes, seconds, bases = 0, 0, 0.0, []
        scored = (2 * STEPS - 1 + road_forwards()) if faithfulness else 0  # deletion/insertion, then ROAD
        for name in models:
            spec = self.zoo.get(name)
            crop = spec.preprocessing.crop
            p = model_params(method, spec.arch, crop, params)
            n = m.passes(p, crop)
            forwards += 1 + m.forwards(p, crop) + scored
            passes += 1 + n + scored
            timed = self.costs.forward_seconds(name) if seconds is not None else None
            if timed is None:
                seconds = None
                continue
            unit, basis = timed
            map_s, measured = self.costs.pass_seconds(method, name, unit) if n else (0.0, False)
            score_s, scores_measured = self.costs.pass_seconds(FAITHFULNESS, name, unit) if scored else (0.0, False)
            # ROAD's sparse solves run on the CPU and do not scale with the model's forward.
            seconds += unit + n * map_s + scored * score_s + (road_impute_seconds() if faithfulness else 0.0)
            if measured or scores_measured:
                basis += "; the map's passes as timed here" if measured else "; scoring as timed here"
            bases.append(basis)
        basis = bases[0] if len(set(bases)) == 1 else "each model's forward measured here or scaled by multiply-adds"
        return Estimate(forwards, seconds, basis if seconds is not None else "no forward timed on this device yet",
                        models=len(models), passes=passes)

    def rank_estimate(self, model: str, methods: Sequence[str] | None = None) -> Estimate:
        """The cost of ``iter_rank``: one classification, then each method's map and its scores."""
        names = list(dict.fromkeys(methods or RANK_DEFAULT))
        each = [self.estimate([model], m, faithfulness=True) for m in names]  # each counts the classification
        extra = len(each) - 1
        timed = self.costs.forward_seconds(model)
        seconds = None if timed is None or any(e.seconds is None for e in each) else (
            sum(e.seconds for e in each) - extra * timed[0])  # type: ignore[misc]
        return Estimate(sum(e.forwards for e in each) - extra, seconds, each[0].basis, models=1,
                        passes=sum(e.passes for e in each) - extra)

    def run(self, image: Any, model: str, top_k: int = 5, method: str = "cam", target: int | str | None = None,
            progress: ProgressFn | None = None, faithfulness: bool = False, **params: Any) -> Result:
        """Classify and explain; with ``faithfulness``, also score the map (about 40 forwards)."""
        spec = self.zoo.get(model)
        top_k = top_k_param(top_k)
        get_method(method)
        layer_param(method, dict(params), spec.cam_layer)  # a bad layer fails before any download
        loaded = decoded(image)  # check the upload before fetching weights
        lm = self.cache.get(spec, progress)
        t0 = time.perf_counter()
        run = self.costs.timed(classify(lm, loaded, top_k))
        ex = explain(lm, run, method, target, **params)
        self._calibrate_map(ex, spec, params)
        scores = None
        if faithfulness:
            scores = score_map(lm, run, ex.raw, ex.target.index, progress=progress)
            self.costs.calibrate(FAITHFULNESS, spec.name, scores.seconds, scores.forwards)
        return Result(run, ex, method, time.perf_counter() - t0, scores)

    def _calibrate_map(self, ex: Explanation, spec: Any, params: dict[str, Any]) -> None:
        """Feed a map's measured time to the estimates of its method."""
        p = model_params(ex.method, spec.arch, spec.preprocessing.crop, {**params, "layer": ex.layer})
        try:
            n = get_method(ex.method).passes(p, spec.preprocessing.crop)
        except ZooError:
            return
        self.costs.calibrate(ex.method, spec.name, ex.seconds, n)

    def rank_methods(self, image: Any, model: str, target: int | str | None = None,
                     methods: list[str] | None = None, progress: ProgressFn | None = None) -> Ranking:
        """Each method's map of ``image`` for one class (default: top-1), scored; see ``iter_rank``."""
        ranking = None
        for ranking in self.iter_rank(image, model, target, methods, progress):
            pass
        assert ranking is not None
        return ranking

    def iter_rank(self, image: Any, model: str, target: int | str | None = None,
                  methods: list[str] | None = None, progress: ProgressFn | None = None) -> Iterator[Ranking]:
        """The ranking so far, after each method: a caller can show it grow, or stop between methods.

        Every method runs with its default parameters (stage methods on the last stage).
        """
        names = list(dict.fromkeys(methods or RANK_DEFAULT))  # in order, once each
        for name in names:
            get_method(name)
        spec = self.zoo.get(model)
        loaded = decoded(image)
        lm = self.cache.get(spec, progress)
        run = classify(lm, loaded, top_k=5)
        idx = resolve_target(run.labels, target, default=run.predictions[0].index)
        ranking = Ranking(run, run.prediction(idx))
        yield ranking
        n = len(names)
        for i, name in enumerate(names):
            m = METHODS[name]
            if progress:
                progress(i / n, f"{spec.name} · {m.label}: computing the map ({i + 1} of {n}; {m.cost})")
            ex = explain(lm, run, name, idx)

            def scoring(fraction: float | None, message: str, i: int = i, label: str = m.label) -> None:
                if progress:
                    progress((i + 0.5 + 0.5 * (fraction or 0.0)) / n, f"{label}: {message}")

            ranking.entries.append(Ranked(ex, score_map(lm, run, ex.raw, idx, progress=scoring)))
            yield ranking
        if progress:
            progress(1.0, "done")

    def batch_stream(self, sources: Sequence[str | os.PathLike], models: list[str] | None = None, *,
                     names: Sequence[str] | None = None, labels_csv: str | os.PathLike | None = None,
                     top_k: int = 5, batch_size: int | None = None, max_images: int | None = None,
                     globs: bool = False, thumbnails: int = 0, keep_images: bool = True,
                     progress: ProgressFn | None = None, partial_every_s: float | None = None,
                     executor: batching.Executor | Callable[[list[ModelSpec]], batching.Executor] | None = None,
                     ) -> Iterator[batching.ImageResult | batching.Skipped | batching.Progress | batching.BatchResult]:
        """Many images (files, folders, globs, a zip) through ``models`` (default: every depth).

        Yields each ``Skipped`` file and ``ImageResult`` as it is done, ``Progress`` before
        each forward, partial ``BatchResult``s with ``partial_every_s``, then the final
        ``BatchResult`` (see ``zoo.batch.stream``). The request's token or closing the
        generator stops the work. ``executor``: another engine over ``models``, or a function
        of their specs that makes one once the inputs are known to be usable (the command
        line's ``--engine ray`` and ``--out FILE.jsonl``); default: the models of this
        process's cache, run here.
        """
        for name in models or []:
            self.zoo.get(name)
        # Inputs first: a bad path or an unsafe zip fails before seconds are spent on weights.
        inp = batching.gather(sources, names=names, labels_csv=labels_csv, max_images=max_images, globs=globs)
        ex = self.executor(models, executor, progress)
        yield from batching.stream(inp, ex, top_k=top_k, batch_size=batch_size, thumbnails=thumbnails,
                                   progress=progress, keep_images=keep_images, partial_every_s=partial_every_s)

    def batch(self, sources: Sequence[str | os.PathLike], models: list[str] | None = None,
              **kwargs: Any) -> batching.BatchResult:
        """``batch_stream`` to the end: the ``BatchResult``."""
        result = None
        for result in self.batch_stream(sources, models, **kwargs):
            pass
        assert isinstance(result, batching.BatchResult)
        return result

    def batch_estimate(self, sources: Sequence[str | os.PathLike], models: Sequence[str] | None = None, *,
                       names: Sequence[str] | None = None, max_images: int | None = None) -> Estimate:
        """The cost of ``batch`` on ``sources`` (files and zips, as the app gets them), before running it.

        One forward per image and model. The images are counted as ``batch`` counts them (a
        zip's members are listed, nothing is decoded); raises ``ZooError`` for what ``batch``
        would refuse, such as more than ``max_images``. The seconds rest on single-image
        forwards: batched ones usually cost less per image, so they are an upper estimate.
        """
        inp = batching.gather(sources, names=names, max_images=max_images, globs=False)
        n = len(inp.items)
        names_ = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        for name in names_:
            self.zoo.get(name)  # an unknown model fails here, as in batch
        return with_decoding(self.costs.priced({name: float(n) for name in names_}), batching.decode_seconds(inp.items))

    def executor(self, models: Sequence[str] | None = None,
                 executor: batching.Executor | Callable[[list[ModelSpec]], batching.Executor] | None = None,
                 progress: ProgressFn | None = None) -> batching.Executor:
        """What runs the forwards of a batch or robustness run over ``models`` (default: every
        depth): ``executor`` as given, or made from the models' specs when it is a function of
        them (the command line's ``--engine ray``, ``--out``); by default a
        ``zoo.batch.LocalExecutor`` over this process's cached models."""
        specs = list(dict.fromkeys(self.zoo.get(n) for n in (models or [s.name for s in self.zoo.builtin_depths])))
        if executor is None:
            return batching.LocalExecutor([self.cache.get(spec, progress) for spec in specs])
        return executor(specs) if callable(executor) else executor

    # --- every stage at once ---------------------------------------------------------------

    def every_stage_estimate(self, model: str, method: str, **params: Any) -> Estimate:
        """The cost of ``every_stage``: a classification and the maps (one pass for Grad-CAM-like methods)."""
        from .explain import every_stage_passes

        spec = self.zoo.get(model)
        return self.costs.priced({model: 1 + every_stage_passes(method, params, spec.preprocessing.crop)})

    def every_stage(self, image: Any, model: str, method: str = "gradcam", target: int | str | None = None,
                    progress: ProgressFn | None = None, **params: Any) -> tuple[Classification, list[Explanation]]:
        """Classify, then ``method``'s maps at layer1 ... layer4 (``zoo.explain.every_stage``)."""
        from .explain import check_every_stage, every_stage

        spec = self.zoo.get(model)
        check_every_stage(method)  # CAM and input methods fail before any download
        loaded = decoded(image)
        lm = self.cache.get(spec, progress)
        run = self.costs.timed(classify(lm, loaded, top_k=5))
        return run, every_stage(lm, run, method, target, **params)


