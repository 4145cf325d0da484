"""Robustness lab: which depth still sees the cat through fog, noise and JPEG (ImageNet-C).

Three requests, one module (``zoo.features``' contract for each):

* ``LiveRequest``: one corruption at one severity on one image, every depth's answer and,
  with a method, its map of the corrupted crop (result: ``zoo.robustness_sweep.Live``);
* ``SweepRequest``: every corruption x severity x depth on one image (``Sweep``);
* ``Request``: a folder (files, folders, globs, a zip, read as Batch reads them) under the
  chosen corruptions: accuracy, CE and mCE per depth (``FolderSummary``).

The engines stay where they are: ``zoo.robustness`` (corruptions, the executor's plan),
``zoo.robustness_sweep`` and ``zoo.robustness_folder`` (the runs and their results).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .. import batch as batching
from .. import params
from .. import robustness as rb
from ..cancel import check
from ..costs import Estimate, with_decoding
from ..explain import get_method
from ..hub import ProgressFn
from ..images import to_tensor
from ..inference import Prepared, classify, prepare, resolve_target
from ..registry import Preprocessing
from ..robustness_folder import FolderSummary, SampleResult, stream
from ..robustness_sweep import Live, Sweep, sweep_stream
from ..runtime import Runtime, decoded
from . import last
from .batch import executor  # the one seam batch and robustness share
from .classify import Result, calibrate_map, map_estimate
from .compare import consensus, shared_labels

DEFAULT_CORRUPTION = "fog"
DEFAULT_SEVERITY = 3
UNIT = "robustness"  # the cost model's per-crop unit (batched forwards measured by a sweep or folder run)


def _blank(target: Any) -> Any:
    """A target left blank (None, "", spaces) means "the class most depths pick"."""
    return None if target is None or (isinstance(target, str) and not target.strip()) else target


def _names(rt: Runtime, models: Sequence[str] | str | None) -> tuple[str, ...]:
    return tuple(params.model_names(rt.zoo, models))


@dataclass(frozen=True)
class LiveRequest:
    """One corrupted crop (severity 0: the clean one) through every depth, with maps if ``method``."""

    image: Any
    models: tuple[str, ...]
    corruption: str
    severity: int
    method: str | None = None
    target: int | str | None = None
    seed: int = rb.DEFAULT_SEED
    top_k: int = 5

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, models: Sequence[str] | None = None,
               corruption: str | None = DEFAULT_CORRUPTION, severity: Any = DEFAULT_SEVERITY,
               method: str | None = None, target: int | str | None = None, seed: Any = rb.DEFAULT_SEED,
               top_k: Any = 5) -> LiveRequest:
        method = method or None
        if method:
            get_method(method)
        return cls(image, _names(rt, models), rb.get_corruption(corruption or DEFAULT_CORRUPTION).name,
                   rb.check_severity(severity), method, _blank(target), params.seed(seed), params.top_k(top_k))


@dataclass(frozen=True)
class SweepRequest:
    """Every corruption x severity x depth on one image."""

    image: Any
    models: tuple[str, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    target: int | str | None = None
    seed: int = rb.DEFAULT_SEED
    batch_size: int | None = None

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, models: Sequence[str] | None = None,
               corruptions: Sequence[str] | str | None = None, severities: Sequence[int] | None = None,
               target: int | str | None = None, seed: Any = rb.DEFAULT_SEED,
               batch_size: int | None = None) -> SweepRequest:
        return cls(image, _names(rt, models), rb.corruption_names(corruptions), rb.severity_list(severities),
                   _blank(target), params.seed(seed), batch_size)


@dataclass(frozen=True)
class Request:
    """A folder under the chosen corruptions (the ``/robustness`` endpoint, ``zoo robustness``)."""

    sources: tuple[str | os.PathLike, ...]
    models: tuple[str, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    names: tuple[str, ...] | None = None  # the files' names as the visitor knows them (uploads)
    labels_csv: str | os.PathLike | None = None
    seed: int = rb.DEFAULT_SEED
    save_dir: str | os.PathLike | None = None
    top_k: int = 5
    batch_size: int | None = None
    max_images: int | None = None
    globs: bool = False  # the command line expands globs; uploads are files
    partial_every_s: float | None = None

    @classmethod
    def create(cls, rt: Runtime, sources: Sequence[str | os.PathLike] = (), models: Sequence[str] | None = None,
               corruptions: Sequence[str] | str | None = None, severities: Sequence[int] | None = None,
               seed: Any = rb.DEFAULT_SEED, top_k: Any = 5, names: Sequence[str] | None = None,
               **rest: Any) -> Request:
        return cls(tuple(sources), _names(rt, models), rb.corruption_names(corruptions),
                   rb.severity_list(severities), None if names is None else tuple(names), seed=params.seed(seed),
                   top_k=params.top_k(top_k), **rest)


AnyRequest = LiveRequest | SweepRequest | Request


# --- what it costs ---------------------------------------------------------------------------

def estimate(rt: Runtime, req: AnyRequest) -> Estimate:
    """The cost of any of the three, before it runs (the page's figure, the gate's, ZeroGPU's)."""
    if isinstance(req, LiveRequest):
        return _live_estimate(rt, req)
    if isinstance(req, SweepRequest):
        return _crops_estimate(rt, req.models, req.corruptions, req.severities, images=1)
    return _crops_estimate(rt, req.models, req.corruptions, req.severities, sources=req.sources, names=req.names,
                           max_images=req.max_images)


def _crops_estimate(rt: Runtime, models: Sequence[str], corruptions: Sequence[str], severities: Sequence[int], *,
                    images: int = 1, sources: Sequence[str | os.PathLike] | None = None,
                    names: Sequence[str] | None = None, max_images: int | None = None) -> Estimate:
    """A sweep (one image) or a folder run.

    Forwards: per image and model, the clean crop and one per (corruption, severity), priced at
    the batched cost per crop an earlier run measured here, else at the model's forward
    (single-image forwards cost more: an upper estimate); plus making the corrupted crops, at
    each corruption's measured cost per distinct preprocessing, scaled by how far earlier runs
    here were from it. Corrupting overlaps the forwards, so the sum is an upper estimate. With
    ``sources`` the images are counted as ``batch`` counts them (``max_images`` refused as there).
    """
    decode_s = 0.0
    if sources is not None:
        items = batching.gather(sources, names=names, max_images=max_images, globs=False).items
        images, decode_s = len(items), batching.decode_seconds(items)
    n = max(0, int(images))
    crops = n * (1 + len(corruptions) * len(severities))
    est = rt.costs.priced({name: float(crops) for name in models}, unit=UNIT,
                          unit_basis="an earlier sweep's batched forwards measured here",
                          passes_count=crops * len(models))
    if est.seconds is None:
        return with_decoding(est, decode_s)
    ratio = rt.costs.ratio("corrupting")
    pres = list(dict.fromkeys(rt.zoo.get(m).preprocessing for m in models))
    corrupt_s = n * sum(rb.corruption_seconds(corruptions, severities, p.crop) for p in pres) * (ratio or 1.0)
    basis = est.basis + "; corruptions at their cost " + ("as measured here" if ratio else "in the table")
    return with_decoding(Estimate(est.forwards, est.seconds + corrupt_s, basis, est.models, est.passes), decode_s)


def _live_estimate(rt: Runtime, req: LiveRequest) -> Estimate:
    """One corrupted crop, each model's forward and, with a method, its map; a corrupted crop is
    classified clean too (the default target is the clean consensus)."""
    names = list(req.models)
    est = map_estimate(rt, names, req.method) if req.method else rt.costs.priced({n: 1.0 for n in names})
    clean = rt.costs.priced({n: 1.0 for n in names}) if req.severity else Estimate(0, 0.0, "")
    pres = list(dict.fromkeys(rt.zoo.get(n).preprocessing for n in names))
    corrupt_s = sum(rb.corruption_seconds([req.corruption], [req.severity], p.crop)
                    for p in pres) if req.severity else 0.0
    seconds = None if est.seconds is None or clean.seconds is None else est.seconds + clean.seconds + corrupt_s
    return Estimate(est.forwards + clean.forwards, seconds, est.basis, models=len(names),
                    passes=(est.passes or est.forwards) + clean.forwards)


# --- the runs ---------------------------------------------------------------------------------

def run(rt: Runtime, req: AnyRequest, progress: ProgressFn | None = None, executor: Any = None) -> Iterator[Any]:
    """The work as events, ending with the result (a ``Live``, a ``Sweep`` or a ``FolderSummary``).

    ``executor`` (a folder run): another engine over the models (a ``zoo.batch.Executor``),
    or a function of their specs that makes one once the inputs are known to be usable (the
    command line's ``--engine ray``, ``--out``); default: this process's cached models.
    """
    if isinstance(req, LiveRequest):
        yield live(rt, req, progress)
    elif isinstance(req, SweepRequest):
        yield from _sweep(rt, req, progress)
    else:
        yield from _folder(rt, req, progress, executor)


def result(rt: Runtime, req: AnyRequest, progress: ProgressFn | None = None, executor: Any = None) -> Any:
    """``run`` to its end: the result."""
    return last(run(rt, req, progress, executor))


def preview(rt: Runtime, req: LiveRequest) -> Any:
    """The corrupted crop ``live`` would show (the first model's, the same seed), as a PIL image,
    without running any model: a preview while the settings change."""
    clean = prepare(decoded(req.image), rt.zoo.get(req.models[0]).preprocessing)
    return rb.corrupt_crop(clean.crop, req.corruption, req.severity, _crop_seed(req))


def _crop_seed(req: LiveRequest) -> int:
    """As a sweep seeds the same cell (``zoo.robustness.sample_seed``); the clean crop needs none."""
    return rb.sample_seed(req.seed, "image", req.corruption, req.severity) if req.severity else 0


def _remember(rt: Runtime, result: Sweep | FolderSummary) -> None:
    """A finished sweep or folder run prices the next one (``estimate``)."""
    if result.forward_s is not None:
        for name, sec in zip(result.models, result.forward_s):
            rt.costs.remember(UNIT, name, sec)
    rt.costs.remember_ratio("corrupting", result.corrupt_ratio)


def _sweep(rt: Runtime, req: SweepRequest, progress: ProgressFn | None) -> Iterator[Any]:
    """``zoo.robustness_sweep.sweep_stream``: ``SweepProgress``, partial ``Sweep``s, then the final one.
    The request's token or closing the generator stops it."""
    loaded = decoded(req.image)  # a bad upload fails before any download
    ex = executor(rt, req.models, progress=progress)
    if req.target is not None:
        resolve_target(ex.labels, req.target, 0)
    for event in sweep_stream(ex, loaded.image, corruptions=req.corruptions, severities=req.severities,
                              seed=req.seed, target=req.target, batch_size=req.batch_size, progress=progress):
        if isinstance(event, Sweep) and not event.partial:
            _remember(rt, event)
        yield event


def _folder(rt: Runtime, req: Request, progress: ProgressFn | None, given: Any) -> Iterator[Any]:
    """``zoo.robustness_folder.stream``: ``Skipped``, one ``SampleResult`` per (image, corruption,
    severity), ``Progress``, partial ``FolderSummary``s with ``partial_every_s``, then the final one."""
    # Inputs first: a bad path or an unsafe zip fails before seconds are spent on weights.
    inp = batching.gather(req.sources, names=req.names, labels_csv=req.labels_csv, max_images=req.max_images,
                          globs=req.globs)
    ex = executor(rt, req.models, given, progress)
    for event in stream(ex, inp, corruptions=req.corruptions, severities=req.severities, seed=req.seed,
                        save_dir=req.save_dir, top_k=req.top_k, batch_size=req.batch_size, progress=progress,
                        partial_every_s=req.partial_every_s):
        if isinstance(event, FolderSummary) and not event.partial:
            _remember(rt, event)
        yield event


def live(rt: Runtime, req: LiveRequest, progress: ProgressFn | None = None) -> Live:
    """Every depth on the corrupted crop; with a method, each depth's map of it for one class
    (given, else the class most depths pick on the clean crop), so a front end can show
    whether the map drifts before the answer flips."""
    specs = [rt.zoo.get(n) for n in req.models]
    loaded = decoded(req.image)
    seed = _crop_seed(req)
    prepared: dict[Preprocessing, tuple[Prepared, Prepared]] = {}
    for pre in dict.fromkeys(s.preprocessing for s in specs):
        clean = prepare(loaded, pre)
        crop = rb.corrupt_crop(clean.crop, req.corruption, req.severity, seed)
        prepared[pre] = (clean, Prepared(crop, to_tensor(crop, pre)))
    runs, cleans = [], []
    for i, spec in enumerate(specs):
        check()
        if progress:
            progress(i / (2 * len(specs)), f"{spec.name}: classifying ({i + 1} of {len(specs)})")
        lm = rt.cache.get(spec, progress)
        clean, bad = prepared[spec.preprocessing]
        cleans.append(classify(lm, loaded, req.top_k, clean) if req.severity else None)
        runs.append((lm, rt.costs.timed(classify(lm, loaded, req.top_k, bad))))
    labels = shared_labels([r for _, r in runs])
    idx = resolve_target(labels, req.target, default=consensus([c or r for c, (_, r) in zip(cleans, runs)]))
    results: list[Any] = []
    for i, (lm, run_) in enumerate(runs):
        check()
        if not req.method:
            results.append(run_)
            continue
        if progress:
            progress(0.5 + i / (2 * len(runs)), f"{run_.model}: its map of the corrupted crop")
        results.append(_explained(rt, lm, run_, req.method, idx))
    if progress:
        progress(1.0, "done")
    first = prepared[specs[0].preprocessing]
    return Live(req.corruption, req.severity, seed, first[1].crop, first[0].crop, idx, labels[idx], results,
                req.method)


def _explained(rt: Runtime, lm: Any, run_: Any, method: str, idx: int) -> Result:
    """One depth's map of the corrupted crop, timed into the estimates, as a classify ``Result``."""
    from ..explain import explain

    t0 = time.perf_counter()
    ex = explain(lm, run_, method, idx)
    calibrate_map(rt, ex, lm.spec)
    return Result(run_, ex, method, run_.seconds + time.perf_counter() - t0)


# --- the one JSON-lines form of a folder run (the CLI's --json, the page's download) -------------

def labels_of(rt: Runtime, models: Sequence[str]) -> tuple[str, ...]:
    """The class names a run's records name (its models share one label set)."""
    return tuple(rt.zoo.get(models[0]).class_names)


def record_lines(sample: SampleResult, models: Sequence[str], labels: tuple[str, ...], top_k: int = 5) -> list[str]:
    """One JSON line per model for one scored crop."""
    return [json.dumps(r) for r in sample.records(models, labels, top_k)]


def folder_json(summary: FolderSummary) -> dict[str, Any]:
    """The one JSON of a folder run: ``{"summary": <the summary's to_json()>}`` (the command line's last
    ``--json`` line, the ``/robustness`` endpoint's JSON), as a batch run's."""
    return {"summary": summary.to_json()}


def summary_line(summary: FolderSummary) -> str:
    """The last line: ``folder_json``."""
    return json.dumps(folder_json(summary))


def json_lines(samples: Sequence[SampleResult], summary: FolderSummary, labels: tuple[str, ...],
               top_k: int = 5) -> str:
    """A whole run as the command line's ``--json`` prints it: every prediction, then the summary."""
    lines = [line for s in samples for line in record_lines(s, summary.models, labels, top_k)]
    return "".join(line + "\n" for line in [*lines, summary_line(summary)])

