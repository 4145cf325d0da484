"""What every feature needs: the zoo, the model cache, the device, precision and compile mode,
and the cost model of this machine.

One ``Runtime`` per process (the app, the CLI, a load script); it keeps no per-request
state. Features (``zoo.features``) take it as their first argument.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from .costs import CostModel
from .images import LoadedImage, load_image
from .models import ModelCache
from .registry import ModelSpec, Zoo


class Runtime:
    def __init__(self, zoo: Zoo, device: str = "auto", cache_size: int | None = None,
                 cache_dir: str | os.PathLike | None = None, precision: str | None = None,
                 compile: str | None = None, compile_forbidden: str | None = None):
        self.zoo = zoo
        # Default (ZOO_MODEL_CACHE, 5) holds all five depths, so "compare" never reloads.
        # ``compile``: --compile auto|on|off (zoo.compiled); ``compile_forbidden``: why the
        # front end rules compiling out (ZeroGPU), if it does.
        self.cache = ModelCache(cache_size, device, cache_dir, precision, compile, compile_forbidden)
        self.costs = CostModel(zoo)

    # --- what a request names -------------------------------------------------------------

    def model_names(self, models: Sequence[str] | None = None) -> list[str]:
        """``models`` without repeats, each checked against the zoo; none: the built-in depths."""
        names = list(dict.fromkeys(models or [s.name for s in self.zoo.builtin_depths]))
        for name in names:
            self.zoo.get(name)  # an unknown model fails here, before any work
        return names

    def specs(self, models: Sequence[str] | None = None) -> list[ModelSpec]:
        return [self.zoo.get(n) for n in self.model_names(models)]

    # --- what runs here -------------------------------------------------------------------

    @property
    def device(self) -> str:
        return str(self.cache.device)

    @property
    def precision(self) -> str:
        """What the loaded models run (``ModelCache.precision_label``)."""
        return self.cache.precision_label()

    @property
    def precision_note(self) -> str:
        """Why they run it: measured here (zoo.autotune), or asked for."""
        return self.cache.precision_note()

    @property
    def compile_plan(self) -> Any:
        """What --compile resolved to here (``zoo.compiled.Plan``: mode, enabled, why not)."""
        return self.cache.compile_plan

    def compile_in_background(self, report: Any = None) -> None:
        """Compile each loaded model, and each one loaded later, in the background; eager answers until each swap.

        ``report(model)``: called after each model's compile (``model.compile_note`` says how it went).
        """
        self.cache.compile_in_background(report)

    def compile_status(self) -> str:
        """One line on the compiled path (the page header's): off and why, compiling, or which models run compiled."""
        plan = self.cache.compile_plan
        if not plan.enabled:
            return plan.note
        models = self.cache.models()
        done = [m.spec.name for m in models if m.compiled is not None]
        pending = self.cache.compiling()
        failed = [f"{m.spec.name} ({m.compile_note})" for m in models
                  if m.compiled is None and m.compile_note.startswith("eager")]
        partly = [f"{m.spec.name} ({'; '.join(m.compile_missing.values())})" for m in models
                  if m.compiled is not None and m.compile_missing]
        parts = []
        if done:
            parts.append(f"compiled: {', '.join(done)}")
        if pending:  # each graph is built in a child process (zoo.compiling): requests are not held up
            parts.append(f"compiling {', '.join(pending)} in the background: answers use the eager path meanwhile")
        if failed:
            parts.append(f"eager: {'; '.join(failed)}")
        if partly:
            parts.append(f"partly compiled: {'; '.join(partly)}")
        return "; ".join(parts) or f"--compile {plan.mode}: each model compiles once it is loaded"


def decoded(image: Any) -> LoadedImage:
    """Decode once: a ``LoadedImage`` passes through, anything else goes to ``load_image``."""
    return image if isinstance(image, LoadedImage) else load_image(image)


def share(progress: Any, i: int, n: int) -> Any:
    """``progress`` for the ``i``-th of ``n`` equal parts of a job."""
    if progress is None:
        return None
    return lambda fraction, message: progress(None if fraction is None else (i + fraction) / n, message)
