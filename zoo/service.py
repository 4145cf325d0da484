"""The features' old entry point: only the batch methods are left, until zoo.features.batch lands."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Sequence

from . import batch as batching
from .costs import Estimate, with_decoding
from .hub import ProgressFn
from .registry import ModelSpec
from .runtime import Runtime


class Explorer(Runtime):
    """The features' old entry point, kept while front ends move to ``zoo.features``."""

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


