"""Many users at once: concurrent /classify and /compare through gradio_client, on loopback.

    python benchmarks/load_test.py [--requests 40] [--concurrency 4] [--duration 180]

Launches the app on 127.0.0.1 with local random-init weights (no network), makes every
distinct request once alone, then fires the mix concurrently and checks that each
answer equals the lone one (predictions, target, and the overlay pixel for pixel up to
rounding), that each model was loaded once, that the model cache stayed within its
limit and that no hook is left on any model. Bounded in count and time; stops itself.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rss_mb() -> float:
    """Resident memory of this process (Linux), MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def request_mix(models: list[str]) -> list[tuple[str, tuple]]:
    images = [EXAMPLES / n for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    methods = ["cam", "gradcam", "saliency"]
    mix: list[tuple[str, tuple]] = []
    for (model, method), image in zip(itertools.product(models, methods), itertools.cycle(images)):
        mix.append(("/classify", (str(image), model, 5, method, "")))
    mix.append(("/compare", (str(images[2]),)))
    return mix


@dataclass
class LoadReport:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    loads: dict[str, int] = field(default_factory=dict)
    cached_models: int = 0
    cache_capacity: int = 0
    leftover_hooks: int = 0
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q) - 1] if len(
            self.latencies) > 1 else self.latencies[0]

    def lines(self) -> list[str]:
        return [
            f"requests: {self.requests} in {self.seconds:.1f} s, errors: {len(self.errors)}, "
            f"mismatches against lone requests: {len(self.mismatches)}",
            f"latency p50 {self.percentile(50) * 1e3:.0f} ms, p95 {self.percentile(95) * 1e3:.0f} ms",
            f"memory (RSS) before {self.rss_before_mb:.0f} MB, after {self.rss_after_mb:.0f} MB",
            f"model loads: {self.loads}; models in cache {self.cached_models} (limit {self.cache_capacity}); "
            f"hooks left on models: {self.leftover_hooks}",
            *[f"  error: {e}" for e in self.errors[:5]],
            *[f"  mismatch: {m}" for m in self.mismatches[:5]],
        ]


def _call(client: Any, endpoint: str, args: tuple) -> Any:
    from gradio_client import handle_file

    return client.predict(handle_file(args[0]), *args[1:], api_name=endpoint)


def _summary(endpoint: str, out: Any) -> tuple[Any, list[np.ndarray]]:
    """What must be identical: the JSON details, and the overlay pictures."""
    if endpoint == "/classify":
        _labels, crop, _full, _raw, details = out
        return details, [np.asarray(Image.open(crop).convert("RGB"), dtype=np.int16)]
    gallery, _table, _text, details = out
    return details, [np.asarray(Image.open(g["image"]).convert("RGB"), dtype=np.int16) for g in gallery]


def _same(a: Any, b: Any) -> bool:
    (da, ia), (db, ib) = a, b
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds",)}  # noqa: E731
    if "models" in da:
        da = {**da, "models": [strip(m) for m in da["models"]]}
        db = {**db, "models": [strip(m) for m in db["models"]]}
    else:
        da, db = strip(da), strip(db)
    if _round(da) != _round(db) or len(ia) != len(ib):
        return False
    return all(x.shape == y.shape and np.abs(x - y).max() <= 2 for x, y in zip(ia, ib))


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def run_load(url: str, explorer: Any, requests: int = 40, concurrency: int = 4, duration: float = 180.0,
             models: list[str] | None = None) -> LoadReport:
    """Run the mix against the app at ``url`` (same process as ``explorer``)."""
    from gradio_client import Client

    from zoo.explain import _HOOK_DICTS

    report = LoadReport(cache_capacity=explorer.cache.capacity)
    mix = request_mix(models or [s.name for s in explorer.zoo.builtin_depths][:3])
    lone_client = Client(url, verbose=False)
    expected = {i: _summary(ep, _call(lone_client, ep, args)) for i, (ep, args) in enumerate(mix)}
    report.rss_before_mb = rss_mb()
    deadline = time.monotonic() + duration
    local = threading.local()
    lock = threading.Lock()
    order = [i % len(mix) for i in range(requests)]

    def one(i: int) -> None:
        if time.monotonic() > deadline:
            return
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False)
        endpoint, args = mix[i]
        t0 = time.perf_counter()
        try:
            got = _summary(endpoint, _call(local.client, endpoint, args))
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            with lock:
                report.requests += 1
                report.errors.append(f"{endpoint}{args[1:]}: {type(e).__name__}: {e}")
            return
        with lock:
            report.requests += 1
            report.latencies.append(time.perf_counter() - t0)
            if not _same(got, expected[i]):
                report.mismatches.append(f"{endpoint}{args[1:]}")

    t_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, order))
    report.seconds = time.perf_counter() - t_start
    report.rss_after_mb = rss_mb()
    report.loads = dict(explorer.cache.loads)
    report.cached_models = len(explorer.cache.loaded())
    report.leftover_hooks = sum(len(getattr(m, d)) for lm in explorer.cache.models()
                                for m in lm.module.modules() for d in _HOOK_DICTS if hasattr(m, d))
    return report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--duration", type=float, default=180.0, help="stop sending after this many seconds")
    args = ap.parse_args()

    from common import local_specs

    from ui import build_app
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    explorer = Runtime(Zoo(local_specs()))
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        report = run_load(url, explorer, args.requests, args.concurrency, args.duration)
    finally:
        demo.close()
    print(f"load test: {args.requests} requests, {args.concurrency} clients, loopback, device {explorer.device}")
    print("\n".join(report.lines()))


if __name__ == "__main__":
    main()
