"""One entry point for front ends: classify + explain one model, compare depths, or analyze them.

The app, its API and the load script all call ``Explorer``; it owns the read-only
zoo and the locked model cache, and keeps no per-request state.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from . import batch as batching
from .analysis import Analysis, analyze, check_target
from .errors import ZooError
from .explain import METHODS, Explanation, explain, get_method, layer_param
from .faithfulness import STEPS, Faithfulness
from .faithfulness import faithfulness as score_map
from .hub import ProgressFn
from .images import LoadedImage, load_image
from .inference import Classification, Prediction, Prepared, classify, prepare, resolve_target
from .models import ModelCache, precision_name
from .registry import Preprocessing, Zoo


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

    def to_json(self) -> dict[str, Any]:
        return {"target": {"index": self.target, "label": self.target_label, "chosen": self.chosen},
                "agreement": self.agreement,
                "models": [r.to_json() for r in self.results]}


# Methods a ranking runs when none are named: those costing a few passes at most
# (Integrated Gradients, Occlusion and Score-CAM cost tens to thousands).
RANK_DEFAULT = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "smoothgradcampp", "saliency",
                "guided-gradcam")
RANK_KEYS = ("deletion", "insertion")


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
                "seconds": round(self.explanation.seconds, 4), "score_seconds": round(f.seconds, 4),
                "shape": list(self.explanation.raw.shape), "faithfulness": f.to_json()}


@dataclass
class Ranking:
    """Several methods' maps of one image for one class, each scored."""

    run: Classification
    target: Prediction
    entries: list[Ranked] = field(default_factory=list)

    def sorted(self, by: str = "deletion") -> list[Ranked]:
        """Best first: lowest deletion area, or highest insertion area."""
        if by not in RANK_KEYS:
            raise ZooError(f"Sort by 'deletion' (lower is better) or 'insertion' (higher is better), not {by!r}.")
        if by == "deletion":
            return sorted(self.entries, key=lambda r: r.faithfulness.deletion_auc)
        return sorted(self.entries, key=lambda r: -r.faithfulness.insertion_auc)

    def to_json(self, by: str = "deletion") -> dict[str, Any]:
        t = self.target
        return {**self.run.to_json(), "target": {"index": t.index, "label": t.label, "prob": t.prob},
                "sort_by": by, "steps": STEPS, "methods": [r.to_json() for r in self.sorted(by)],
                "notes": self.run.notes}


@dataclass(frozen=True)
class Estimate:
    """What a request will cost before it runs: forward passes, and seconds on this device."""

    forwards: int  # forward-pass equivalents over all models: classification, map, score
    seconds: float | None  # None until some model's forward has been timed on this device
    basis: str  # whose timing it rests on, for the user to judge it


class Explorer:
    def __init__(self, zoo: Zoo, device: str = "auto", cache_size: int | None = None,
                 cache_dir: str | os.PathLike | None = None, precision: str | None = None):
        self.zoo = zoo
        # Default (ZOO_MODEL_CACHE, 5) holds all five depths, so "compare" never reloads.
        self.cache = ModelCache(cache_size, device, cache_dir, precision)
        # Recent classification times per model on this device, for estimates (shared like
        # the cache: a measurement of the machine, not anyone's request).
        self._forward_s: dict[str, deque[float]] = {}
        self._timing_lock = threading.Lock()

    def _timed(self, run: Classification) -> Classification:
        with self._timing_lock:
            self._forward_s.setdefault(run.model, deque(maxlen=5)).append(run.seconds)
        return run

    def forward_seconds(self, model: str) -> tuple[float, str] | None:
        """One forward of ``model`` here: the median of its recent runs, else another model's
        scaled by multiply-adds; None before any model ran. With the model whose time it rests on."""
        from .stats import model_stats

        with self._timing_lock:
            measured = {name: statistics.median(times) for name, times in self._forward_s.items()}
        if model in measured:
            return measured[model], f"{model}'s forward measured here"
        if not measured:
            return None

        def macs(name: str) -> int:
            spec = self.zoo.get(name)
            return model_stats(spec.arch.name, spec.preprocessing.crop).macs

        other = min(measured, key=lambda n: abs(macs(n) - macs(model)))  # the closest in cost scales best
        return (measured[other] * macs(model) / macs(other),
                f"{other}'s forward measured here, scaled by multiply-adds")

    def latency_estimate(self, resolution: int, repeats: int = 10, warmup: int = 3) -> Estimate:
        """The cost of timing every model (``stats.measure_latency``) at ``resolution``."""
        n = warmup + repeats
        forwards, seconds = n * len(self.zoo.names), 0.0
        for spec in self.zoo:
            timed = self.forward_seconds(spec.name)
            if timed is None:
                return Estimate(forwards, None, "no forward timed on this device yet")
            seconds += n * timed[0] * (resolution / spec.preprocessing.crop) ** 2  # cost grows with the pixels
        return Estimate(forwards, seconds, "each model's forward measured here or scaled by multiply-adds")

    def estimate(self, models: Sequence[str], method: str = "cam", faithfulness: bool = False,
                 **params: Any) -> Estimate:
        """The cost of ``run`` (one model) or ``compare`` (several) with these settings, before
        running them. Raises ``ZooError`` for settings the server would refuse."""
        m = get_method(method)
        forwards, seconds, bases = 0, 0.0, []
        for name in models:
            spec = self.zoo.get(name)
            n = 1 + m.forwards(params, spec.preprocessing.crop) + ((2 * STEPS - 1) if faithfulness else 0)
            forwards += n
            timed = self.forward_seconds(name) if seconds is not None else None
            if timed is None:
                seconds = None
            else:
                seconds += n * timed[0]
                bases.append(timed[1])
        basis = bases[0] if len(set(bases)) == 1 else "each model's forward measured here or scaled by multiply-adds"
        return Estimate(forwards, seconds, basis if seconds is not None else "no forward timed on this device yet")

    @property
    def device(self) -> str:
        return str(self.cache.device)

    @property
    def precision(self) -> str:
        return precision_name(self.cache.precision)

    def run(self, image: Any, model: str, top_k: int = 5, method: str = "cam", target: int | str | None = None,
            progress: ProgressFn | None = None, faithfulness: bool = False, **params: Any) -> Result:
        """Classify and explain; with ``faithfulness``, also score the map (about 40 forwards)."""
        spec = self.zoo.get(model)
        get_method(method)
        layer_param(method, dict(params), spec.cam_layer)  # a bad layer fails before any download
        loaded = _decoded(image)  # check the upload before fetching weights
        lm = self.cache.get(spec, progress)
        t0 = time.perf_counter()
        run = self._timed(classify(lm, loaded, top_k))
        ex = explain(lm, run, method, target, **params)
        scores = None
        if faithfulness:
            scores = score_map(lm, run, ex.raw, ex.target.index, progress=progress)
        return Result(run, ex, method, time.perf_counter() - t0, scores)

    def compare(self, image: Any, models: list[str] | None = None, method: str = "cam",
                target: int | str | None = None, top_k: int = 5, progress: ProgressFn | None = None,
                faithfulness: bool = False) -> Comparison:
        """Every depth on one image; CAMs for one class (default: the one most depths pick).

        With ``faithfulness``, each depth's map is scored too (about 40 forwards per depth).
        """
        names = models or [s.name for s in self.zoo.builtin_depths]
        specs = [self.zoo.get(n) for n in names]
        get_method(method)
        loaded = _decoded(image)
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
            run = self._timed(classify(lm, loaded, top_k, prepared[pre]))
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
            scores = None
            if faithfulness:
                if progress:
                    progress(None, f"{run.model}: scoring its map ({2 * STEPS - 1} forwards)")
                scores = score_map(lm, run, ex.raw, idx)
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
        loaded = _decoded(image)  # decoded once for every depth
        for i, spec in enumerate(specs):
            lm = self.cache.get(spec, progress)
            yield analyze(lm, loaded, target, lesion=lesion, deletions=deletions,
                          progress=_share(progress, i, len(specs)))

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
        loaded = _decoded(image)
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
                     progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                     ) -> Iterator[batching.ImageResult | batching.Skipped | batching.Progress | batching.BatchResult]:
        """Many images (files, folders, globs, a zip) through ``models`` (default: every depth).

        Yields each ``Skipped`` file and ``ImageResult`` as it is done, ``Progress`` before
        each forward, then the ``BatchResult`` (see ``zoo.batch.stream``). Closing the
        generator stops the work.
        """
        specs = list(dict.fromkeys(self.zoo.get(n) for n in (models or [s.name for s in self.zoo.builtin_depths])))
        # Inputs first: a bad path or an unsafe zip fails before seconds are spent on weights.
        inp = batching.gather(sources, names=names, labels_csv=labels_csv, max_images=max_images, globs=globs)
        lms = [self.cache.get(spec, progress) for spec in specs]
        yield from batching.stream(inp, lms, top_k=top_k, batch_size=batch_size, thumbnails=thumbnails,
                                   progress=progress, cancel=cancel, keep_images=keep_images)

    def batch(self, sources: Sequence[str | os.PathLike], models: list[str] | None = None,
              **kwargs: Any) -> batching.BatchResult:
        """``batch_stream`` to the end: the ``BatchResult``."""
        result = None
        for result in self.batch_stream(sources, models, **kwargs):
            pass
        assert isinstance(result, batching.BatchResult)
        return result

    def _priced(self, passes: dict[str, float]) -> Estimate:
        """An ``Estimate`` from forward-pass equivalents per model, priced by ``forward_seconds``."""
        forwards = sum(passes.values())
        seconds: float | None = 0.0
        bases = []
        for name, n in passes.items():
            timed = self.forward_seconds(name) if seconds is not None else None
            if timed is None:
                seconds = None
            else:
                seconds += n * timed[0]
                bases.append(timed[1])
        if seconds is None:
            return Estimate(math.ceil(forwards), None, "no forward timed on this device yet")
        basis = bases[0] if len(set(bases)) == 1 else "each model's forward measured here or scaled by multiply-adds"
        return Estimate(math.ceil(forwards), seconds, basis)

    def analyze_estimate(self, models: Sequence[str] | None = None, lesion: bool = False) -> Estimate:
        """The cost of ``analyze`` (Depth lab) for ``models``, before running it.

        Per model: the signal pass (one forward and one backward, three forwards' worth);
        with ``lesion`` (which the app runs with the deletions), one more clean forward and
        every lesioned variant from its first deleted block on, in forwards' worth (block
        counts over the number of blocks). Statistics run in fp32, so on a machine whose
        classification runs in bf16 the seconds are a low estimate.
        """
        names = list(models or [s.name for s in self.zoo.builtin_depths])
        return self._priced({name: _analysis_passes(self.zoo.get(name).arch.name, lesion) for name in names})

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
        return self._priced({name: float(n) for name in names_})

    def rank_estimate(self, model: str, methods: Sequence[str] | None = None) -> Estimate:
        """The cost of ``iter_rank`` (Method ranking), before running it: one classification,
        then each method's map (at its defaults, Score-CAM over the last stage's channels) and
        its deletion and insertion scores."""
        from .explain import stage_channels

        spec = self.zoo.get(model)
        size = spec.preprocessing.crop
        passes = 1
        for name in dict.fromkeys(methods or RANK_DEFAULT):
            params = {"channels": stage_channels(spec.arch, None)} if name == "scorecam" else {}
            passes += get_method(name).forwards(params, size) + 2 * STEPS - 1
        return self._priced({model: float(passes)})


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


def _decoded(image: Any) -> LoadedImage:
    """Decode once: a ``LoadedImage`` passes through, anything else goes to ``load_image``."""
    return image if isinstance(image, LoadedImage) else load_image(image)


def _share(progress: ProgressFn | None, i: int, n: int) -> ProgressFn | None:
    """``progress`` for the ``i``-th of ``n`` equal parts of a job."""
    if progress is None:
        return None
    return lambda fraction, message: progress(None if fraction is None else (i + fraction) / n, message)


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
