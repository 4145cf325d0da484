"""A folder under every corruption: each image's crops through the models (``stream``), and the
accuracy, corruption errors and mCE per model (``FolderSummary``). The corruptions and the plan:
``zoo.robustness``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import params
from .robustness import (CLEAN, DEFAULT_SEED, SEVERITIES, Meter, ProgressFn, RobustnessPlan, corruption_names,
                         get_corruption, severity_list)


@dataclass
class SampleResult:
    """One image's clean or corrupted crop through every model (one executor ``Scored``)."""

    index: int
    name: str
    corruption: str  # CLEAN for the clean crop
    severity: int  # 0 for the clean crop
    seed: int
    label: int | None
    top_idx: np.ndarray  # (M, k) int32, models in the run's order
    top_p: np.ndarray  # (M, k) float32

    def correct(self, m: int, k: int = 1) -> bool | None:
        return None if self.label is None else bool(self.label in self.top_idx[m, :k])

    def records(self, models: Sequence[str], labels: tuple[str, ...], top_k: int = 5) -> Iterator[dict[str, Any]]:
        """The JSON lines: one object per model, with the top-k and, when labelled, correct/correct_top5."""
        for m, name in enumerate(models):
            yield {"file": self.name, "model": name, "corruption": self.corruption, "severity": self.severity,
                   "seed": self.seed, "label": labels[self.label] if self.label is not None else None,
                   "label_index": self.label, "correct": self.correct(m, 1), "correct_top5": self.correct(m, 5),
                   "predictions": [{"index": int(i), "label": labels[int(i)], "prob": round(float(p), 6)}
                                   for i, p in zip(self.top_idx[m, :top_k], self.top_p[m, :top_k])]}


@dataclass
class FolderSummary:
    """A folder's accuracy under each corruption, its corruption errors, and mCE per model.

    ``accuracy[m, c, s]``: top-1 accuracy of model m on corruption c at severity s (labelled images
    only). CE (Hendrycks & Dietterich): CE[m, c] = sum_s error[m, c, s] / sum_s error[ref, c, s],
    ``reference`` being the shallowest model of the run; mCE[m] = mean_c CE[m, c] over the
    corruptions of the run. ``ce_alexnet``/``mce_alexnet``: the same normalised by AlexNet's
    published errors (15 benchmark corruptions only; None unless the labels are ImageNet classes
    and all five severities ran).
    """

    models: tuple[str, ...]
    depths: tuple[int, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    images: int  # images scored
    labelled: int
    clean_accuracy: np.ndarray  # (M,)
    accuracy: np.ndarray  # (M, C, S)
    top5_accuracy: np.ndarray  # (M, C, S)
    reference: str
    ce: np.ndarray  # (M, C), NaN where the reference made no error
    mce: np.ndarray  # (M,)
    ce_alexnet: np.ndarray | None = None  # (M, C'), C' = the run's benchmark corruptions
    mce_alexnet: np.ndarray | None = None  # (M,)
    alexnet_corruptions: tuple[str, ...] = ()
    skipped: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    partial: bool = False
    forward_s: np.ndarray | None = None  # (M,) batched forward seconds per crop, measured (as Sweep's)
    corrupt_ratio: float | None = None  # seconds spent corrupting / the table's prediction
    # (M, C, S): the share of images whose top-1 under the corruption differs from their clean
    # top-1 (labels not needed; the folder version of the sweep's breaking points).
    changed: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        def num(x: Any) -> float | None:
            return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)

        out: dict[str, Any] = {
            "models": list(self.models), "depths": list(self.depths),
            "corruptions": list(self.corruptions), "severities": list(self.severities), "seed": self.seed,
            "images": self.images, "labelled": self.labelled, "reference": self.reference,
            "clean_accuracy": {m: num(self.clean_accuracy[i]) for i, m in enumerate(self.models)},
            "accuracy": {m: {c: {str(s): num(self.accuracy[i, j, k]) for k, s in enumerate(self.severities)}
                             for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "top5_accuracy": {m: {c: {str(s): num(self.top5_accuracy[i, j, k])
                                      for k, s in enumerate(self.severities)}
                                  for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "ce": {m: {c: num(self.ce[i, j]) for j, c in enumerate(self.corruptions)}
                   for i, m in enumerate(self.models)},
            "mce": {m: num(self.mce[i]) for i, m in enumerate(self.models)},
            "top1_changed": None if self.changed is None else {
                m: {c: {str(s): num(self.changed[i, j, k]) for k, s in enumerate(self.severities)}
                    for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "ce_alexnet": None, "mce_alexnet": None,
            "skipped": [{"file": s.name, "reason": s.reason} for s in self.skipped],
            "notes": self.notes, "seconds": round(self.seconds, 3), "device": self.device,
            "precision": self.precision, "partial": self.partial,
        }
        if self.ce_alexnet is not None and self.mce_alexnet is not None:
            out["ce_alexnet"] = {m: {c: num(self.ce_alexnet[i, j]) for j, c in enumerate(self.alexnet_corruptions)}
                                 for i, m in enumerate(self.models)}
            out["mce_alexnet"] = {m: num(self.mce_alexnet[i]) for i, m in enumerate(self.models)}
        return out


class _FolderTally:
    """Running counts of a folder run: correct top-1/top-5 per (model, corruption, severity)."""

    def __init__(self, m: int, c: int, s: int):
        self.correct = np.zeros((m, c, s), dtype=np.int64)
        self.correct5 = np.zeros((m, c, s), dtype=np.int64)
        self.count = np.zeros((c, s), dtype=np.int64)
        self.clean_correct = np.zeros(m, dtype=np.int64)
        self.clean_count = 0
        self.names: set[int] = set()
        self.labelled: set[int] = set()
        self.changed = np.zeros((m, c, s), dtype=np.int64)
        self.changed_n = np.zeros((c, s), dtype=np.int64)
        self.clean_top1: dict[int, np.ndarray] = {}
        self.waiting: dict[int, list[tuple[int, int, np.ndarray]]] = {}  # corrupted crops scored before the clean one

    def add(self, r: SampleResult, corruptions: Sequence[str], severities: Sequence[int]) -> None:
        self.names.add(r.index)
        top1 = r.top_idx[:, 0]
        if r.corruption == CLEAN:
            self.clean_top1[r.index] = top1
            for c, s, t in self.waiting.pop(r.index, []):
                self._changed(c, s, t, top1)
        else:
            c, s = corruptions.index(r.corruption), severities.index(r.severity)
            if r.index in self.clean_top1:
                self._changed(c, s, top1, self.clean_top1[r.index])
            else:
                self.waiting.setdefault(r.index, []).append((c, s, top1))
        if r.label is None:
            return
        self.labelled.add(r.index)
        hit1 = (r.top_idx[:, :1] == r.label).any(axis=1)
        hit5 = (r.top_idx[:, :5] == r.label).any(axis=1)
        if r.corruption == CLEAN:
            self.clean_correct += hit1
            self.clean_count += 1
            return
        c, s = corruptions.index(r.corruption), severities.index(r.severity)
        self.correct[:, c, s] += hit1
        self.correct5[:, c, s] += hit5
        self.count[c, s] += 1

    def _changed(self, c: int, s: int, top1: np.ndarray, clean: np.ndarray) -> None:
        self.changed[:, c, s] += top1 != clean
        self.changed_n[c, s] += 1


def _summary(tally: _FolderTally, models: Sequence[str], depths: Sequence[int], corruptions: Sequence[str],
             severities: Sequence[int], seed: int, imagenet: bool) -> FolderSummary:
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tally.correct / tally.count[None]
        acc5 = tally.correct5 / tally.count[None]
        clean = tally.clean_correct / tally.clean_count if tally.clean_count else np.full(len(models), np.nan)
        err = 1.0 - acc
        ref = min(range(len(models)), key=lambda m: depths[m]) if models else 0
        err_sum = err.sum(axis=2)  # (M, C)
        ce = err_sum / err_sum[ref][None]
        ce[:, err_sum[ref] == 0] = np.nan
        mce = np.nanmean(ce, axis=1) if ce.size and np.isfinite(ce).any() else np.full(len(models), np.nan)
        ce_a = mce_a = None
        bench = tuple(c for c in corruptions if get_corruption(c).imagenet_c)
        if imagenet and bench and tuple(severities) == SEVERITIES:
            idx = [corruptions.index(c) for c in bench]
            alex = np.array([get_corruption(c).alexnet_error for c in bench])
            ce_a = err[:, idx].mean(axis=2) / alex[None]
            mce_a = ce_a.mean(axis=1)
    notes = []
    if imagenet and bench and tuple(severities) != SEVERITIES:
        notes.append("CE normalised by AlexNet needs all five severities (its published errors are their mean).")
    with np.errstate(invalid="ignore", divide="ignore"):
        changed = tally.changed / tally.changed_n[None]
    return FolderSummary(tuple(models), tuple(depths), tuple(corruptions), tuple(severities), seed,
                         len(tally.names), len(tally.labelled), clean, acc, acc5, models[ref] if models else "",
                         ce, mce, ce_a, mce_a, bench if ce_a is not None else (), notes=notes, changed=changed)


# --- the run -----------------------------------------------------------------------------------

def stream(executor: Any, inp: Any, *, corruptions: Sequence[str] | None = None,
           severities: Sequence[int] | None = None, seed: int = DEFAULT_SEED, save_dir: str | Path | None = None,
           top_k: int = 5, batch_size: int | None = None, progress: ProgressFn | None = None,
           partial_every_s: float | None = None,
           ) -> Iterator[SampleResult | Any]:
    """A folder (``zoo.batch.BatchInput``) through ``executor``: yields ``zoo.batch.Skipped`` files,
    one ``SampleResult`` per (image, corruption or clean, severity) as it is scored,
    ``zoo.batch.Progress``, partial ``FolderSummary``s with ``partial_every_s``, then the final
    ``FolderSummary``."""
    from .batch import Scored, resolve_labels
    from .batch.executor import no_images, reported
    from .cancel import check
    from .models import imagenet_labels

    names = corruption_names(corruptions)
    sevs = severity_list(severities)
    seed = params.seed(seed)
    labels = tuple(executor.labels)
    models, depths = tuple(executor.names), tuple(executor.depths)
    targets, label_notes = resolve_labels(inp.items, labels)
    keep = max(1, min(max(int(top_k), 5), len(labels)))
    plan = RobustnessPlan(tuple(dict.fromkeys(executor.preprocessings)), names, sevs, seed, dict(enumerate(targets)),
                          save_dir=Path(save_dir) if save_dir is not None else None)
    imagenet = labels == imagenet_labels()
    tally = _FolderTally(len(models), len(names), len(sevs))
    meter = Meter(len(models))
    skipped = list(inp.skipped)
    yield from inp.skipped
    t0 = last = time.perf_counter()

    def summary(partial: bool) -> FolderSummary:
        s = _summary(tally, models, depths, names, sevs, seed, imagenet)
        s.skipped, s.notes = list(skipped), [*inp.notes, *label_notes, *s.notes]
        s.seconds, s.device, s.precision, s.partial = time.perf_counter() - t0, executor.device, \
            executor.precision, partial
        s.forward_s, s.corrupt_ratio = meter.forward_s(), meter.ratio()
        return s

    for event in reported(executor.run(list(enumerate(inp.items)), plan, keep_k=keep,
                                       batch_size=batch_size or executor.default_batch_size()), skipped, progress):
        if not isinstance(event, Scored):
            yield event
            continue
        meta = event.sample.meta
        r = SampleResult(event.sample.index, event.item.name, meta["corruption"], meta["severity"], meta["seed"],
                         event.sample.target, event.top_idx, event.top_p)
        tally.add(r, names, sevs)
        meter.add(event)
        yield r
        check()
        if partial_every_s is not None and time.perf_counter() - last >= partial_every_s:
            last = time.perf_counter()
            yield summary(True)
    if not tally.names:
        raise no_images(len(inp.items), skipped, "used")
    if progress:
        progress(1.0, f"done: {len(tally.names)} images")
    yield summary(False)
