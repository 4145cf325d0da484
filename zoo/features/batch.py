"""Batch: many images (files, folders, globs, a zip) through every chosen depth, and, asked
for, the decision "which depth should I ship?" (``zoo.decision``) from the per-image records.

``run`` yields each ``Skipped`` file and ``ImageResult`` as it is done, ``Progress`` before
each forward, partial ``BatchResult``s, then the final ``BatchResult`` (with its
``decision`` when ``Request.decide``). Its ``to_json()`` is the one JSON of the feature: the
last line of ``python -m zoo batch --json``, the ``/batch`` endpoint's JSON.

``executor`` is the one way a batch or robustness run gets the engine of its forwards
(``zoo.batch``'s seam): local models of the runtime's cache, or what a front end made
(the command line's ``--engine ray`` and ``--out FILE.jsonl``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from .. import batch as batching
from .. import params
from ..costs import Estimate, with_decoding
from ..hub import ProgressFn
from ..registry import ModelSpec
from . import last

ExecutorArg = batching.Executor | Callable[[list[ModelSpec]], batching.Executor] | None


@dataclass(frozen=True)
class Request:
    """One batch run; ``create`` validates what a form, argparse or a REST payload sent."""

    sources: tuple[str | os.PathLike, ...]
    models: tuple[str, ...]
    names: tuple[str, ...] | None = None  # the visitor's file names of uploads (the app's)
    labels_csv: str | os.PathLike | None = None
    top_k: int = 5
    batch_size: int | None = None
    max_images: int | None = None
    globs: bool = False
    thumbnails: int = 0
    keep_images: bool = True
    partial_every_s: float | None = None
    # "Which depth should I ship?" (zoo.decision)
    decide: bool = False
    max_ms: float | None = None
    level: float = params.DECISION_LEVEL
    corruptions: tuple[str, ...] = ()
    severities: tuple[int, ...] = (3,)
    seed: int = 0

    @classmethod
    def create(cls, rt: Any, sources: Sequence[str | os.PathLike], models: Sequence[str] | None = None, *,
               names: Sequence[str] | None = None, top_k: Any = 5, batch_size: Any = None, max_ms: Any = None,
               level: Any = params.DECISION_LEVEL, corruptions: Sequence[str] | None = None,
               severities: Sequence[Any] | None = None, seed: Any = 0, **rest: Any) -> Request:
        """Every value checked before any file is read or weights fetched."""
        cs, sevs = params.corruptions(corruptions, severities)
        return cls(tuple(sources), tuple(params.model_names(rt.zoo, models)),
                   None if names is None else tuple(names), top_k=params.top_k(top_k),
                   batch_size=params.batch_size(batch_size), max_ms=params.max_ms(max_ms),
                   level=params.level(level), corruptions=cs, severities=sevs, seed=params.seed(seed), **rest)

    def gathered(self, labels: bool = True) -> batching.BatchInput:
        """The inputs, listed (a zip's members too), nothing decoded; raises for what a run refuses."""
        return batching.gather(self.sources, names=self.names, labels_csv=self.labels_csv if labels else None,
                               max_images=self.max_images, globs=self.globs)


def executor(rt: Any, models: Sequence[str] | None = None, executor: ExecutorArg = None,
             progress: ProgressFn | None = None) -> batching.Executor:
    """What runs the forwards of a batch or robustness run over ``models`` (default: every
    depth): ``executor`` as given, or made from the models' specs when it is a function of
    them (the command line's ``--engine ray``, ``--out``); by default a
    ``zoo.batch.LocalExecutor`` over the runtime's cached models."""
    specs = list(dict.fromkeys(rt.zoo.get(n) for n in params.model_names(rt.zoo, models)))
    if executor is None:
        return batching.LocalExecutor([rt.cache.get(spec, progress) for spec in specs])
    return executor(specs) if callable(executor) else executor


def estimate(rt: Any, req: Request) -> Estimate:
    """The cost of ``run`` before it runs: one forward per image and model, plus the decision's.

    The images are counted as the run counts them (a zip's members are listed, nothing is
    decoded); raises ``ZooError`` for what the run would refuse, such as more than
    ``max_images``. With ``decide``: the batch-1 latency probes and one forward per image,
    corruption and severity. The seconds rest on single-image forwards: batched ones usually
    cost less per image, so they are an upper estimate.
    """
    from ..decision import extra_forwards

    inp = req.gathered(labels=False)
    n = len(inp.items)
    per_model = float(n + (extra_forwards(n, len(req.corruptions) * len(req.severities)) if req.decide else 0))
    est = rt.costs.priced({name: per_model for name in req.models})
    if req.decide and req.corruptions and est.seconds is not None:
        from dataclasses import replace

        from ..robustness import corruption_seconds

        # Making the corrupted crops (once per image, whatever the models), as the robustness lab prices it.
        est = replace(est, seconds=est.seconds + n * corruption_seconds(req.corruptions, req.severities),
                      basis=est.basis + "; corrupting the crops priced from the corruptions' measured times")
    return with_decoding(est, batching.decode_seconds(inp.items))


def run(rt: Any, req: Request, progress: ProgressFn | None = None, executor_: ExecutorArg = None,
        ) -> Iterator[batching.ImageResult | batching.Skipped | batching.Progress | batching.BatchResult]:
    """The batch, its events as they come, then the final ``BatchResult`` (with its decision).

    The request's token (``zoo.cancel``) or closing the generator stops the work.
    ``executor_``: another engine (see ``executor``); default: this process's cache.
    """
    # Inputs first: a bad path or an unsafe zip fails before seconds are spent on weights.
    inp = req.gathered()
    ex = executor(rt, req.models, executor_, progress)
    collect = None
    if req.decide:
        from ..decision import Collector

        collect = Collector(list(ex.names))
    result = None
    for event in batching.stream(inp, ex, top_k=req.top_k, batch_size=req.batch_size,
                                 thumbnails=req.thumbnails, progress=progress, keep_images=req.keep_images,
                                 partial_every_s=req.partial_every_s):
        if isinstance(event, batching.BatchResult) and not event.partial:
            result = event
            continue
        if collect is not None and isinstance(event, batching.ImageResult):
            collect.add(event)
        yield event
    assert result is not None
    if collect is not None:
        result.decision = decide(rt, req, ex, inp, result, collect, progress)
    yield result


def result(rt: Any, req: Request, progress: ProgressFn | None = None,
           executor_: ExecutorArg = None) -> batching.BatchResult:
    """``run`` to the end: the ``BatchResult``."""
    return last(run(rt, req, progress, executor_))


# --- the decision's measurements (zoo.decision computes the statistics) -----------------------

def decide(rt: Any, req: Request, ex: batching.Executor, inp: batching.BatchInput, res: batching.BatchResult,
           collect: Any, progress: ProgressFn | None = None) -> Any:
    """The decision of a finished run: its records' statistics, the cost measured here, the
    corruptions when asked for, and the registry's published ImageNet figures beside them."""
    from .. import decision
    from ..cancel import check

    inner = getattr(ex, "inner", ex)  # a journal's engine: probes and corruptions are not journalled
    rec = collect.records()
    check()
    if progress:
        progress(None, "Which depth should I ship? Timing each depth at batch 1")
    ms1 = probe_batch1(inner, inp)
    cost = {}
    peak = peak_mb(inner)
    for i, s in enumerate(res.per_model):
        spec = rt.zoo.get(s.name)
        stats = _model_stats(spec)
        cost[s.name] = {"ms_batch1": ms1.get(s.name), "ms_per_image": 1000 * s.seconds / s.images if s.images else None,
                        "images_per_s": s.images_per_s, "peak_mb": peak, "batch_size": res.batch_size,
                        "params": stats[0], "macs": stats[1], "mode": _mode(inner, i)}
    robust = None
    if req.corruptions and rec.n:
        if progress:
            progress(None, f"Which depth should I ship? Accuracy under {', '.join(req.corruptions)}")
        robust = corrupted(inner, inp, req, list(ex.names), progress)
    published = {s.name: _published(rt.zoo.get(s.name)) for s in res.per_model}
    return decision.build(rec, cost, seed=req.seed, level=req.level, budget_ms=req.max_ms, published=published,
                          robustness=robust)


def probe_batch1(ex: batching.Executor, inp: batching.BatchInput) -> dict[str, float]:
    """Milliseconds per image at batch 1 for each model: the median of the first images' forwards
    (the first one a warm-up, not counted), through the run's own engine."""
    from statistics import median

    from ..decision import PROBE_IMAGES

    items = list(enumerate(inp.items[:PROBE_IMAGES]))
    plan = batching.BatchPlan(tuple(dict.fromkeys(ex.preprocessings)), [None] * len(inp.items))
    times: list[Any] = []
    for event in ex.run(items, plan, keep_k=1, batch_size=1):
        if isinstance(event, batching.Scored):
            times.append(event.seconds)
    if not times:
        return {}
    counted = times[1:] or times
    return {name: 1000 * float(median(t[m] for t in counted)) for m, name in enumerate(ex.names)}


def peak_mb(ex: batching.Executor) -> float | None:
    """The peak memory of the forwards: CUDA's allocated peak on a GPU, else this process's peak RSS
    (None for a Ray engine: its forwards ran in other processes)."""
    import resource
    import sys

    if not isinstance(ex, batching.LocalExecutor):
        return None
    if ex.device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2 ** 20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)  # bytes on macOS, KiB on Linux


def _mode(ex: batching.Executor, m: int) -> str:
    models = getattr(ex, "models", None)
    if models is None:
        return "eager"  # a Ray actor's models run eager (zoo.batch.ray_executor)
    return "compiled" if models[m].compiled is not None else "eager"


def _model_stats(spec: ModelSpec) -> tuple[int | None, int | None]:
    from ..stats import model_stats

    try:
        s = model_stats(spec.arch.name, spec.preprocessing.crop, spec.num_classes)
    except ValueError:
        return None, None
    return s.params, s.macs


def _published(spec: ModelSpec) -> Any:
    pub = getattr(spec, "published", None)
    return pub.to_json() if pub is not None else None


def corrupted(ex: batching.Executor, inp: batching.BatchInput, req: Request, models: list[str],
              progress: ProgressFn | None) -> dict[str, Any]:
    """Each model's top-1 under the corruptions and severities (the Robustness lab's), seeded, through
    the run's engine; the labelled images only, in input order."""
    import numpy as np

    from .. import robustness_folder as rb
    from ..decision import corrupted_accuracy

    rows: dict[tuple[str, int], dict[int, list[bool]]] = {}
    for event in rb.stream(ex, inp, corruptions=req.corruptions, severities=req.severities, seed=req.seed,
                           batch_size=req.batch_size, progress=progress):
        if isinstance(event, rb.SampleResult) and event.label is not None and event.severity > 0:
            rows.setdefault((event.corruption, event.severity), {})[event.index] = [
                bool(event.correct(m)) for m in range(len(models))]
    right = {key: np.array([r[i] for i in sorted(r)], dtype=bool).reshape(-1, len(models))
             for key, r in rows.items()}
    return corrupted_accuracy(right, models, req.seed)
