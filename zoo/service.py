"""One entry point for front ends: classify + explain one model, compare depths, or analyze them.

The app, its API and the load script all call ``Explorer``; it owns the read-only
zoo and the locked model cache, and keeps no per-request state.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from . import batch as batching
from .agreement import MapAgreement, map_agreement
from .analysis import Analysis, analyze, check_target
from .errors import ZooError
from .explain import METHODS, Explanation, explain, get_method, layer_param, model_params
from .faithfulness import STEPS, Faithfulness, road_forwards, road_impute_seconds
from .faithfulness import faithfulness as score_map
from .hub import ProgressFn
from .images import to_tensor
from .inference import Classification, Prediction, Prepared, classify, prepare, resolve_target, top_k_param
from .costs import FAITHFULNESS, Estimate, with_decoding
from .runtime import Runtime, decoded, share
from .registry import Preprocessing


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


@dataclass
class Comparison:
    """Several depths on one image, explained for one shared target class."""

    results: list[Result]
    target: int
    target_label: str
    agreement: dict[str, Any] = field(default_factory=dict)
    chosen: str = "consensus"  # how the target was picked: "consensus" (see ``consensus``) or "given"

    @functools.cached_property
    def map_agreement(self) -> MapAgreement:
        """Do the depths look at the same place? Each pair of maps, as drawn on the crop (see zoo.agreement)."""
        return map_agreement([(r.run.model, r.explanation.raw, int(r.run.input.shape[-1])) for r in self.results])

    def to_json(self) -> dict[str, Any]:
        return {"target": {"index": self.target, "label": self.target_label, "chosen": self.chosen},
                "agreement": self.agreement, "map_agreement": self.map_agreement.to_json(),
                "models": [r.to_json() for r in self.results]}


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

    def compare(self, image: Any, models: list[str] | None = None, method: str = "cam",
                target: int | str | None = None, top_k: int = 5, progress: ProgressFn | None = None,
                faithfulness: bool = False) -> Comparison:
        """Every depth on one image; CAMs for one class (default: the one most depths pick).

        With ``faithfulness``, each depth's map is scored too (about 40 forwards per depth).
        """
        names = models or [s.name for s in self.zoo.builtin_depths]
        specs = [self.zoo.get(n) for n in names]
        get_method(method)
        loaded = decoded(image)
        runs: list[tuple[Any, Classification, float]] = []
        prepared: dict[Preprocessing, Prepared] = {}  # one resize-and-crop per distinct recipe
        for i, spec in enumerate(specs):
            if progress:
                progress(i / len(specs), f"{spec.name}: classifying ({i + 1} of {len(specs)})")
            lm = self.cache.get(spec, progress)
            t0 = time.perf_counter()
            pre = spec.preprocessing
            if pre not in prepared:
                prepared[pre] = prepare(loaded, pre)
            run = self.costs.timed(classify(lm, loaded, top_k, prepared[pre]))
            runs.append((lm, run, time.perf_counter() - t0))
        labels = runs[0][1].labels
        if any(r.labels != labels for _, r, _ in runs):
            raise ZooError(f"Models {', '.join(names)} do not share one label set; compare models that "
                           "predict the same classes.")
        idx = resolve_target(labels, target, default=consensus([r for _, r, _ in runs]))
        results = []
        for lm, run, secs in runs:
            t0 = time.perf_counter()
            ex = explain(lm, run, method, idx)
            self._calibrate_map(ex, lm.spec, {})
            scores = None
            if faithfulness:
                if progress:
                    progress(None, f"{run.model}: scoring its map ({2 * STEPS - 1 + road_forwards()} forwards)")
                scores = score_map(lm, run, ex.raw, idx)
                self.costs.calibrate(FAITHFULNESS, run.model, scores.seconds, scores.forwards)
            results.append(Result(run, ex, method, secs + time.perf_counter() - t0, scores))
        if progress:
            progress(1.0, "done")
        given = target is not None and not (isinstance(target, str) and not target.strip())
        return Comparison(results, idx, labels[idx], agreement(results), "given" if given else "consensus")

    def analyze(self, image: Any, models: list[str] | None = None, target: int | str | None = None,
                lesion: bool = False, deletions: bool = False, progress: ProgressFn | None = None) -> list[Analysis]:
        """Depth lab: per-block statistics (and lesions) of each model for one image."""
        return list(self.analyze_each(image, models, target, lesion, deletions, progress))

    def analyze_each(self, image: Any, models: list[str] | None = None, target: int | str | None = None,
                     lesion: bool = False, deletions: bool = False,
                     progress: ProgressFn | None = None) -> Iterator[Analysis]:
        """``analyze``, one model at a time, so a front end can show each depth as it finishes (and stop)."""
        names = models or [s.name for s in self.zoo.builtin_depths]
        specs = [self.zoo.get(n) for n in names]
        for spec in specs:
            check_target(spec, target)  # a typo fails now, not after minutes of work
        loaded = decoded(image)  # decoded once for every depth
        for i, spec in enumerate(specs):
            lm = self.cache.get(spec, progress)
            yield analyze(lm, loaded, target, lesion=lesion, deletions=deletions,
                          progress=share(progress, i, len(specs)))

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

    def analyze_estimate(self, models: Sequence[str] | None = None, lesion: bool = False) -> Estimate:
        """The cost of ``analyze`` (Depth lab) for ``models``, before running it.

        Per model: the signal pass (one forward and one backward, three forwards' worth);
        with ``lesion`` (which the app runs with the deletions), one more clean forward and
        every lesioned variant from its first deleted block on, in forwards' worth (block
        counts over the number of blocks). Statistics run in fp32, so on a machine whose
        classification runs in bf16 the seconds are a low estimate.
        """
        names = list(models or [s.name for s in self.zoo.builtin_depths])
        return self.costs.priced({name: _analysis_passes(self.zoo.get(name).arch.name, lesion) for name in names})

    # --- robustness: ImageNet-C corruptions (zoo.robustness) -------------------------------------

    def robustness_estimate(self, models: Sequence[str] | None = None, corruptions: Sequence[str] | None = None,
                            severities: Sequence[int] | None = None, *, images: int = 1,
                            sources: Sequence[str | os.PathLike] | None = None, names: Sequence[str] | None = None,
                            max_images: int | None = None) -> Estimate:
        """The cost of a sweep (one image) or a folder run, before it runs.

        Forwards: per image and model, the clean crop and one per (corruption, severity).
        Seconds: those forwards at the batched cost per crop an earlier sweep or folder run
        measured here, else at ``forward_seconds`` (single-image forwards: batched ones cost
        less, so an upper estimate); plus making the corrupted crops, at each corruption's
        measured cost (``zoo.robustness.Corruption.seconds``, per distinct preprocessing),
        scaled by how far earlier runs here were from it. Corrupting overlaps the forwards,
        so the sum is an upper estimate. With ``sources`` the images are counted as ``batch``
        counts them (``max_images`` refused as there). Raises ``ZooError`` for an unknown
        model, corruption or severity.
        """
        from . import robustness as rb

        cs, sevs = rb.corruption_names(corruptions), rb.severity_list(severities)
        names_ = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        specs = [self.zoo.get(n) for n in names_]
        decode_s = 0.0
        if sources is not None:
            items = batching.gather(sources, names=names, max_images=max_images, globs=False).items
            images, decode_s = len(items), batching.decode_seconds(items)
        n = max(0, int(images))
        crops = n * (1 + len(cs) * len(sevs))
        per_crop, ratio = self.costs.measured("robustness"), self.costs.ratio("corrupting")
        seconds: float | None = 0.0
        bases = []
        for name in names_:
            if name in per_crop:
                seconds += crops * per_crop[name]  # type: ignore[operator]
                bases.append("an earlier sweep's batched forwards measured here")
                continue
            timed = self.costs.forward_seconds(name)
            if timed is None:
                seconds = None
                break
            seconds += crops * timed[0]  # type: ignore[operator]
            bases.append(timed[1])
        pres = list(dict.fromkeys(s.preprocessing for s in specs))
        corrupt_s = n * sum(rb.corruption_seconds(cs, sevs, p.crop) for p in pres) * (ratio or 1.0)
        if seconds is None:
            return with_decoding(Estimate(crops * len(names_), None, "no forward timed on this device yet",
                                          models=len(names_), passes=crops * len(names_)), decode_s)
        basis = bases[0] if len(set(bases)) == 1 else "each model's forward measured here or scaled by multiply-adds"
        basis += "; corruptions at their cost " + ("as measured here" if ratio else "in the table")
        return with_decoding(Estimate(crops * len(names_), seconds + corrupt_s, basis, models=len(names_),
                                      passes=crops * len(names_)), decode_s)

    def _remember_robustness(self, result: Any) -> None:
        """A finished sweep or folder run feeds ``robustness_estimate``."""
        if result.forward_s is not None:
            for name, sec in zip(result.models, result.forward_s):
                self.costs.remember("robustness", name, sec)
        self.costs.remember_ratio("corrupting", result.corrupt_ratio)

    def robustness_live_estimate(self, models: Sequence[str] | None = None, corruption: str = "fog",
                                 severity: int = 3, method: str | None = None) -> Estimate:
        """The cost of ``robustness_live``: one corrupted crop, each model's forward and, with
        ``method``, its map (as ``estimate`` prices it)."""
        from . import robustness as rb

        c = rb.get_corruption(corruption)
        sev = rb.check_severity(severity)
        names_ = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        est = self.estimate(names_, method) if method else self.costs.priced({n: 1.0 for n in names_})
        # A corrupted crop is classified clean too (the default target is the clean consensus).
        clean = self.costs.priced({n: 1.0 for n in names_}) if sev else Estimate(0, 0.0, "")
        pres = list(dict.fromkeys(self.zoo.get(n).preprocessing for n in names_))
        corrupt_s = sum(rb.corruption_seconds([c.name], [sev], p.crop) for p in pres) if sev else 0.0
        seconds = None if est.seconds is None or clean.seconds is None else est.seconds + clean.seconds + corrupt_s
        forwards = est.forwards + clean.forwards
        return Estimate(forwards, seconds, est.basis, models=len(names_),
                        passes=(est.passes or est.forwards) + clean.forwards)

    def robustness_preview(self, image: Any, corruption: str, severity: int, models: list[str] | None = None,
                           seed: int = 0) -> Any:
        """The corrupted crop ``robustness_live`` would show (the first model's crop, the same seed), as a
        PIL image, without running any model: a preview while the settings change."""
        from . import robustness as rb

        c, sev, seed = rb.get_corruption(corruption), rb.check_severity(severity), rb.check_seed(seed)
        names_ = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        clean = prepare(decoded(image), self.zoo.get(names_[0]).preprocessing)
        return rb.corrupt_crop(clean.crop, c.name, sev, rb.sample_seed(seed, "image", c.name, sev) if sev else 0)

    def robustness_live(self, image: Any, corruption: str, severity: int, models: list[str] | None = None, *,
                        method: str | None = None, target: int | str | None = None, seed: int = 0,
                        top_k: int = 5, progress: ProgressFn | None = None) -> Any:
        """Every depth on ``image`` corrupted by ``corruption`` at ``severity`` (0: the clean
        crop): a ``zoo.robustness.Live``. With ``method``, each depth's map of the corrupted
        crop for one class (``target``, default: the class most depths pick on the clean crop),
        so a front end can show whether the map drifts before the answer flips. The seed of the
        crop is ``zoo.robustness.sample_seed(seed, "image", corruption, severity)``, as in a sweep.
        """
        from . import robustness as rb
        from .cancel import check

        c = rb.get_corruption(corruption)
        sev = rb.check_severity(severity)
        seed = rb.check_seed(seed)
        top_k = top_k_param(top_k)
        names_ = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        specs = [self.zoo.get(n) for n in names_]
        if method:
            get_method(method)
        loaded = decoded(image)
        item_seed = rb.sample_seed(seed, "image", c.name, sev) if sev else 0
        prepared: dict[Preprocessing, tuple[Prepared, Prepared]] = {}
        for pre in dict.fromkeys(s.preprocessing for s in specs):
            clean = prepare(loaded, pre)
            crop = rb.corrupt_crop(clean.crop, c.name, sev, item_seed)
            prepared[pre] = (clean, Prepared(crop, to_tensor(crop, pre)))
        runs, cleans = [], []
        for i, spec in enumerate(specs):
            check()
            if progress:
                progress(i / (2 * len(specs)), f"{spec.name}: classifying ({i + 1} of {len(specs)})")
            lm = self.cache.get(spec, progress)
            clean, bad = prepared[spec.preprocessing]
            cleans.append(classify(lm, loaded, top_k, clean) if sev else None)
            runs.append((lm, self.costs.timed(classify(lm, loaded, top_k, bad))))
        labels = runs[0][1].labels
        if any(r.labels != labels for _, r in runs):
            raise ZooError(f"Models {', '.join(names_)} do not share one label set; run models that "
                           "predict the same classes together.")
        idx = resolve_target(labels, target, default=consensus([c_ or r for c_, (_, r) in zip(cleans, runs)]))
        results: list[Any] = []
        for i, (lm, run) in enumerate(runs):
            check()
            if not method:
                results.append(run)
                continue
            if progress:
                progress(0.5 + i / (2 * len(runs)), f"{run.model}: its map of the corrupted crop")
            t0 = time.perf_counter()
            ex = explain(lm, run, method, idx)
            self._calibrate_map(ex, lm.spec, {})
            results.append(Result(run, ex, method, run.seconds + time.perf_counter() - t0))
        if progress:
            progress(1.0, "done")
        first = prepared[specs[0].preprocessing]
        return rb.Live(c.name, sev, item_seed, first[1].crop, first[0].crop, idx, labels[idx], results, method)

    def executor(self, models: Sequence[str] | None = None, executor: Any = None,
                 progress: ProgressFn | None = None) -> batching.Executor:
        """``zoo.features.batch.executor`` (the one executor seam); kept for the robustness methods."""
        from .features.batch import executor as make

        return make(self, models, executor, progress)

    def robustness_sweep(self, image: Any, models: list[str] | None = None, *,
                         corruptions: Sequence[str] | None = None, severities: Sequence[int] | None = None,
                         target: int | str | None = None, seed: int = 0, batch_size: int | None = None,
                         progress: ProgressFn | None = None) -> Iterator[Any]:
        """Every corruption x severity x depth on one image (``zoo.robustness.sweep_stream``):
        yields ``SweepProgress`` (naming the corruption running) and partial ``Sweep``s between
        batches, then the finished ``Sweep``. The request's token or closing the generator stops it.
        """
        from . import robustness as rb

        cs, sevs, seed = rb.corruption_names(corruptions), rb.severity_list(severities), rb.check_seed(seed)
        for name in models or []:
            self.zoo.get(name)
        loaded = decoded(image)  # a bad upload fails before any download
        executor = self.executor(models, progress=progress)
        if target is not None:
            resolve_target(executor.labels, target, 0)
        for event in rb.sweep_stream(executor, loaded.image, corruptions=cs, severities=sevs, seed=seed,
                                     target=target, batch_size=batch_size, progress=progress):
            if isinstance(event, rb.Sweep) and not event.partial:
                self._remember_robustness(event)
            yield event

    def robustness_stream(self, sources: Sequence[str | os.PathLike], models: list[str] | None = None, *,
                          corruptions: Sequence[str] | None = None, severities: Sequence[int] | None = None,
                          names: Sequence[str] | None = None, labels_csv: str | os.PathLike | None = None,
                          seed: int = 0, save_dir: str | os.PathLike | None = None, top_k: int = 5,
                          batch_size: int | None = None, max_images: int | None = None, globs: bool = False,
                          progress: ProgressFn | None = None, partial_every_s: float | None = None,
                          executor: Any = None) -> Iterator[Any]:
        """A folder (files, folders, globs, a zip, read as Batch reads them) under every
        corruption (``zoo.robustness.stream``): yields ``Skipped``, one ``SampleResult`` per
        (image, corruption, severity), ``Progress``, partial ``FolderSummary``s with
        ``partial_every_s``, then the final ``FolderSummary``. ``executor``: another engine
        (a ``zoo.batch.Executor``) over ``models``, or a function of their specs that makes one
        once the inputs are known to be usable (the command line's); default: ``executor``'s.
        """
        from . import robustness as rb

        cs, sevs, seed = rb.corruption_names(corruptions), rb.severity_list(severities), rb.check_seed(seed)
        top_k = top_k_param(top_k)
        for name in models or []:
            self.zoo.get(name)
        # Inputs first: a bad path or an unsafe zip fails before seconds are spent on weights.
        inp = batching.gather(sources, names=names, labels_csv=labels_csv, max_images=max_images, globs=globs)
        executor = self.executor(models, executor, progress)
        for event in rb.stream(executor, inp, corruptions=cs, severities=sevs, seed=seed, save_dir=save_dir,
                               top_k=top_k, batch_size=batch_size, progress=progress,
                               partial_every_s=partial_every_s):
            if isinstance(event, rb.FolderSummary) and not event.partial:
                self._remember_robustness(event)
            yield event

    def robustness(self, sources: Sequence[str | os.PathLike], models: list[str] | None = None,
                   **kwargs: Any) -> Any:
        """``robustness_stream`` to the end: the ``FolderSummary``."""
        from .robustness import FolderSummary

        result = None
        for event in self.robustness_stream(sources, models, **kwargs):
            if isinstance(event, FolderSummary):
                result = event
        assert result is not None and not result.partial
        return result

    # --- can I trust this map? (zoo.sanity) and every stage at once ---------------------------

    def sanity_estimate(self, models: Sequence[str], methods: Sequence[str] | None = None,
                        granularity: str = "stage", params: dict[str, dict[str, Any]] | None = None) -> Estimate:
        """The cost of ``sanity`` on each of ``models``: per step, a classification and one map per method."""
        from . import sanity

        return self.costs.priced({n: sanity.forwards(self.zoo.get(n), methods, granularity, params) for n in models})

    def iter_sanity(self, image: Any, model: str, methods: Sequence[str] | None = None,
                    target: int | str | None = None, granularity: str = "stage", seed: int | None = None,
                    params: dict[str, dict[str, Any]] | None = None, progress: ProgressFn | None = None,
                    max_forwards: int | None = None) -> Iterator[Any]:
        """The sanity check (``zoo.sanity``) of ``methods`` on ``model``: the report after each step.

        Runs on a private copy of the weights on this explorer's device, never on the cached
        model. ``max_forwards`` refuses a run that would cost more (the app's bound per request).
        """
        from . import sanity

        spec = self.zoo.get(model)
        est = sanity.forwards(spec, methods, granularity, params)
        if max_forwards is not None and est > max_forwards:
            raise sanity.SanityError(
                f"This check would cost {est} forward passes on {spec.name} ({sanity.step_count(spec, granularity)} "
                f"maps per method); the limit here is {max_forwards}. Tick fewer or cheaper methods, use the "
                "'stage' granularity, or run it with python -m zoo sanity.")
        loaded = decoded(image)
        yield from sanity.iter_sanity(spec, loaded, methods, target, granularity,
                                      sanity.SEED if seed is None else int(seed), self.cache.device, params,
                                      self.cache.cache_dir, progress)

    def sanity(self, image: Any, model: str, methods: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """``iter_sanity`` to the end: the finished ``zoo.sanity.SanityReport``."""
        report = None
        for report in self.iter_sanity(image, model, methods, **kwargs):
            pass
        return report

    def iter_sanity_depths(self, image: Any, method: str, models: Sequence[str] | None = None,
                           target: int | str | None = None, granularity: str = "stage", seed: int | None = None,
                           params: dict[str, dict[str, Any]] | None = None, progress: ProgressFn | None = None,
                           max_forwards: int | None = None) -> Iterator[list[Any]]:
        """One method's sanity check on every depth (default: the five built-ins), side by side.

        Yields the reports so far after each step of each depth; whether a method passes can
        depend on depth. The target is resolved per depth (blank: each model's own top-1).
        """
        from . import sanity

        names = list(models or [s.name for s in self.zoo.builtin_depths])
        specs = [self.zoo.get(n) for n in names]
        total = sum(sanity.forwards(s, [method], granularity, params) for s in specs)
        if max_forwards is not None and total > max_forwards:
            raise sanity.SanityError(
                f"Checking {get_method(method).label} on {len(specs)} depths would cost {total} forward passes; the "
                f"limit here is {max_forwards}. Pick a cheaper method, or run it with python -m zoo sanity.")
        loaded = decoded(image)
        done: list[Any] = []
        for i, spec in enumerate(specs):
            for report in self.iter_sanity(loaded, spec.name, [method], target, granularity, seed, params,
                                           share(progress, i, len(specs))):
                yield done + [report]
            done.append(report)

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


    # --- error surfaces (zoo.landscape) ----------------------------------------------------

    def landscape_estimate(self, models: Sequence[str], images: int = 1, grid: int = 11, dims: int = 2, *,
                           sources: Sequence[str | os.PathLike] | None = None, names: Sequence[str] | None = None,
                           max_images: int | None = None) -> Estimate:
        """The cost of ``landscape_each`` before it runs: (grid points + 1 centre pass) x images per model.

        ``images``: images besides ``sources`` (paths, as ``landscape_each`` takes them), which
        are counted as it reads them: a zip's or folder's files, up to ``max_images`` in all,
        their decoding priced from their headers. Seconds rest on an earlier landscape
        of the model here (fp32, perturbation included) when there is one, else on the app's
        forwards (which may run in reduced precision: then the landscape, always fp32, takes
        longer than said). Raises ``ZooError`` for settings the server would refuse.
        """
        from . import landscape as zl

        zl.check_settings(grid, zl.DEFAULT_SPAN, dims, zl.DEFAULT_SEED)
        decode_s, images = 0.0, max(0, int(images))
        if sources:
            room = max(0, (max_images or zl.DEFAULT_MAX_IMAGES) - images)
            items = batching.gather(list(sources), names=names, globs=False).items[:room]
            images, decode_s = images + len(items), batching.decode_seconds(items)
        points = zl.grid_points(grid, dims)
        per_model = (points + 1) * max(1, int(images))
        measured = self.costs.measured("landscape")
        seconds: float | None = 0.0
        bases = []
        for name in models:
            self.zoo.get(name)
            if name in measured:
                seconds += per_model * measured[name]
                bases.append("an earlier landscape measured here")
                continue
            timed = self.costs.forward_seconds(name)
            if timed is None:
                seconds = None
                break
            seconds += per_model * timed[0]
            bases.append(timed[1])
        if seconds is None:
            return with_decoding(Estimate(per_model * len(models), None, "no forward timed on this device yet",
                                          models=len(models)), decode_s)
        basis = bases[0] if len(set(bases)) == 1 else "each model's forward or landscape measured here"
        return with_decoding(Estimate(per_model * len(models), seconds, basis, models=len(models)), decode_s)

    def landscape_each(self, sources: Any, models: list[str] | None = None, target: int | str | None = None, *,
                       grid: int = 11, span: float = 1.0, dims: int = 2, seed: int = 0, max_images: int = 8,
                       names: Sequence[str] | None = None, labels_csv: str | os.PathLike | None = None,
                       globs: bool = False, keep_directions: bool = False,
                       progress: ProgressFn | None = None) -> Iterator[Any]:
        """Error surfaces (``zoo.landscape``) of each model: yields each ``Step`` (before every
        grid point: a generator consumer can stop there) and each model's ``Landscape``.

        ``sources``: one image, or paths (files, folders, a zip) read as Batch reads them,
        up to ``max_images``. Each model runs on a private fp32 copy of its weights; the
        shared model is never touched.
        """
        from . import landscape as zl

        names_ = models or [s.name for s in self.zoo.builtin_depths]
        specs = [self.zoo.get(n) for n in names_]
        zl.check_settings(grid, span, dims, seed)
        for spec in specs:
            zl.check_target(spec, target)  # a typo fails now, not after minutes of work
        images = zl.gather_images(sources, max_images=max_images, names=names, labels_csv=labels_csv, globs=globs)
        for k, spec in enumerate(specs):
            for event in zl.stream(spec, images, device=self.cache.device, target=target, grid=grid, span=span,
                                   dims=dims, seed=seed, keep_directions=keep_directions,
                                   progress=share(progress, k, len(specs)), cache_dir=self.cache.cache_dir):
                if isinstance(event, zl.Landscape) and event.point_seconds > 0:
                    self.costs.remember("landscape", spec.name, event.point_seconds / len(event.images))
                yield event

    def landscape(self, image: Any, model: str, target: int | str | None = None, **kwargs: Any) -> Any:
        """One model's ``zoo.landscape.Landscape`` (see ``landscape_each``)."""
        from .landscape import Landscape

        result = None
        for event in self.landscape_each(image, [model], target, **kwargs):
            if isinstance(event, Landscape):
                result = event
        assert result is not None
        return result

    # --- do the deployed weights give real answers? (zoo.selfcheck) -------------------------

    def selfcheck_estimate(self, models: Sequence[str] | None = None) -> Estimate:
        """The cost of ``selfcheck``: per model and example photo, its forward and, when the input
        is off, one more on the reference input (plus hashing each file, not counted)."""
        from .selfcheck import FORWARDS_PER_PHOTO, PHOTOS

        names = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        return self.costs.priced({self.zoo.get(n).name: float(FORWARDS_PER_PHOTO * len(PHOTOS)) for n in names})

    def selfcheck(self, models: Sequence[str] | None = None, progress: ProgressFn | None = None) -> Any:
        """``zoo.selfcheck.SelfCheck`` of ``models`` (default: the built-in depths), with this explorer's models."""
        from .selfcheck import run_selfcheck

        names = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        return run_selfcheck(self.cache, [self.zoo.get(n) for n in names], progress)


@functools.lru_cache(maxsize=None)
def _analysis_passes(arch: str, lesion: bool) -> float:
    """Forward-pass equivalents of ``analysis.analyze`` on one model of ``arch`` (see ``analyze_estimate``)."""
    import torch
    import torchvision

    from .analysis import blocks, deletion_sets

    with torch.device("meta"):  # the block layout only: no weights, no memory
        refs = blocks(torchvision.models.get_model(arch, weights=None))
    n = len(refs)
    passes = 3.0  # one forward and one backward (about two forwards)
    if lesion:
        sets = [frozenset({r.index}) for r in refs] + [s for _, draw in deletion_sets(refs) for s in draw]
        passes += 1 + sum(n - min(s) for s in sets) / n
    return passes


def consensus(runs: list[Classification]) -> int:
    """The class most models rank first; ties go to the higher mean probability."""
    votes = Counter(r.predictions[0].index for r in runs)
    return max(votes, key=lambda c: (votes[c], sum(float(r.probs[c]) for r in runs)))


def agreement(results: list[Result]) -> dict[str, Any]:
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
