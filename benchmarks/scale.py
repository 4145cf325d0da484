"""Images/s of the local executor against the Ray executor with 1 and 2 workers, and from
them a paper estimate of the full ImageNet-val robustness sweep.

    python benchmarks/scale.py [--images 96] [--repeats 3] [--model resnet18] [--batch-size 8]

Every engine classifies the same PNG files (photos from examples/, re-encoded at 500x375
like ImageNet's), through the same plan (``zoo.batch.BatchPlan``: decode, resize, crop,
normalise) and the same forwards (``classify_batch``), on this machine:

* local: ``LocalExecutor``, models loaded in this process (decode in its thread pool);
* ray-1: ``RayExecutor`` on a local Ray instance with all this machine's CPUs, one actor
  (all cores for torch), decoding in Ray tasks;
* ray-2: the same with two actors (half the cores each).

A run's fixed cost (a Ray pipeline starts its actors, which import torch and load the
weights, on every run: tens of seconds on a busy 2-core machine) is reported apart, as the
time to the first result; the cost per image is the steady state after it: (time of the
last result - time of the first) / (images that arrived after the first burst of results). Engines take turns
within each round (interleaved), and medians over the rounds are reported, with the
ratios ray-1 / local (Ray's cost per image; target <= 1.3) and ray-1 / ray-2 (the scaling
from 1 to 2 workers). Random weights with subnormals flushed, in this process and in every
Ray worker (see common.py), at fp32 unless --precision says otherwise.

The estimate: the sweep is 50,000 images x 95 corrupted crops (19 corruptions x 5
severities) x 5 depths. On this CPU: the measured seconds per image of --model, scaled to
each depth by multiply-adds (as the app's cost estimates do). On one GPU and on N GPU
nodes: --gpu-rn50 images/s for ResNet-50 (an assumption, printed), scaled the same way,
times the measured Ray overhead per image. Making the corrupted crops costs CPU time besides
(--corrupt-s per image): printed as core-hours, and as the cores a GPU node needs to keep
its GPU fed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import common

SWEEP_IMAGES = 50_000
SWEEP_CROPS = 95  # 19 corruptions x 5 severities (ImageNet-C)
DEPTHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def flush_denormals() -> None:
    import torch

    torch.set_flush_denormal(True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=96, help="images per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="resnet18", choices=DEPTHS)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray actor counts to time")
    ap.add_argument("--gpu-rn50", type=float, default=2000.0,
                    help="assumed ResNet-50 images/s of one data-centre GPU (eager PyTorch, bf16, batch 64)")
    ap.add_argument("--nodes", type=int, nargs="+", default=[8, 32], help="GPU node counts for the estimate")
    ap.add_argument("--corrupt-s", type=float, default=4.0,
                    help="CPU seconds to make one image's 95 corrupted crops (default: about 4 s, the README's "
                         "Robustness figure from benchmarks/robustness.py on this machine)")
    args = ap.parse_args()

    import ray
    from PIL import Image

    from zoo.batch import LocalExecutor, gather
    from zoo.batch.ray_executor import RayExecutor, worker_env
    from zoo.batch.runner import BatchPlan
    from zoo.models import load_model
    from zoo.registry import ARCHITECTURES

    spec = common.local_specs(archs=[args.model])[0]  # also flushes subnormals here
    tmp = Path(tempfile.mkdtemp(prefix="rde-scale-"))
    photos = sorted(p for p in common.EXAMPLE.parent.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for i in range(args.images):
        Image.open(photos[i % len(photos)]).convert("RGB").resize((500, 375)).save(tmp / f"{i:04d}.png")
    inp = gather([str(tmp)])

    cpus = os.cpu_count() or 1
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=512 << 20,
             runtime_env={"env_vars": worker_env(), "worker_process_setup_hook": flush_denormals})
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False

    local = LocalExecutor([load_model(spec, "cpu", precision=args.precision)])
    engines = {"local": local}
    for w in args.workers:
        engines[f"ray-{w}"] = RayExecutor([spec], device="cpu", precision=args.precision, workers=w)
    plan = BatchPlan((spec.preprocessing,), [None] * args.images)

    def timed(ex) -> tuple[float, float]:
        """(seconds to the first result, seconds per image after the first batch)."""
        t0 = time.perf_counter()
        stamps = [time.perf_counter() - t0 for e in ex.run(list(enumerate(inp.items)), plan, keep_k=5,
                                                           batch_size=args.batch_size) if hasattr(e, "top_idx")]
        assert len(stamps) == args.images, (len(stamps), args.images)
        # Results come back in bursts (a batch at a time, Ray's sometimes two): the steady
        # state counts the images that arrived after the first burst, over the time since it.
        first = sum(1 for t in stamps if t - stamps[0] < 1e-3)
        return stamps[0], (stamps[-1] - stamps[0]) / max(1, len(stamps) - first)

    timed(local)  # warm-up: the page cache, torch's first calls
    per_image: dict[str, list[float]] = {k: [] for k in engines}
    fixed: dict[str, list[float]] = {k: [] for k in engines}
    for r in range(args.repeats):
        for name, ex in engines.items():
            first, per = timed(ex)
            per_image[name].append(per)
            fixed[name].append(first)
            print(f"round {r + 1}: {name:<7} first result after {first:6.2f} s, then {per * 1000:6.1f} ms/image",
                  flush=True)

    med = {k: statistics.median(v) for k, v in per_image.items()}
    print(f"\n{args.model}, {args.precision}, batch {args.batch_size}, {cpus} CPUs, medians of {args.repeats} rounds "
          f"({args.images} images a run; per image: the steady state after the first results):")
    print(f"{'engine':<8}{'ms/image':>10}{'images/s':>10}{'first s':>9}   range ms/image")
    for k in engines:
        lo, hi = min(per_image[k]) * 1000, max(per_image[k]) * 1000
        print(f"{k:<8}{med[k] * 1000:10.1f}{1 / med[k]:10.1f}{statistics.median(fixed[k]):9.1f}   {lo:.1f}-{hi:.1f}")
    overhead = None
    if "ray-1" in med:
        overhead = med["ray-1"] / med["local"]
        print(f"ray-1 / local (Ray's cost per image; target <= 1.3): {overhead:.2f}")
    if "ray-1" in med and "ray-2" in med:
        print(f"ray-1 / ray-2 (speed-up from 1 to 2 workers on these {cpus} cores): {med['ray-1'] / med['ray-2']:.2f}")

    # --- the paper estimate -----------------------------------------------------------------
    flops = {d: ARCHITECTURES[d].paper_flops for d in DEPTHS}
    base = flops[args.model]
    crops = SWEEP_IMAGES * SWEEP_CROPS
    cpu_s = crops * sum(med["local"] * flops[d] / base for d in DEPTHS)
    gpu_one = crops * sum(flops[d] / flops["resnet50"] / args.gpu_rn50 for d in DEPTHS)
    ovh = max(1.0, overhead or 1.0)
    print(f"\nImageNet-val robustness sweep: {SWEEP_IMAGES:,} images x {SWEEP_CROPS} crops x 5 depths = "
          f"{crops * 5:,} forwards (forwards only; the corrupted crops are made on CPUs besides):")
    corrupt = SWEEP_IMAGES * args.corrupt_s  # one core's seconds
    print(f"  this CPU ({cpus} cores, local executor): {_human(cpu_s)} of forwards, plus "
          f"{_human(corrupt / cpus)} making the crops at {args.corrupt_s:g} s per image on {cpus} cores")
    print(f"  one GPU at {args.gpu_rn50:.0f} ResNet-50 images/s (assumed): {_human(gpu_one)} "
          f"(x {ovh:.2f} through Ray: {_human(gpu_one * ovh)})")
    print(f"  making the crops: {corrupt / 3600:,.0f} core-hours; a GPU node needs about "
          f"{corrupt / (gpu_one * ovh):.0f} cores making crops to keep its GPU busy")
    for n in args.nodes:
        print(f"  Ray cluster of {n} GPU nodes (one GPU each, Ray overhead {ovh:.2f} as measured here, linear "
              f"scaling assumed): {_human(gpu_one * ovh / n)}")


def _human(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


if __name__ == "__main__":
    main()
