"""Sanity check: can I trust this map? Cascading randomization (Adebayo et al. 2018).

Each method's map is computed again as the model's weights are re-initialised from the top,
on a private copy of the weights (``zoo.sanity``, the engine). A request names one model and
several methods (the ``/sanity`` endpoint, ``zoo sanity``), or one method and several depths
side by side (whether a method passes can depend on depth); the events are the reports so
far after each step, one per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from .. import params as rules
from .. import sanity as engine
from ..costs import Estimate
from ..explain import get_method, layer_param
from ..hub import ProgressFn
from ..runtime import Runtime, decoded, share
from . import last


@dataclass(frozen=True)
class Request:
    image: Any
    models: tuple[str, ...]
    methods: tuple[str, ...]
    target: int | str | None = None
    granularity: str = "stage"
    seed: int = engine.SEED
    # Per-method parameters, e.g. {"integrated-gradients": {"steps": 16}}.
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    max_forwards: int | None = None  # refuse a run that would cost more (a front end's bound per request)
    smooth_samples: int = 0  # N of smooth MPRT (zoo.mprt; 0: off; eMPRT is always reported)

    @classmethod
    def create(cls, rt: Runtime, image: Any = None, models: Sequence[str] | str | None = None,
               methods: Sequence[str] | str | None = None, target: int | str | None = None,
               granularity: str | None = "stage", seed: Any = engine.SEED,
               params: Mapping[str, Mapping[str, Any]] | None = None, max_forwards: int | None = None,
               smooth_samples: Any = 0) -> Request:
        """``models``: one name, or several (none: the built-in depths); ``methods``: none, the defaults."""
        names = rules.model_names(rt.zoo, models)
        methods = [methods] if isinstance(methods, str) else methods
        chosen = engine.check_methods(methods)  # an unknown method fails here
        options = {n: dict(p) for n, p in (params or {}).items() if n in chosen}
        for spec in (rt.zoo.get(n) for n in names):
            for m in chosen:  # a bad layer fails before any download
                layer_param(m, dict(options.get(m, {})), spec.cam_layer)
        granularity = granularity or "stage"
        engine.step_count(rt.zoo.get(names[0]), granularity)  # an unknown granularity fails here
        blank = target is None or (isinstance(target, str) and not target.strip())
        return cls(image, tuple(names), tuple(chosen), None if blank else target,
                   granularity, rules.seed(seed, engine.SanityError), options, max_forwards,
                   rules.smooth_samples(smooth_samples, engine.SanityError))


@dataclass
class Checks:
    """The reports so far, one per model (the last one growing); the result once all are done."""

    reports: list[engine.SanityReport]
    models: tuple[str, ...]

    @property
    def done(self) -> bool:
        return len(self.reports) == len(self.models) and all(r.done for r in self.reports)

    def to_json(self) -> dict[str, Any]:
        """One model: its report's JSON (``/sanity``, ``zoo sanity --json``); several: one per model."""
        if len(self.models) == 1 and self.reports:
            return self.reports[0].to_json()
        return {"models": list(self.models), "complete": self.done, "reports": [r.to_json() for r in self.reports]}


def forwards(rt: Runtime, req: Request) -> dict[str, int]:
    """Forward-pass equivalents per model: per step, one classification and one map per method; with
    ``smooth_samples``, sMPRT's noisy maps (``zoo.sanity.forwards`` counts them)."""
    return {n: engine.forwards(rt.zoo.get(n), req.methods, req.granularity, req.params, req.smooth_samples)
            for n in req.models}


def maps(rt: Runtime, req: Request) -> int:
    """How many maps the check draws: per model, one per step and method."""
    return sum(engine.step_count(rt.zoo.get(n), req.granularity) for n in req.models) * len(req.methods)


def estimate(rt: Runtime, req: Request) -> Estimate:
    return rt.costs.priced(forwards(rt, req))


def _check_limit(rt: Runtime, req: Request) -> None:
    total = sum(forwards(rt, req).values())
    if req.max_forwards is None or total <= req.max_forwards:
        return
    if len(req.models) == 1:
        spec = rt.zoo.get(req.models[0])
        raise engine.SanityError(
            f"This check would cost {total} forward passes on {spec.name} ({engine.step_count(spec, req.granularity)} "
            f"maps per method); the limit here is {req.max_forwards}. Tick fewer or cheaper methods, use the "
            "'stage' granularity, or run it with python -m zoo sanity.")
    what = get_method(req.methods[0]).label if len(req.methods) == 1 else "these methods"
    raise engine.SanityError(
        f"Checking {what} on {len(req.models)} depths would cost {total} forward passes; the "
        f"limit here is {req.max_forwards}. Pick a cheaper method, or run it with python -m zoo sanity.")


def run(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Iterator[Checks]:
    """The reports so far after each step of each model; the last event is the result.

    Runs on private copies of the weights on the runtime's device, never on the cached models;
    ``zoo.cancel`` is checked before each step and map.
    """
    _check_limit(rt, req)
    loaded = decoded(req.image)
    done: list[engine.SanityReport] = []
    for i, name in enumerate(req.models):
        report = None
        for report in engine.iter_sanity(rt.zoo.get(name), loaded, req.methods, req.target, req.granularity,
                                         req.seed, rt.cache.device, req.params, rt.cache.cache_dir,
                                         share(progress, i, len(req.models)), req.smooth_samples):
            yield Checks(done + [report], req.models)
        if report is not None:
            done.append(report)


def result(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Checks:
    return last(run(rt, req, progress))
