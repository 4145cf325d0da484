"""A batch run: every model over every image, through an executor (``executor.py``).

``stream`` yields ``Skipped`` and ``ImageResult`` as images are done, partial and final
``BatchResult``s; how the forwards run (here, or on a Ray cluster) is the executor's
business. Memory stays bounded: each image leaves behind its top-k only (plus a small
thumbnail when asked for).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from PIL import Image

from ..cancel import Cancelled
from ..images import load_image, model_crop, to_tensor
from ..models import LoadedModel
from ..registry import Preprocessing
from .executor import Executor, LocalExecutor, Plan, Progress, Sample, Scored, no_images, reported
from .inputs import BatchInput, Item, Skipped
from .labels import resolve_labels
from .results import BatchResult, ImageResult, Tally

ProgressFn = Callable[[float | None, str], None]


@dataclass
class BatchPlan(Plan):
    """One sample per image: decoded once, preprocessed once per distinct preprocessing."""

    pres: tuple[Preprocessing, ...]
    targets: Sequence[int | None]  # each item's label index (by item index), or None
    thumbnail: int = 0  # side of a thumbnail of what the first model saw; 0: none

    def keys(self, index: int, item: Item) -> list[tuple]:
        return [(item.name,)]

    def load(self, index: int, item: Item, data: Path | bytes) -> Sample:
        loaded = load_image(data, name=item.name)
        tensors, thumb = {}, None
        for pre in self.pres:
            crop = model_crop(loaded.image, pre)
            tensors[pre] = to_tensor(crop, pre)[0]
            if self.thumbnail and thumb is None:
                thumb = crop.resize((self.thumbnail, self.thumbnail), Image.Resampling.BILINEAR)
        return Sample(index, (item.name,), tensors, self.targets[index],
                      {"thumbnail": thumb, "notes": loaded.notes})

    def sample(self, loaded: Sample, index: int, key: tuple) -> Sample:
        return loaded  # decoding is the whole preparation


def image_result(s: Scored) -> ImageResult:
    return ImageResult(s.sample.index, s.item.name, s.sample.target, s.top_idx, s.top_p, s.target_p,
                       s.item.source, s.sample.meta.get("thumbnail"), list(s.sample.meta.get("notes", [])))


@contextlib.contextmanager
def _counted(say: Callable[[], str]) -> Iterator[None]:
    """A stop (``zoo.cancel.Cancelled``) inside the block says how far the batch got."""
    try:
        yield
    except Cancelled as e:
        raise Cancelled(f"{e} {say()}", e.reason) from None


def executor_of(models: Sequence[LoadedModel] | Executor, workers: int | None = None) -> Executor:
    """Models of this process run here; an executor is used as it is."""
    if isinstance(models, (list, tuple)):
        return LocalExecutor(models, workers)
    return models  # type: ignore[return-value]


def stream(inp: BatchInput, models: Sequence[LoadedModel] | Executor, *, top_k: int = 5,
           batch_size: int | None = None, workers: int | None = None, thumbnails: int = 0,
           progress: ProgressFn | None = None, keep_images: bool = True, partial_every_s: float | None = None,
           ) -> Iterator[ImageResult | Skipped | Progress | BatchResult]:
    """Every model over every item: yields ``Skipped`` and ``ImageResult`` as they are done
    (in input order with the local executor; and ``Progress`` before each forward), then
    the ``BatchResult``. ``models``: loaded models (run here) or an ``Executor``.

    With ``partial_every_s``, also a ``BatchResult`` with ``partial=True`` of the images done
    so far, at most that often: a front end shows it, and keeps it when the run is stopped.
    The request's cancellation token (``zoo.cancel``) is checked before every forward;
    closing the generator stops the work too."""
    ex = executor_of(models, workers)
    labels = ex.labels
    targets, label_notes = resolve_labels(inp.items, labels)
    keep = max(1, min(max(int(top_k), 5), len(labels)))  # top-5 accuracy needs five, whatever is shown
    top_k = max(1, min(int(top_k), keep))
    bs = max(1, int(batch_size or ex.default_batch_size()))
    plan = BatchPlan(tuple(dict.fromkeys(ex.preprocessings)), targets, thumbnails)
    tally = Tally(ex.names, ex.depths, keep_images)
    skipped = list(inp.skipped)
    yield from inp.skipped
    total = len(inp.items)
    t_start = last_partial = time.perf_counter()

    def result(partial: bool) -> BatchResult:
        return tally.result(labels, top_k, list(skipped) if partial else skipped, inp.notes + label_notes,
                            ex.device, ex.precision, bs, time.perf_counter() - t_start, partial=partial,
                            precision_note=getattr(ex, "precision_note", ""))

    with _counted(lambda: f"{tally.n + len(skipped) - len(inp.skipped)} of {total} images were done."):
        for event in reported(ex.run(list(enumerate(inp.items)), plan, keep_k=keep, batch_size=bs), skipped,
                              progress):
            if isinstance(event, Progress):
                # Partial results between chunks, before the next forward: a consumer that
                # stops the run on one keeps exactly what it was shown.
                if partial_every_s is not None and tally.n and time.perf_counter() - last_partial >= partial_every_s:
                    last_partial = time.perf_counter()
                    yield result(partial=True)
            if not isinstance(event, Scored):
                yield event
                continue
            img = image_result(event)
            tally.add(img, event.seconds)
            yield img
    if tally.n == 0:
        raise no_images(total, skipped)
    if progress:
        progress(1.0, f"done: {tally.n} images")
    yield result(partial=False)


def run(inp: BatchInput, models: Sequence[LoadedModel] | Executor, **kwargs: Any) -> BatchResult:
    """``stream`` to the end; the ``BatchResult``."""
    result = None
    for result in stream(inp, models, **kwargs):
        pass
    assert isinstance(result, BatchResult)
    return result
