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
  gives each a duration from what it will cost (``gpu_seconds`` of the request's
  estimate, the one the page shows and the ceiling checks).
* Everywhere else (CPU Spaces, local runs, tests) ``gpu`` returns the function as is.

Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
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


def zero_gpu() -> bool:
    """True on a ZeroGPU Space: ``SPACES_ZERO_GPU`` is true and ``spaces`` is importable."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
    return flag and importlib.util.find_spec("spaces") is not None


def compile_forbidden() -> str | None:
    """Why the app must not compile its models here (``zoo.compiled``), or None.

    ZeroGPU's documentation rules ``torch.compile`` out: each call runs in a forked worker,
    so a compiled model would not persist (ahead-of-time compilation is its only way).
    """
    return "ZeroGPU rules out torch.compile (see its documentation)" if zero_gpu() else None


def on_space() -> bool:
    """True on any Hugging Face Space (the platform sets ``SPACE_ID``, e.g. ``user/name``)."""
    return bool(os.environ.get("SPACE_ID"))


def gpu(fn: Callable | None = None, *, duration: float | Callable[..., float] = 60,
        cost: Callable[..., Any] | None = None) -> Callable:
    """``spaces.GPU(fn, duration=...)`` on ZeroGPU, ``fn`` unchanged elsewhere.

    ``@gpu`` alone asks for ZeroGPU's default, 60 s; ``@gpu(duration=20)`` for 20 s;
    ``@gpu(cost=f)`` for ``gpu_seconds(f(*args))``: ``f`` takes ``fn``'s own arguments and
    returns the request's ``zoo.costs.Estimate``, the same figure the page shows and the
    server's ceiling checks.
    """
    def wrap(f: Callable) -> Callable:
        if not zero_gpu():
            return f
        import spaces  # type: ignore[import-not-found]

        asked: Any = duration if cost is None else (lambda *a, **k: gpu_seconds_of(cost, *a, **k))
        return spaces.GPU(f, duration=asked)

    return wrap(fn) if fn is not None else wrap


def gpu_seconds(forwards: int, models: int = 1) -> int:
    """A ZeroGPU duration: start-up + models x fixed cost + forward passes x PASS_S, within a visitor's quota."""
    return min(MAX_S, math.ceil(START_S + models * MODEL_S + forwards * PASS_S))


def gpu_seconds_of(cost: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """``gpu_seconds`` of ``cost(*args)``; settings the server refuses fail at once, so any duration will do."""
    from zoo.errors import ZooError

    try:
        est = cost(*args, **kwargs)
    except ZooError:
        return gpu_seconds(0)
    return gpu_seconds(est.forwards, getattr(est, "models", 1))


def activate() -> None:
    """On ZeroGPU, import ``spaces`` before any model is placed: the import is what emulates CUDA."""
    if zero_gpu():
        import spaces  # type: ignore[import-not-found]  # noqa: F401


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
