"""Running on Hugging Face Spaces: ZeroGPU as documented, preloading, example caching.

ZeroGPU (https://huggingface.co/docs/hub/spaces-zerogpu) is on when the ``spaces``
package is installed and ``SPACES_ZERO_GPU`` is true (the variable ``spaces`` itself
reads). Its rules, and how this app follows them:

* ``import spaces`` patches torch so that CUDA is *emulated* in the main process:
  ``torch.cuda.is_available()`` is True at start-up although no GPU is attached. So
  ``--device auto`` picks ``cuda``, and ``app.py`` loads every built-in onto it at
  start-up, in the main process (``preload_names``). Loading or moving models inside a
  GPU function is much slower, and is lost when the function returns.
* Work that needs the GPU runs inside ``@spaces.GPU(duration=...)``; each call runs in
  a forked worker that gets a real GPU, so state it creates (a model loaded there, a
  cache entry) does not persist. ``gpu`` below wraps the model-running functions and
  gives each a duration from what it will cost (``cost_duration``).
* Everywhere else (CPU Spaces, local runs, tests) ``gpu`` returns the function as is.

Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import os
from typing import Any, Callable

# What a ZeroGPU call may take, in seconds. Not measured on a ZeroGPU slice (none is
# reachable from where this was written); estimated from ResNet-152, the dearest model:
# one forward + backward at 224 px takes well under 50 ms on a current GPU, so PASS_S
# leaves a wide margin. START_S covers the worker's start: it moves the preloaded
# weights (0.6 GB for all five depths) onto the real GPU before the call runs.
START_S = 15
MODEL_S = 3  # per model: preprocessing, the forward pass, copies back to the CPU
PASS_S = 0.05  # per forward (+ backward) pass through one model
LATENCY_S = 90  # timing all five depths (warm-up, 10 runs, and a batch of 64 each)
# ZeroGPU checks a call's duration against the visitor's remaining daily quota before
# it schedules it (2 minutes a day when not logged in), so no duration asks for more.
MAX_S = 120
CROP = 224  # the crop side the built-ins see; occlusion windows slide over it


def zero_gpu() -> bool:
    """True on a ZeroGPU Space: ``SPACES_ZERO_GPU`` is true and ``spaces`` is importable."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
    return flag and importlib.util.find_spec("spaces") is not None


def on_space() -> bool:
    """True on any Hugging Face Space (the platform sets ``SPACE_ID``, e.g. ``user/name``)."""
    return bool(os.environ.get("SPACE_ID"))


def gpu(fn: Callable | None = None, *, duration: float | Callable[..., float] = 60, by_cost: bool = False,
        default_models: int = 1) -> Callable:
    """``spaces.GPU(fn, duration=...)`` on ZeroGPU, ``fn`` unchanged elsewhere.

    ``@gpu`` alone asks for ZeroGPU's default, 60 s; ``@gpu(duration=20)`` for 20 s;
    ``@gpu(by_cost=True)`` for ``cost_duration(fn)``, computed from each call's own
    arguments (``default_models``: how many models a call without ``models`` runs).
    """
    def wrap(f: Callable) -> Callable:
        if not zero_gpu():
            return f
        import spaces  # type: ignore[import-not-found]

        return spaces.GPU(f, duration=cost_duration(f, default_models=default_models) if by_cost else duration)

    return wrap(fn) if fn is not None else wrap


def activate() -> None:
    """On ZeroGPU, import ``spaces`` before any model is placed: the import is what emulates CUDA."""
    if zero_gpu():
        import spaces  # type: ignore[import-not-found]  # noqa: F401


def map_passes(method: str, window: int | None = None, stride: int | None = None, steps: int | None = None) -> int:
    """Forward-pass equivalents of one map: the classification's forward plus the method's
    (parameters left out take zoo's defaults)."""
    from zoo.errors import ZooError
    from zoo.explain import METHODS

    m = METHODS.get(method)
    if m is None:
        return 4
    given = {"window": window, "stride": stride} if method == "occlusion" else {"steps": steps}
    params = {k: v for k, v in given.items() if v is not None}
    try:
        return 1 + m.forwards(params, CROP)  # the classification's forward, then the map's
    except ZooError:  # parameters the server refuses: the handler fails at once, so any duration will do
        return 1


def cost_duration(fn: Callable, *, default_models: int = 1) -> Callable[..., int]:
    """A ``duration`` callable for ``fn``: start-up + models x (fixed cost + passes x PASS_S).

    It reads ``fn``'s own arguments by name (``method``, ``window``, ``stride``,
    ``steps``, ``models``), so it follows ``fn``'s signature as that changes.
    """
    sig = inspect.signature(fn)

    def duration(*args: Any, **kwargs: Any) -> int:
        bound = sig.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        params = {k: a[k] for k in ("window", "stride", "steps") if a.get(k) is not None}
        passes = map_passes(str(a.get("method") or "cam"), **params)
        models = len(a["models"]) if a.get("models") else default_models
        return min(MAX_S, math.ceil(START_S + models * (MODEL_S + passes * PASS_S)))

    return duration


def preload_names(requested: list[str], all_names: list[str], builtin_names: list[str]) -> list[str]:
    """Models to load at start: ``--preload`` as given; on a Space by default every built-in.

    On a Space the weights are already on disk (``preload_from_hub`` fetches them at build
    time) and ZeroGPU requires models on ``cuda`` before the app starts, so the five
    depths load at start-up and no visitor waits for one. ``--preload none`` opts out.
    """
    if requested == ["none"]:
        return []
    if requested == ["all"]:
        return list(all_names)
    if requested:
        return list(requested)
    return list(builtin_names) if on_space() or zero_gpu() else []


def example_cache_mode() -> str | None:
    """How gradio caches the examples' results: "eager" (at start), "lazy" (at first use) or None (off).

    ``ZOO_CACHE_EXAMPLES`` = eager | lazy | off decides; by default a CPU Space caches at
    start (its models are preloaded, so every visitor gets instant results), while local
    runs cache lazily (no model is downloaded before someone asks) and so does ZeroGPU
    (the first visitor's click pays for the GPU, not the Space's start-up).
    """
    mode = os.environ.get("ZOO_CACHE_EXAMPLES", "").strip().lower()
    if mode in ("eager", "lazy"):
        return mode
    if mode in ("off", "0", "false", "no"):
        return None
    return "eager" if on_space() and not zero_gpu() else "lazy"


def example_caching() -> dict[str, Any]:
    """Keyword arguments for ``gr.Examples`` that apply ``example_cache_mode``."""
    mode = example_cache_mode()
    return {"cache_examples": mode is not None, "cache_mode": mode or "lazy"}
