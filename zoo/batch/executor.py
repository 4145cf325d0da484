"""How the forwards run: the one seam between a run over many inputs and the hardware.

A run (``zoo batch``, the robustness sweep, a folder of corrupted images) is described
by a ``Plan``: which samples each input item gives (one per image for a batch; the clean
crop and one per corruption and severity for robustness) and how to make them. An
``Executor`` runs every sample of every item through every model and hands back one
``Scored`` (top-k per model) per sample. ``LocalExecutor`` runs here: a thread pool
prepares samples ahead while batched forwards run; ``zoo.batch.ray_executor`` runs the
same plan on a Ray cluster. Whatever runs the forwards, the records and summaries are
built from ``Scored`` by the same code.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

from ..cancel import check
from ..errors import ImageError, ZooError
from ..models import LoadedModel
from ..registry import Preprocessing
from .inputs import Item, NoImagesError, Reader, Skipped


@dataclass(frozen=True)
class Progress:
    """How far the run is, yielded before each model's forward on each chunk: a consumer
    that is itself a generator (a web handler) can be stopped there."""

    fraction: float
    message: str


@dataclass
class Sample:
    """One input to the models: an image, or (robustness) one corrupted version of it."""

    index: int  # the item's position in the run's item list
    key: tuple  # JSON-able and unique in the run: (name,) for a batch; (name, corruption, severity) ...
    tensors: dict[Preprocessing, torch.Tensor]  # normalised (3, H, W) float32, one per distinct preprocessing
    target: int | None = None  # a class whose probability every model also reports (a label)
    meta: dict[str, Any] = field(default_factory=dict)  # small, picklable; handed back with the result


class Plan:
    """What to make of each input item; picklable, since a Ray executor prepares samples in
    CPU tasks on other machines. ``load`` runs once per item, ``sample`` once per key."""

    pres: tuple[Preprocessing, ...]  # distinct preprocessings of the run's models
    noun: str = "images"  # what a sample is called in progress messages

    def keys(self, index: int, item: Item) -> list[tuple]:
        """The keys of the samples this item will give, without reading it (``--resume``)."""
        raise NotImplementedError

    def load(self, index: int, item: Item, data: Path | bytes) -> Any:
        """Decode the item once (raise ``ImageError``/``ZooError`` for a file it cannot use)."""
        raise NotImplementedError

    def sample(self, loaded: Any, index: int, key: tuple) -> Sample:
        """One sample of a loaded item; runs in a pool thread (or a Ray task)."""
        raise NotImplementedError

    def describe(self, sample: Sample) -> str:
        """A few words on what is running, for progress ("fog, severity 3")."""
        return ""


@dataclass
class Scored:
    """One sample through every model of the run."""

    sample: Sample  # tensors dropped
    item: Item
    top_idx: np.ndarray  # (M, k) int32, M = the executor's models in order
    top_p: np.ndarray  # (M, k) float32
    target_p: np.ndarray | None  # (M,) float32 when sample.target is not None
    seconds: np.ndarray  # (M,) this sample's share of each model's forward seconds


@dataclass
class Failed:
    """An item none of whose samples could be made (unreadable, not an image)."""

    index: int
    item: Item
    reason: str


class Executor(Protocol):
    names: tuple[str, ...]  # model names, in the order of Scored's rows
    depths: tuple[int, ...]
    preprocessings: tuple[Preprocessing, ...]  # each model's
    labels: tuple[str, ...]
    device: str
    precision: str
    weights: tuple[float, ...]  # each model's relative cost (multiply-adds), for progress

    def default_batch_size(self) -> int: ...

    def run(self, items: Sequence[tuple[int, Item]], plan: Plan, *, keep_k: int,
            batch_size: int) -> Iterator[Scored | Failed | Progress]:
        """Every sample of every item through every model."""
        ...


def reported(events: Iterator[Scored | Failed | Progress], skipped: list[Skipped],
             progress: Callable[[float | None, str], None] | None = None) -> Iterator[Scored | Skipped | Progress]:
    """An executor's events as every run consumes them: each ``Progress`` also goes to
    ``progress``; each ``Failed`` item becomes a ``Skipped`` file, added to ``skipped``."""
    for event in events:
        if isinstance(event, Progress):
            if progress:
                progress(event.fraction, event.message)
        elif isinstance(event, Failed):
            event = Skipped(event.item.name, event.reason)
            skipped.append(event)
        yield event


def no_images(total: int, skipped: Sequence[Skipped], what: str = "classified") -> NoImagesError:
    """The error of a run none of whose ``total`` files could be used, naming the first reasons."""
    why = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3])
    return NoImagesError(f"None of the {total} file(s) could be {what} ({why}{'; …' if len(skipped) > 3 else ''}).")


def default_batch_size(device: torch.device) -> int:
    """Large enough to fill the device, small enough to keep memory modest."""
    return {"cuda": 64, "mps": 32}.get(device.type, 16)


@torch.inference_mode()
def classify_batch(lm: LoadedModel, x: torch.Tensor, k: int,
                   targets: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Top-``k`` (indices, probabilities) of a normalised CPU batch (N, 3, H, W), and the
    probability of each ``targets`` class (-1: none)."""
    _, logits = lm.forward(lm.to_input(x))
    probs = torch.softmax(logits, dim=1)
    top = torch.topk(probs, k, dim=1)
    target_p = None
    if targets is not None:
        target_p = probs.gather(1, targets.to(probs.device).clamp(min=0)[:, None])[:, 0].cpu().numpy()
    return top.indices.cpu().numpy(), top.values.cpu().numpy(), target_p


def same_labels(names: Sequence[str], labels: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The one label set of the run's models (a run compares models on the same classes)."""
    if not names:
        raise ZooError("Pick at least one model.")
    if any(lab != labels[0] for lab in labels):
        raise ZooError(f"Models {', '.join(names)} do not share one label set; run models that predict "
                       "the same classes together.")
    return labels[0]


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA …"
    s = int(round(seconds))
    return f"ETA {s} s" if s < 90 else f"ETA {s // 60} min {s % 60:02d} s"


class Work:
    """Counts work done, weighting each model by its multiply-adds, so the ETA holds while
    cheap and expensive depths take turns on each chunk."""

    def __init__(self, total_samples: int, weights: Sequence[float]):
        self.weights = list(weights)
        self.total = total_samples * sum(self.weights) or 1.0
        self.done = 0.0
        self.t0 = time.perf_counter()

    def add(self, m: int, samples: int) -> None:
        self.done += self.weights[m] * samples

    def progress(self, what: str) -> Progress:
        frac = min(1.0, self.done / self.total)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed * (1 - frac) / frac if frac > 0 else None
        return Progress(frac, f"{what} · {eta_text(eta)}")


def _reason(message: str, name: str) -> str:
    """"x.png is not an image ..." -> "not an image ...": the file is named beside it."""
    if message.startswith(name + " "):
        message = message[len(name) + 1:].removeprefix("is ")
    return message


class LocalExecutor:
    """The models of this process, batched forwards on their device.

    A thread pool reads and decodes items and makes their samples (corrupting crops, for
    robustness) up to ``ahead`` chunks in advance, so that work overlaps the forwards
    (torch releases the GIL) and memory stays bounded. Results come back in input order.
    The request's token (``zoo.cancel``) is checked before every forward.
    """

    def __init__(self, models: Sequence[LoadedModel], workers: int | None = None, ahead: int = 2):
        self.models = list(models)
        self.names = tuple(lm.spec.name for lm in self.models)
        self.labels = same_labels(self.names, [lm.labels for lm in self.models])
        self.depths = tuple(lm.spec.depth for lm in self.models)
        self.preprocessings = tuple(lm.spec.preprocessing for lm in self.models)
        self.weights = tuple(lm.spec.arch.paper_flops for lm in self.models)
        self.device = str(self.models[0].device)
        # One precision, or each model's where zoo.autotune measured them differently; and why.
        precisions = {lm.precision_name for lm in self.models}
        self.precision = precisions.pop() if len(precisions) == 1 else ", ".join(
            f"{lm.spec.name} {lm.precision_name}" for lm in self.models)
        notes = list(dict.fromkeys(lm.precision_note for lm in self.models))
        self.precision_note = notes[0] if len(notes) == 1 else "; ".join(
            f"{lm.spec.name}: {lm.precision_note}" for lm in self.models)
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.ahead = ahead

    def default_batch_size(self) -> int:
        return default_batch_size(self.models[0].device)

    def _prepared(self, pool: ThreadPoolExecutor, reader: Reader, items: Sequence[tuple[int, Item]],
                  plan: Plan, window: int) -> Iterator[tuple[int, Item, Future[Sample] | Failed]]:
        """(item, a sample being made or the item's failure), in input order; loads run up to
        ``window`` items ahead and samples up to ``window`` ahead of what is consumed."""

        def load(index: int, item: Item) -> Any:
            return plan.load(index, item, reader.read(item))

        loads: deque[tuple[int, Item, Future[Any]]] = deque()
        todo = iter(items)

        def fill_loads() -> None:
            while len(loads) < window:
                nxt = next(todo, None)
                if nxt is None:
                    return
                loads.append((nxt[0], nxt[1], pool.submit(load, nxt[0], nxt[1])))

        fill_loads()
        while loads:
            index, item, fut = loads.popleft()
            try:
                loaded = fut.result()
            except (ImageError, ZooError) as e:
                yield index, item, Failed(index, item, _reason(str(e), item.name))
                fill_loads()
                continue
            fill_loads()
            for key in plan.keys(index, item):
                yield index, item, pool.submit(plan.sample, loaded, index, key)

    def run(self, items: Sequence[tuple[int, Item]], plan: Plan, *, keep_k: int,
            batch_size: int) -> Iterator[Scored | Failed | Progress]:
        bs = max(1, int(batch_size))
        total = sum(len(plan.keys(i, it)) for i, it in items)
        work = Work(total, self.weights)
        window = bs * (self.ahead + 1)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="zoo-prepare")
        done = 0
        try:
            with Reader() as reader:
                source = self._prepared(pool, reader, items, plan, window)
                pending: deque[tuple[int, Item, Future[Sample] | Failed]] = deque()
                exhausted = False
                bad: set[int] = set()
                while True:
                    while not exhausted and len(pending) < window:
                        nxt = next(source, None)
                        if nxt is None:
                            exhausted = True
                        elif nxt[0] not in bad:
                            pending.append(nxt)
                    if not pending:
                        break
                    if isinstance(pending[0][2], Failed):
                        yield pending.popleft()[2]  # type: ignore[misc]
                        continue
                    chunk: list[tuple[Item, Sample]] = []
                    failed: Failed | None = None
                    while pending and len(chunk) < bs and not isinstance(pending[0][2], Failed):
                        index, item, fut = pending.popleft()
                        try:
                            chunk.append((item, fut.result()))  # type: ignore[union-attr]
                        except (ImageError, ZooError) as e:
                            failed = Failed(index, item, _reason(str(e), item.name))
                            break
                    if chunk:
                        yield from self._forward(chunk, plan, keep_k, work, done, total)
                        done += len(chunk)
                    if failed is not None:
                        # A sample that cannot be made fails its item. Its samples already
                        # scored stay (they were made); the rest are dropped. Samples of this
                        # item still to come from ``source`` are dropped as they arrive.
                        bad.add(failed.index)
                        pending = deque(p for p in pending if p[0] != failed.index)
                        yield failed
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _forward(self, chunk: list[tuple[Item, Sample]], plan: Plan, keep_k: int, work: Work, done: int,
                 total: int) -> Iterator[Scored | Progress]:
        samples = [s for _, s in chunk]
        tgt = None
        if any(s.target is not None for s in samples):
            tgt = torch.tensor([-1 if s.target is None else s.target for s in samples])
        stacked: dict[Preprocessing, torch.Tensor] = {}
        outs, secs = [], []
        what = plan.describe(samples[-1])
        for m, lm in enumerate(self.models):
            check()
            yield work.progress(f"{lm.spec.name}: {done + len(chunk)} of {total} {plan.noun}"
                                + (f" · {what}" if what else ""))
            check()  # the consumer may have stopped the run while it had the progress
            pre = lm.spec.preprocessing
            if pre not in stacked:
                stacked[pre] = torch.stack([s.tensors[pre] for s in samples])
            t0 = time.perf_counter()
            outs.append(classify_batch(lm, stacked[pre], keep_k, tgt))
            secs.append((time.perf_counter() - t0) / len(chunk))
            work.add(m, len(chunk))
        seconds = np.array(secs, dtype=np.float64)
        for j, (item, s) in enumerate(chunk):
            s.tensors = {}  # the result holds top-k, not the input
            yield Scored(s, item,
                         np.stack([o[0][j] for o in outs]).astype(np.int32),
                         np.stack([o[1][j] for o in outs]).astype(np.float32),
                         np.array([o[2][j] for o in outs], dtype=np.float32)
                         if tgt is not None and s.target is not None else None,
                         seconds)
