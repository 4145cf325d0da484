"""A stand-in for Hugging Face's ``spaces`` package, for the simulated-Spaces tests.

It offers what the app uses, ``spaces.GPU(fn, duration=...)``, and records instead of
scheduling a GPU. It cannot emulate CUDA (there is no GPU here), so the app runs on the
CPU. To let a test check ZeroGPU's rules from outside the app's process, importing it
also wraps the places where models are loaded and run, and appends one JSON line per
event to ``$FAKE_SPACES_LOG``:

* ``{"event": "import"}``: this module was imported;
* ``{"event": "decorate", "fn": ..., "duration": <seconds> | "callable"}``;
* ``{"event": "call", "fn": ..., "duration": <seconds>}``: a GPU function ran, with the
  duration it would have asked for;
* ``{"event": "load", "name": ..., "inside_gpu": bool}``: ``zoo.models.load_model``;
* ``{"event": "model", "what": ..., "inside_gpu": bool}``: ``zoo.features.classify.run`` / ``zoo.features.compare.run`` /
  ``zoo.stats.measure_latency``.

The wrappers are installed only when ``FAKE_SPACES_RECORD=1`` (the app's subprocess).
Gradio imports ``spaces`` itself when it is installed, and calls ``gradio_auto_wrap`` on
every event function when ``SYSTEM=spaces``; as on a Space without
``SPACES_GRADIO_AUTO_WRAP``, that leaves them unwrapped.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from typing import Any, Callable

_inside = threading.local()  # depth of GPU calls on this thread
_write = threading.Lock()


def _log(**record: Any) -> None:
    path = os.environ.get("FAKE_SPACES_LOG")
    if path:
        with _write, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _inside_gpu() -> bool:
    return getattr(_inside, "depth", 0) > 0


def GPU(task: Callable | None = None, *, duration: Any = None, **kwargs: Any) -> Callable:  # noqa: N802 - as spaces
    if task is None:
        return lambda f: GPU(f, duration=duration, **kwargs)
    _log(event="decorate", fn=task.__qualname__, duration="callable" if callable(duration) else duration)

    @functools.wraps(task)
    def wrapper(*args: Any, **kw: Any) -> Any:
        seconds = duration(*args, **kw) if callable(duration) else duration
        _log(event="call", fn=task.__qualname__, duration=seconds)
        _inside.depth = getattr(_inside, "depth", 0) + 1
        try:
            return task(*args, **kw)
        finally:
            _inside.depth -= 1

    return wrapper


def gradio_auto_wrap(task: Any) -> Any:
    """Gradio's hook for wrapping every event in ``GPU``: off, as on a Space by default."""
    return task


def _record(owner: Any, attr: str, event: str, label: Callable[..., str]) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def recorded(*args: Any, **kw: Any) -> Any:
        _log(event=event, what=attr, name=label(*args, **kw), inside_gpu=_inside_gpu())
        return original(*args, **kw)

    setattr(owner, attr, recorded)


def _install_recorders() -> None:
    import zoo.features.classify
    import zoo.features.compare
    import zoo.models
    import zoo.stats

    _record(zoo.models, "load_model", "load", lambda spec, *a, **k: spec.name)
    _record(zoo.features.classify, "run", "model", lambda rt, req, *a, **k: req.model)
    _record(zoo.features.compare, "run", "model", lambda rt, req, *a, **k: "compare")
    _record(zoo.stats, "measure_latency", "model", lambda arch, *a, **k: arch)


if os.environ.get("FAKE_SPACES_RECORD") == "1":
    _log(event="import")
    print("fake spaces imported", flush=True)
    _install_recorders()
