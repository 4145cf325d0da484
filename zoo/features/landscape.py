"""Error surfaces: the loss around each depth's trained weights (engine: zoo.landscape, Li et al. 2018).

The feature's result is one model's ``zoo.landscape.Landscape``: ``run`` yields a ``Step``
before every grid point (a generator consumer can stop there) and each model's
``Landscape`` as it finishes. Its ``to_json()`` is the one JSON of ``python -m zoo landscape
--json``, the ``/landscape`` endpoint and the MCP landscape tool (each asks for one model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from .. import batch as batching
from .. import params as rules
from ..costs import Estimate, with_decoding
from ..hub import ProgressFn
from ..landscape import DEFAULT_GRID, DEFAULT_MAX_IMAGES, DEFAULT_SEED, DEFAULT_SPAN, Landscape, LandscapeError, Step
from ..runtime import Runtime, share
from . import last

UNIT = "landscape"  # the cost model's measured unit: one image's forward at one grid point, perturbing included


@dataclass(frozen=True)
class Request:
    """What an error-surface run needs; ``create`` validates raw values (a form's, argparse's, a payload's)."""

    sources: Any  # one image (a path, bytes, a LoadedImage) or paths (files, folders, a zip); None: pricing only
    models: tuple[str, ...]
    target: int | str | None = None  # None: each image's label (folder, CSV), else the model's top-1
    grid: int = DEFAULT_GRID
    span: float = DEFAULT_SPAN
    dims: int = 2
    seed: int = DEFAULT_SEED
    max_images: int = DEFAULT_MAX_IMAGES
    names: tuple[str, ...] | None = None  # display names of the sources (uploads' own names)
    labels_csv: str | os.PathLike | None = None
    globs: bool = False  # read "*" in a path as a glob (the command line's)
    keep_directions: bool = False  # keep delta and eta, to save them (``Landscape.save_directions``)
    unread: int = 0  # images priced but not given yet (the page pricing its settings before an upload)

    @classmethod
    def create(cls, rt: Runtime, sources: Any = None, models: Sequence[str] | str | None = None,
               target: int | str | None = None, *, grid: Any = DEFAULT_GRID, span: Any = DEFAULT_SPAN,
               dims: Any = 2, seed: Any = DEFAULT_SEED, max_images: Any = DEFAULT_MAX_IMAGES,
               names: Sequence[str] | None = None, labels_csv: str | os.PathLike | None = None,
               globs: bool = False, keep_directions: bool = False, unread: Any = 0) -> Request:
        """Checked before any work (zoo.params): settings, models, and the class against each model's."""
        names_ = rules.model_names(rt.zoo, models)
        return cls(sources, tuple(names_), rules.targets(rt.specs(names_), target),
                   rules.grid(grid, LandscapeError), rules.span(span, LandscapeError),
                   rules.dims(dims, LandscapeError), rules.seed(seed, LandscapeError),
                   rules.image_count(max_images, LandscapeError), None if names is None else tuple(names),
                   labels_csv, bool(globs), bool(keep_directions),
                   rules.whole(unread, "unread", 0, rules.LANDSCAPE_IMAGES_MAX, LandscapeError))


def _counted(req: Request) -> tuple[int, float]:
    """The images ``run`` will read from ``req.sources`` (up to ``max_images``) and their decoding
    seconds, priced from their headers, without decoding them."""
    sources = req.sources
    if sources is None:
        return 0, 0.0
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not isinstance(sources, (list, tuple)):
        return 1, 0.0  # one image given directly (decoded already, or bytes)
    room = max(0, req.max_images - req.unread)
    items = batching.gather([Path(s) for s in sources], names=req.names, globs=req.globs).items[:room]
    return len(items), batching.decode_seconds(items)


def estimate(rt: Runtime, req: Request) -> Estimate:
    """The cost of ``run`` before it runs: (grid points + 1 centre pass) x images, per model.

    Images are counted as ``run`` reads them (a zip's or folder's files, up to ``max_images``
    in all, their decoding priced from their headers), plus ``unread``. Seconds rest on an
    earlier landscape of the model here (fp32, perturbation included) when there is one, else
    on the app's forwards (which may run in reduced precision: then the landscape, always
    fp32, takes longer than said).
    """
    from ..landscape import grid_points

    images, decode_s = _counted(req)
    per_model = (grid_points(req.grid, req.dims) + 1) * max(1, req.unread + images)
    est = rt.costs.priced({name: float(per_model) for name in req.models}, unit=UNIT,
                          unit_basis="an earlier landscape measured here")
    return with_decoding(est, decode_s)


def run(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Iterator[Step | Landscape]:
    """Each model's error surface in turn, on a private fp32 copy of its weights (the shared model
    is never touched): a ``Step`` before every grid point, then its ``Landscape``."""
    from .. import landscape as zl

    images = zl.gather_images(req.sources, max_images=req.max_images, names=req.names, labels_csv=req.labels_csv,
                              globs=req.globs)
    specs = rt.specs(req.models)
    for k, spec in enumerate(specs):
        for event in zl.stream(spec, images, device=rt.cache.device, target=req.target, grid=req.grid,
                               span=req.span, dims=req.dims, seed=req.seed, keep_directions=req.keep_directions,
                               progress=share(progress, k, len(specs)), cache_dir=rt.cache.cache_dir):
            if isinstance(event, zl.Landscape) and event.point_seconds > 0:
                rt.costs.remember(UNIT, spec.name, event.point_seconds / len(event.images))
            yield event


def result(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Landscape:
    """The last model's ``Landscape`` (a request for one model: its landscape)."""
    return last(e for e in run(rt, req, progress) if isinstance(e, Landscape))
