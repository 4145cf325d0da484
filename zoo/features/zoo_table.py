"""The model zoo as a table: per model its architecture's size (parameters, multiply-adds, FLOPs) at a
resolution, the paper's and torchvision's figures, its weights file and whether it is cached, and,
on request, its latency measured here. The Model zoo tab, ``/zoo`` (an MCP tool), ``python -m zoo
list`` and ``python -m zoo stats``; downloads and the per-stage table belong here too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .. import params
from ..cancel import check
from ..costs import Estimate
from ..errors import ZooError
from ..hub import ProgressFn, cached_path, evict, fetch_weights
from ..models import resolve_device
from ..registry import ModelSpec
from ..runtime import Runtime
from ..stats import StageStats, ZooRow, stage_stats, zoo_row

# What the gate assumes a model's download takes (long lane: it must not hold a quick slot).
DOWNLOAD_S = 10.0


@dataclass(frozen=True)
class Request:
    resolution: int = 224
    latency: bool = False  # time every model on the runtime's device (slow: runs each one)
    models: tuple[str, ...] = ()  # none: every model of the zoo, in its order

    @classmethod
    def create(cls, rt: Runtime, resolution: Any = 224, latency: Any = False,
               models: Sequence[str] | None = None) -> "Request":
        names = tuple(rt.zoo.get(n).name for n in dict.fromkeys(models or ()))  # unknown names fail here
        return cls(params.resolution(resolution), bool(latency), names)


@dataclass(frozen=True)
class Entry:
    """One model's row: its measured figures (``zoo.stats.ZooRow``) and where its weights are."""

    row: ZooRow
    repo: str
    revision: str
    cached: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.row.to_json(), "repo": self.repo, "revision": self.revision, "cached": self.cached}


@dataclass(frozen=True)
class ZooTable:
    resolution: int
    entries: tuple[Entry, ...]

    @property
    def rows(self) -> list[ZooRow]:
        return [e.row for e in self.entries]

    @property
    def cached(self) -> dict[str, bool]:
        return {e.row.name: e.cached for e in self.entries}

    def with_cached(self, zoo: Any) -> "ZooTable":
        """The same table after a download: 'cached' and the file size read again, latency kept."""
        return ZooTable(self.resolution, tuple(
            entry(zoo.get(e.row.name), self.resolution, e.row.latency) for e in self.entries))

    def to_json(self) -> dict[str, Any]:
        """The one JSON of the zoo table. ``cached`` (name -> bool) is also kept at the top level,
        where ``/zoo`` has always had it."""
        return {"resolution": self.resolution, "models": [e.to_json() for e in self.entries],
                "cached": self.cached}


def entry(spec: ModelSpec, resolution: int, latency: Any = None, device: Any = None) -> Entry:
    """``spec``'s row at ``resolution``; ``device``: measure its latency there; else keep ``latency``."""
    row = zoo_row(spec, resolution, device)
    if device is None and latency is not None:
        row = dataclasses.replace(row, latency=latency)
    return Entry(row, spec.repo or spec.path or "", spec.revision, cached_path(spec) is not None)


def estimate(rt: Runtime, req: Request) -> Estimate:
    """Timing every model is long work; the table alone runs no model (no forward at all)."""
    if req.latency:
        return rt.costs.latency_estimate(req.resolution)
    return Estimate(0, 0.0, "no model runs: the figures are counted on the architectures", models=0)


def run(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Iterator[Entry | ZooTable]:
    """Each model's entry as it is made, then the table. Stop ends the timing between models."""
    specs = [rt.zoo.get(n) for n in req.models] if req.models else list(rt.zoo)
    device = resolve_device(rt.device) if req.latency else None
    entries = []
    for i, spec in enumerate(specs):
        check()
        if device is not None and progress:
            progress(i / len(specs), f"Timing {spec.name} on {device} ({i + 1} of {len(specs)})")
        entries.append(entry(spec, req.resolution, device=device))
        yield entries[-1]
    yield ZooTable(req.resolution, tuple(entries))


def result(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> ZooTable:
    from . import last

    return last(run(rt, req, progress))


def stages(zoo: Any, model: str, resolution: Any = 224) -> list[StageStats]:
    """``model``'s per-stage table (the paper's Table 1) at ``resolution``."""
    spec = zoo.get(model)
    return stage_stats(spec.arch.name, params.resolution(resolution), spec.num_classes)


# --- weights ------------------------------------------------------------------------------

def download_estimate(zoo: Any, names: Sequence[str] | None) -> Estimate | None:
    """Nothing to fetch costs a moment (hashing a cached file); a download is long work."""
    missing = [n for n in names or [] if n in zoo and cached_path(zoo.get(n)) is None]
    return Estimate(0, DOWNLOAD_S * len(missing), "a download") if missing else None


def download(zoo: Any, names: Sequence[str] | None = None, *, every: bool = False, force: bool = False,
             progress: ProgressFn | None = None, each: Callable[[ModelSpec, Path], None] | None = None
             ) -> list[tuple[ModelSpec, Path]]:
    """Fetch and verify the weights of ``names`` (``every``: the whole zoo); ``force``: drop the
    cached copy first. ``each(spec, path)`` is told of each file as soon as it is there."""
    if not names and not every:
        raise ZooError("Name at least one model to download, or pass --all.")
    done = []
    for spec in list(zoo) if every else [zoo.get(n) for n in names or ()]:
        check()
        if force:
            evict(spec)
        path = Path(fetch_weights(spec, progress=progress))
        done.append((spec, path))
        if each:
            each(spec, path)
    return done
