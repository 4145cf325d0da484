"""One entry point for front ends: classify + explain one model, or compare depths.

The app, its API and the load script all call ``Explorer``; it owns the read-only
zoo and the locked model cache, and keeps no per-request state.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from . import batch as batching
from .errors import ZooError
from .explain import Explanation, explain, get_method
from .hub import ProgressFn
from .images import load_image
from .inference import Classification, classify, resolve_target
from .models import ModelCache, precision_name
from .registry import Zoo


@dataclass
class Result:
    """One model's classification and explanation of one image."""

    run: Classification
    explanation: Explanation
    method: str
    seconds: float  # model fetch excluded: classify + explain

    def to_json(self) -> dict[str, Any]:
        t = self.explanation.target
        return {**self.run.to_json(), "method": self.method,
                "target": {"index": t.index, "label": t.label, "prob": t.prob},
                "shape": list(self.explanation.raw.shape),
                "seconds": round(self.seconds, 4), "notes": self.run.notes}


@dataclass
class Comparison:
    """Several depths on one image, explained for one shared target class."""

    results: list[Result]
    target: int
    target_label: str
    agreement: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"target": {"index": self.target, "label": self.target_label}, "agreement": self.agreement,
                "models": [r.to_json() for r in self.results]}


class Explorer:
    def __init__(self, zoo: Zoo, device: str = "auto", cache_size: int | None = None,
                 cache_dir: str | os.PathLike | None = None, precision: str | None = None):
        self.zoo = zoo
        # Default (ZOO_MODEL_CACHE, 5) holds all five depths, so "compare" never reloads.
        self.cache = ModelCache(cache_size, device, cache_dir, precision)

    @property
    def device(self) -> str:
        return str(self.cache.device)

    @property
    def precision(self) -> str:
        return precision_name(self.cache.precision)

    def run(self, image: Any, model: str, top_k: int = 5, method: str = "cam", target: int | str | None = None,
            progress: ProgressFn | None = None, **params: Any) -> Result:
        spec = self.zoo.get(model)
        get_method(method)
        loaded = load_image(image)  # check the upload before fetching weights
        lm = self.cache.get(spec, progress)
        t0 = time.perf_counter()
        run = classify(lm, loaded, top_k)
        ex = explain(lm, run, method, target, **params)
        return Result(run, ex, method, time.perf_counter() - t0)

    def compare(self, image: Any, models: list[str] | None = None, method: str = "cam",
                target: int | str | None = None, top_k: int = 5, progress: ProgressFn | None = None) -> Comparison:
        """Every depth on one image; CAMs for one class (default: the one most depths pick)."""
        names = models or [s.name for s in self.zoo.builtin_depths]
        specs = [self.zoo.get(n) for n in names]
        get_method(method)
        loaded = load_image(image)
        runs: list[tuple[Any, Classification, float]] = []
        for i, spec in enumerate(specs):
            if progress:
                progress(i / len(specs), f"{spec.name}: classifying ({i + 1} of {len(specs)})")
            lm = self.cache.get(spec, progress)
            t0 = time.perf_counter()
            run = classify(lm, loaded, top_k)
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
            results.append(Result(run, ex, method, secs + time.perf_counter() - t0))
        if progress:
            progress(1.0, "done")
        return Comparison(results, idx, labels[idx], agreement(results))

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
    majority, n = votes.most_common(1)[0] if votes else (None, 0)
    return {
        "models": len(results),
        "top1_majority": majority,
        "top1_majority_count": n,
        "top1_unanimous": len(votes) == 1,
        "top5_common": sorted(common),
        "top1": {r.run.model: r.run.predictions[0].index for r in results},
    }
