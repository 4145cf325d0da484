"""``--precision auto`` and ``--compile auto``: decided by measuring this machine, not by a CPU flag.

A flag says what a CPU can do, not what is fastest on it: bf16 made the eager forward
about 1.7x faster on an AMD EPYC with AVX-512 BF16, and about 1.2x slower on an Intel
Xeon VM that has the same flag but no AMX (the hypervisor, oneDNN's kernels per ISA, the
batch size and the thread count all decide). So per (model, device, CPU, threads, torch
version, batch size) a short calibration times a few forwards of the model's trunk at
each candidate precision (``zoo.models.precision_candidates``: fp32, and bf16 / fp16
where the device runs them), interleaved, medians, with subnormal floats flushed while
measuring (random-init weights produce them and x86 CPUs process them ~3x slower;
trained weights do not, and the benchmarks flush them too). The fastest candidate whose
logits stay within ``LOGIT_REL_TOL`` of fp32's (the contract of tests/test_precision.py)
wins if it is at least ``MARGIN`` faster than fp32; otherwise fp32, the reference, which
also wins ties and noise. While a model is measured it answers in fp32.

Compiled: the graphs are built at the precision chosen eager. Once a model has them,
``check_compiled`` times compiled against eager at that precision and keeps the compiled
trunk only if it is not clearly slower (``--compile auto``); a later start that knows
compiling lost here does not build at all (``compile_lost``).

Each result is a small JSON file in ``zoo.compile_cache.cache_dir()/autotune``, named after a
key of everything it depends on; a later start decides from it instantly. A file that is
unreadable, malformed or for another key is ignored and measured again. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

FORMAT = 1
LOGIT_REL_TOL = 0.015  # tests/test_precision.py: no logit moves by more than 1.5 % of the largest |logit|
MARGIN = 1.10  # a reduced precision (or eager over compiled) must be at least 10 % faster to be chosen
# Timed rounds (each candidate once per round) at batch 1 and at larger batches, after the
# forwards that check the contract, which warm each path up (oneDNN builds its kernels then).
ROUNDS, BIG_ROUNDS = 4, 2
_LOCK = threading.Lock()  # one calibration at a time: two would time each other's load


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def flushed_subnormals():
    """Subnormal floats flushed to zero inside; the previous setting (probed: torch has no getter) after."""
    was = torch.tensor([1e-39]).mul(1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was:
            torch.set_flush_denormal(False)


def key(model: Any, batch: int, candidates: list[str]) -> dict[str, Any]:
    """Everything a measurement depends on: the model, its input, the machine, torch, the candidates."""
    from .compile_cache import machine

    crop = model.spec.preprocessing.crop
    return {"format": FORMAT, "model": model.spec.name, "arch": model.spec.arch.name, "shape": [3, crop, crop],
            "batch": batch, "candidates": candidates, "torch": torch.__version__, **machine(model.device)}


def record_path(fields: dict[str, Any], folder: Path | None = None) -> Path:
    from .compile_cache import cache_dir

    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(fields["model"]))[:60] or "model"
    return (folder or cache_dir() / "autotune") / f"{safe}-b{fields['batch']}-{digest}.json"


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _times(value: Any, names: list[str]) -> bool:
    return isinstance(value, dict) and set(value) == set(names) and all(
        _positive(v) for v in value.values())


def read(path: Path, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The record at ``path`` if it is whole and for exactly ``fields``; None otherwise (measure again)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != fields or not _times(record.get("ms"), fields["candidates"]):
        return None
    change = record.get("logit_change")
    if not isinstance(change, dict) or not all(isinstance(v, (int, float)) for v in change.values()):
        return None
    return record


def write(path: Path, record: dict[str, Any]) -> None:
    """Best effort: a read-only cache only means measuring again at the next start."""
    from .compile_cache import atomic_write as _atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, json.dumps(record, indent=1, sort_keys=True))
    except OSError:
        pass


def time_paths(paths: dict[str, Callable[[], Any]], device: torch.device, batch: int,
               warmup: int = 0) -> dict[str, float]:
    """Median milliseconds of each path, timed in interleaved rounds (after ``warmup`` untimed ones)."""
    rounds = ROUNDS if batch == 1 else BIG_ROUNDS
    times: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode(), flushed_subnormals():
        for r in range(warmup + rounds):
            for name, fn in paths.items():
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                if r >= warmup:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def _example(model: Any, batch: int) -> torch.Tensor:
    crop = model.spec.preprocessing.crop
    x = torch.randn(batch, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    return model.to_input(x)


def eager_forward(model: Any, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The eager trunk at ``dtype`` (what ``LoadedModel.run`` does without a compiled trunk); fp32 features."""
    from .models import autocast

    with autocast(model.device, dtype):
        return model.trunk(x).float()


def measure(model: Any, candidates: list[str], batch: int) -> dict[str, Any]:
    """Time each candidate on ``model``'s eager trunk, and how far each moves the logits from fp32's."""
    from .models import _DTYPES

    x = _example(model, batch)
    paths = {name: (lambda d=_DTYPES[name]: eager_forward(model, x, d)) for name in candidates}
    with torch.inference_mode(), flushed_subnormals():
        ref = model.head(eager_forward(model, x, None))
        change = {name: float((model.head(eager_forward(model, x, _DTYPES[name])) - ref).abs().max()
                              / ref.abs().max().clamp_min(1e-12))
                  for name in candidates if name != "fp32"}
    return {"ms": time_paths(paths, model.device, batch), "logit_change": change, "measured": _now()}


def decide(record: dict[str, Any], fresh: bool = True) -> tuple[str, str]:
    """(precision, why) from a record's timings: the fastest candidate that keeps the contract, if it beats
    fp32 by ``MARGIN``; else fp32. Pure: tests give it timings."""
    ms, change, batch = record["ms"], record.get("logit_change", {}), record["key"]["batch"]
    when = "measured at load" if fresh else f"measured here {record.get('measured', '')} (cached)".replace("  ", " ")
    at = f" at batch {batch}" if batch > 1 else ""
    kept = [n for n in ms if n != "fp32" and change.get(n, math.inf) <= LOGIT_REL_TOL]
    best = min(kept, key=lambda n: ms[n], default=None)
    if best is not None and ms["fp32"] / ms[best] >= MARGIN:
        return best, f"{best}: {ms['fp32'] / ms[best]:.1f}x faster than fp32 here{at}, {when}"
    if best is not None:
        return "fp32", (f"fp32: {best} was {ms['fp32'] / ms[best]:.2f}x as fast here{at} (auto leaves fp32 "
                        f"from {MARGIN:.2f}x), {when}")
    dropped = [n for n in ms if n != "fp32"]
    if dropped:
        n = dropped[0]
        return "fp32", (f"fp32: {n} moved the logits by {change.get(n, math.inf):.1%} of the largest "
                        f"(more than {LOGIT_REL_TOL:.1%}), {when}")
    return "fp32", "fp32: the only precision this device runs natively"


def choose(model: Any, candidates: list[str], batch: int = 1) -> tuple[str, str]:
    """(precision, why) for ``model`` at ``batch``: from the cache, else measured now (and cached)."""
    if candidates == ["fp32"]:
        return decide({"ms": {"fp32": 1.0}, "key": {"batch": batch}})
    fields = key(model, batch, candidates)
    path = record_path(fields)
    record = read(path, fields)
    if record is not None:
        return decide(record, fresh=False)
    with _LOCK:
        record = {"key": fields, **measure(model, candidates, batch)}
    write(path, record)
    return decide(record)


def tune(model: Any, candidates: list[str], batch: int = 1) -> None:
    """Set ``model``'s precision and ``precision_note`` by ``choose``; it runs fp32 until then.

    In a thread of its own (no request's cancellation token reaches it); ``model.tuned`` is
    set when done, whatever happened. A failure leaves the model fp32, saying why.
    """
    try:
        name, why = choose(model, candidates, batch)
    except Exception as e:  # noqa: BLE001 - measuring must never take the model down: it stays fp32
        name, why = "fp32", f"fp32: measuring failed ({type(e).__name__}: {' '.join(str(e).split())[:160]})"
    from .models import _DTYPES

    model.precision = _DTYPES[name]
    model.precision_note = why
    model.tuned.set()


def start(model: Any, candidates: list[str], batch: int = 1, wait: bool = True) -> None:
    """``tune`` in a thread; joined unless ``wait`` is False (then the model answers fp32 meanwhile)."""
    model.tuned.clear()
    model.precision, model.precision_note = None, f"fp32 while {', '.join(candidates[1:])} is measured against fp32"
    worker = threading.Thread(target=tune, args=(model, candidates, batch), name="zoo-autotune", daemon=True)
    worker.start()
    if wait:
        worker.join()


# --- compiled or eager (--compile auto) -------------------------------------------------

def _compiled_key(model: Any, batch: int) -> tuple[Path, dict[str, Any]]:
    fields = {**key(model, batch, [model.precision_name]), "compiled": True}
    return record_path(fields), fields


def compile_lost(model: Any, batch: int = 1) -> str | None:
    """Why not to compile ``model`` here: a note when an earlier start measured eager clearly faster."""
    path, fields = _compiled_key(model, batch)
    record = read(path, fields)
    if record is None or not _positive(record.get("compiled_ms")) or (
            record["ms"][model.precision_name] * MARGIN > record["compiled_ms"]):
        return None
    return _lost_note(record, fresh=False)


def _lost_note(record: dict[str, Any], fresh: bool) -> str:
    when = "measured at load" if fresh else f"measured here {record.get('measured', '')} (cached)"
    eager = next(iter(record["ms"].values()))
    return f"eager: {record['compiled_ms'] / eager:.1f}x faster than the compiled trunk here, {when}"


def check_compiled(model: Any, batch: int = 1) -> None:
    """Once ``model`` has a compiled graph for ``batch``: time it against eager at the model's precision
    (or read that from the cache) and run eager if eager is at least ``MARGIN`` faster."""
    compiled = model.compiled
    x = _example(model, batch)
    with torch.inference_mode():
        if compiled is None or not compiled.accepts(x):
            return
    path, fields = _compiled_key(model, batch)
    record, fresh = read(path, fields), False
    if record is None or not _positive(record.get("compiled_ms")):
        dtype = model.precision
        with _LOCK:
            ms = time_paths({"eager": lambda: eager_forward(model, x, dtype), "compiled": lambda: compiled(x)},
                            model.device, batch, warmup=1)
        record = {"key": fields, "ms": {model.precision_name: ms["eager"]}, "compiled_ms": ms["compiled"],
                  "logit_change": {}, "measured": _now()}
        write(path, record)
        fresh = True
    eager_ms = record["ms"][model.precision_name]
    if eager_ms * MARGIN <= record["compiled_ms"]:
        model.use_compiled = False
        model.compile_note = f"{model.compile_note}; runs {_lost_note(record, fresh)}"
