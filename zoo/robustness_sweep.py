"""One image under every corruption: the sweep (``sweep_stream``, ``Sweep``, its ``Verdict``) and
the live view of one corruption (``Live``). The corruptions and the plan: ``zoo.robustness``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from . import params
from .errors import ZooError
from .robustness import (CLEAN, DEFAULT_SEED, Meter, ProgressFn, RobustnessPlan, corruption_label,
                         corruption_names, dense, get_corruption, severity_list)


@dataclass(frozen=True)
class Verdict:
    """The sweep in one sentence, as data: the most and the least robust depth on one corruption.

    "ResNet-152 kept tabby through fog 4; ResNet-18 lost it at fog 2": ``best`` kept its clean
    top-1 (``best_label``) through severity ``best_kept_through`` (the highest severity before its
    top-1 first changes; the highest tested when it never does, then ``best_lost_at`` is None);
    ``worst`` lost its own at ``worst_lost_at``. ``same``: every depth broke at the same severity
    (or none broke), so depth made no difference here.
    """

    corruption: str
    corruption_label: str
    best: str
    best_label: str
    best_kept_through: int
    best_lost_at: int | None
    worst: str
    worst_label: str
    worst_kept_through: int
    worst_lost_at: int | None
    same: bool

    def sentence(self) -> str:
        """Plain English (the CLI's wording; a front end may format the fields its own way)."""
        c = self.corruption_label.lower() if self.corruption_label != "JPEG" else "JPEG"

        def part(model: str, label: str, kept: int, lost: int | None, again: bool = False) -> str:
            what = "it" if again else label
            if lost is None:
                return f"{model} kept {what} through {c} {kept}"
            if kept == 0:
                return f"{model} lost {what} at {c} {lost}"
            return f"{model} kept {what} through {c} {kept} and lost it at {lost}"

        if self.same:
            who = "every depth"
            if self.best_lost_at is None:
                return f"Every depth kept its answer through {c} {self.best_kept_through}."
            return f"Every depth lost its answer at {c} {self.best_lost_at}: {who} broke at the same severity."
        same_label = self.best_label == self.worst_label
        best = part(self.best, self.best_label, self.best_kept_through, self.best_lost_at)
        if self.worst_lost_at is not None:
            worst = f"{self.worst} lost {'it' if same_label else self.worst_label} at {c} {self.worst_lost_at}"
        else:
            worst = part(self.worst, self.worst_label, self.worst_kept_through, None, same_label)
        return f"{best}; {worst}."

    def to_json(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "sentence": self.sentence()}


def _consensus(top1: np.ndarray, top1_p: np.ndarray) -> int:
    """The class most depths rank first; ties go to the higher mean probability of their top-1."""
    classes = [int(c) for c in top1]
    votes = {c: classes.count(c) for c in classes}
    return max(votes, key=lambda c: (votes[c], float(np.mean([p for k, p in zip(classes, top1_p) if k == c]))))


@dataclass
class Sweep:
    """Every depth x corruption x severity on one image. Partial while the sweep runs
    (``done`` < ``total``): cells not yet scored are NaN (``target_p``, ``top1_p``) and -1 (``top1``).

    Arrays are indexed [model, corruption, severity index] in the order of ``models``,
    ``corruptions`` and ``severities``. ``target`` is the class whose probability the heatmap
    and the line chart show: given, or the class most depths pick on the clean crop.
    """

    models: tuple[str, ...]
    depths: tuple[int, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    labels: tuple[str, ...]
    seed: int
    target: int
    chosen: str  # "given" or "consensus"
    clean_top1: np.ndarray  # (M,) int: each depth's top-1 on the clean crop
    clean_top1_p: np.ndarray  # (M,) its probability
    clean_target_p: np.ndarray  # (M,) the target's probability on the clean crop
    top1: np.ndarray  # (M, C, S) int, -1 where not done
    top1_p: np.ndarray  # (M, C, S) float, NaN where not done
    target_p: np.ndarray  # (M, C, S) float, NaN where not done
    done: int = 0  # corrupted crops scored by every model
    total: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    # Measured on this sweep, for the estimates: each model's batched forward seconds per crop,
    # and the seconds spent corrupting over what the table (``Corruption.seconds``) predicts.
    forward_s: np.ndarray | None = None  # (M,)
    corrupt_ratio: float | None = None

    @property
    def partial(self) -> bool:
        return self.done < self.total

    @property
    def target_label(self) -> str:
        return self.labels[self.target]

    def _m(self, model: int | str) -> int:
        return self.models.index(model) if isinstance(model, str) else int(model)

    def _c(self, corruption: int | str) -> int:
        return self.corruptions.index(get_corruption(corruption).name) if isinstance(corruption, str) \
            else int(corruption)

    def breaking_point(self, model: int | str, corruption: int | str) -> int | None:
        """The lowest severity at which this depth's top-1 differs from its clean top-1 (None: it
        never changes among the severities scored so far)."""
        m, c = self._m(model), self._c(corruption)
        clean = int(self.clean_top1[m])
        if clean < 0:
            return None
        for si, s in enumerate(self.severities):
            got = int(self.top1[m, c, si])
            if got >= 0 and got != clean:
                return s
        return None

    def breaking_points(self) -> np.ndarray:
        """(M, C) int: ``breaking_point`` of every depth and corruption, 0 where it never breaks."""
        out = np.zeros((len(self.models), len(self.corruptions)), dtype=np.int64)
        for m in range(len(self.models)):
            for c in range(len(self.corruptions)):
                out[m, c] = self.breaking_point(m, c) or 0
        return out

    def kept_through(self, model: int | str, corruption: int | str) -> int:
        """The highest severity this depth reached with its clean top-1 intact (0: lost at the first tested)."""
        m, c = self._m(model), self._c(corruption)
        bp = self.breaking_point(m, c)
        scored = [s for si, s in enumerate(self.severities) if self.top1[m, c, si] >= 0]
        if bp is None:
            return max(scored, default=0)
        return max((s for s in scored if s < bp), default=0)

    def verdict(self, corruption: str | None = None) -> Verdict | None:
        """The sentence's data for ``corruption`` (default: the one where the depths' breaking
        points differ most); None before any corrupted crop of it is scored."""
        if int(self.clean_top1.min(initial=0)) < 0 or not len(self.models):
            return None

        def complete(c: int) -> bool:
            return bool((self.top1[:, c, :] >= 0).all())

        if corruption is None:
            ready = [c for c in range(len(self.corruptions)) if complete(c)]
            if not ready:
                return None
            spread = {c: (max(k := [self.kept_through(m, c) for m in range(len(self.models))]) - min(k))
                      for c in ready}
            c = max(ready, key=lambda i: (spread[i], -i))
        else:
            c = self._c(corruption)
            if not (self.top1[:, c, :] >= 0).any():
                return None
        kept = [self.kept_through(m, c) for m in range(len(self.models))]
        lost = [self.breaking_point(m, c) for m in range(len(self.models))]
        # The most robust: kept longest (ties: the deeper); the least: kept shortest (ties: the shallower).
        order = sorted(range(len(self.models)), key=lambda m: (kept[m], lost[m] is None, self.depths[m]))
        worst, best = order[0], order[-1]
        name = self.corruptions[c]
        return Verdict(name, corruption_label(name), self.models[best], self.labels[int(self.clean_top1[best])], kept[best],
                       lost[best], self.models[worst], self.labels[int(self.clean_top1[worst])], kept[worst],
                       lost[worst], kept[best] == kept[worst] and (lost[best] is None) == (lost[worst] is None))

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if not math.isfinite(float(x)) else round(float(x), 6)

        bps = self.breaking_points()
        verdict = self.verdict()
        return {
            "models": list(self.models), "depths": list(self.depths),
            "corruptions": [{"name": c, "label": corruption_label(c)} for c in self.corruptions],
            "severities": list(self.severities), "seed": self.seed,
            "target": {"index": self.target, "label": self.target_label, "chosen": self.chosen},
            "clean": {m: {"top1": int(self.clean_top1[i]),
                          "top1_label": self.labels[int(self.clean_top1[i])] if self.clean_top1[i] >= 0 else None,
                          "top1_prob": num(self.clean_top1_p[i]), "target_prob": num(self.clean_target_p[i])}
                      for i, m in enumerate(self.models)},
            "target_prob": {m: {c: [num(v) for v in self.target_p[i, j]] for j, c in enumerate(self.corruptions)}
                            for i, m in enumerate(self.models)},
            "top1": {m: {c: [int(v) if v >= 0 else None for v in self.top1[i, j]]
                         for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "breaking_point": {m: {c: (int(bps[i, j]) or None) for j, c in enumerate(self.corruptions)}
                               for i, m in enumerate(self.models)},
            "verdict": verdict.to_json() if verdict else None,
            "done": self.done, "total": self.total, "partial": self.partial,
            "seconds": round(self.seconds, 3), "device": self.device, "precision": self.precision,
        }


@dataclass
class SweepProgress:
    """Yielded between batches: how far the sweep is and which corruption is running."""

    fraction: float
    message: str
    corruption: str | None = None


# --- one image, one corruption: live ------------------------------------------------------------

@dataclass
class Live:
    """Every selected depth on one corrupted crop (and, when asked, each depth's map of it).

    ``results[i]`` is a ``zoo.features.classify.Result`` (classification + explanation) when a map method
    was given, else a ``zoo.inference.Classification``. ``crop`` is the corrupted crop the
    first model saw; ``clean`` the clean one.
    """

    corruption: str
    severity: int
    seed: int
    crop: Image.Image
    clean: Image.Image
    target: int
    target_label: str
    results: list[Any]
    method: str | None = None

    def classifications(self) -> list[Any]:
        return [getattr(r, "run", r) for r in self.results]

    def to_json(self) -> dict[str, Any]:
        runs = self.classifications()
        return {"corruption": self.corruption, "label": corruption_label(self.corruption), "severity": self.severity,
                "seed": self.seed, "method": self.method,
                "target": {"index": self.target, "label": self.target_label},
                "models": [{**(r.to_json() if hasattr(r, "explanation") else run.to_json()),
                            "target_prob": float(run.probs[self.target])}
                           for r, run in zip(self.results, runs)]}


# --- the run -----------------------------------------------------------------------------------

def sweep_stream(executor: Any, image: Image.Image, *, name: str = "image", corruptions: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, seed: int = DEFAULT_SEED, target: int | str | None = None,
                 batch_size: int | None = None, progress: ProgressFn | None = None,
                 ) -> Iterator[SweepProgress | Sweep]:
    """Every corruption x severity of one image through ``executor``'s models (a
    ``zoo.batch.LocalExecutor``): yields ``SweepProgress`` before each forward, a partial
    ``Sweep`` after each batch (as the next one starts), then the finished ``Sweep``. ``zoo.cancel.check()`` runs between batches (and the
    executor checks before each forward), so a Stop ends it there."""
    from .batch import Failed, Item, Progress, Scored
    from .cancel import check
    from .inference import resolve_target

    names = corruption_names(corruptions)
    sevs = severity_list(severities)
    seed = params.seed(seed)
    labels = tuple(executor.labels)
    given = None if target is None or (isinstance(target, str) and not target.strip()) \
        else resolve_target(labels, target, 0)
    models, depths = tuple(executor.names), tuple(executor.depths)
    M, C, S = len(models), len(names), len(sevs)
    plan = RobustnessPlan(tuple(dict.fromkeys(executor.preprocessings)), names, sevs, seed, image=image.convert("RGB"))
    # The plan holds the decoded image and never reads the item's bytes; the executor only
    # checks that its source exists, so any existing file serves.
    item = Item(name, Path(__file__))
    probs: dict[tuple[str, int], np.ndarray] = {}
    meter = Meter(M)
    total = C * S
    t0 = time.perf_counter()

    def state() -> Sweep:
        clean = probs.get((CLEAN, 0))
        ct1 = clean.argmax(axis=1) if clean is not None else np.full(M, -1)
        ct1p = clean.max(axis=1) if clean is not None else np.full(M, np.nan)
        tgt = given if given is not None else (_consensus(ct1, ct1p) if clean is not None else 0)
        top1 = np.full((M, C, S), -1, dtype=np.int64)
        top1_p = np.full((M, C, S), np.nan)
        target_p = np.full((M, C, S), np.nan)
        done = 0
        for (c, s), p in probs.items():
            if c == CLEAN:
                continue
            i, j = names.index(c), sevs.index(s)
            top1[:, i, j] = p.argmax(axis=1)
            top1_p[:, i, j] = p.max(axis=1)
            target_p[:, i, j] = p[:, tgt]
            done += 1
        return Sweep(models, depths, names, sevs, labels, seed, tgt, "given" if given is not None else "consensus",
                     ct1, ct1p, clean[:, tgt] if clean is not None else np.full(M, np.nan), top1, top1_p, target_p,
                     done, total, time.perf_counter() - t0, executor.device, executor.precision,
                     meter.forward_s(), meter.ratio())

    running: str | None = CLEAN
    fresh = False  # scored crops not yet shown in a partial Sweep
    for event in executor.run([(0, item)], plan, keep_k=len(labels),
                              batch_size=batch_size or executor.default_batch_size()):
        if isinstance(event, Progress):  # before a forward; its message names the crops in the batch
            if fresh:  # the previous batch is scored: show it before the next one runs
                fresh = False
                yield state()
            if progress:
                progress(event.fraction, event.message)
            yield SweepProgress(event.fraction, event.message, running)
            continue
        if isinstance(event, Failed):
            raise ZooError(f"{name}: {event.reason}")
        assert isinstance(event, Scored)
        c, s = event.sample.meta["corruption"], event.sample.meta["severity"]
        probs[(c, s)] = dense(event.top_idx, event.top_p, len(labels))
        meter.add(event)
        running = next((x for x in names if any((x, v) not in probs for v in sevs)), None)
        fresh = True
        check()
    if progress:
        progress(1.0, "done")
    yield state()
