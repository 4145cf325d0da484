"""Do the deployed weights give real answers? The self-check of the chosen models (the engine and
what it checks: ``zoo.selfcheck``). The Model zoo tab's section, ``/selfcheck`` (an MCP tool),
``python -m zoo selfcheck`` and ``app.py --selfcheck`` all run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from .. import params
from ..cancel import check
from ..costs import Estimate
from ..hub import ProgressFn
from ..runtime import Runtime
from ..selfcheck import FORWARDS_PER_PHOTO, PHOTOS, ModelCheck, SelfCheck, check_model


@dataclass(frozen=True)
class Request:
    models: tuple[str, ...]  # zoo names, each once

    @classmethod
    def create(cls, rt: Runtime, models: Sequence[str] | None = None) -> "Request":
        """``models`` checked against the zoo; none: the built-in depths."""
        return cls(tuple(params.model_names(rt.zoo, models)))


def estimate(rt: Runtime, req: Request) -> Estimate:
    """Per model and example photo, its forward and, when the input is off, one more on the
    reference input (hashing each file is not counted)."""
    return rt.costs.priced({name: float(FORWARDS_PER_PHOTO * len(PHOTOS)) for name in req.models})


def run(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> Iterator[ModelCheck | SelfCheck]:
    """Each model's check as it is done, then the whole ``SelfCheck``; Stop ends it between models."""
    done = []
    for name in req.models:
        check()
        done.append(check_model(rt.cache, rt.zoo.get(name), progress))
        yield done[-1]
    yield SelfCheck(done, str(rt.cache.device), rt.cache.precision_label())


def result(rt: Runtime, req: Request, progress: ProgressFn | None = None) -> SelfCheck:
    from . import last

    return last(run(rt, req, progress))


def selfcheck(rt: Runtime, models: Sequence[str] | None = None, progress: ProgressFn | None = None) -> SelfCheck:
    """The self-check of ``models`` (default: the built-in depths) in one call."""
    return result(rt, Request.create(rt, models), progress)

