"""Every precision and trunk per depth, what ``auto`` chose, and the five-depth compare at ``auto``.

    python benchmarks/compare.py [--repeats N] [--device auto] [--no-compile] [--remeasure] [--models ...]

Per depth, batch 1 at 224x224, medians of interleaved runs (this machine is shared and
noisy, so every path of a depth is timed in the same rounds), for each precision ``auto``
weighs here (``zoo.models.precision_candidates``: fp32, and bf16 where the CPU runs it
natively; fp16 too on CUDA):

* ``bare P``: torchvision's model as it comes (BatchNorm, contiguous, eager) under autocast to P
  (``bare fp32``: no autocast);
* ``eager P``: ``LoadedModel.run`` with the eager trunk at P (BatchNorm folded, channels-last;
  pooling and fc fp32);
* ``compiled P`` (unless ``--no-compile``): ``LoadedModel.run`` with the trunk compiled at P
  (AOTInductor, batch-1 graph; zoo.compiled, cache in ``zoo.compile_cache.cache_dir()``);
* ``auto``: what ``--precision auto --compile auto`` chose for the depth (zoo.autotune: its
  own short calibration, or its cached result; ``--remeasure`` drops the cached ones first).

Then, models loaded as the app loads them at ``auto``: the five-depth compare (``zoo.features.compare``)
(one decode, one crop per recipe, a forward per depth, CAMs for the shared class), eager and
with what ``--compile auto`` kept; ``classify+CAM`` per depth; and loading ResNet-152 from a
warm disk cache. Ratios against the sum of the five bare fp32 forwards (target <= 0.70) and
against the sum of each depth's fastest bare eager forward (target <= 1.00).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import time
from typing import Callable

from common import EXAMPLE, local_specs


def interleaved(jobs: dict[str, Callable[[], object]], repeats: int, sync: Callable[[], None],
                warmup: int = 2) -> dict[str, float]:
    """Median milliseconds of each job, every job once per round."""
    times: dict[str, list[float]] = {k: [] for k in jobs}
    for r in range(warmup + repeats):
        for name, fn in jobs.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled columns")
    ap.add_argument("--remeasure", action="store_true", help="drop auto's cached measurements first")
    ap.add_argument("--models", nargs="+", default=None)
    args = ap.parse_args()

    import torch
    import torchvision

    from zoo.compile_cache import cache_dir
    from zoo.compiled import resolve
    from zoo.compiling import compile_model
    from zoo.explain import explain
    from zoo.features import compare
    from zoo.images import load_image
    from zoo.inference import classify, prepare
    from zoo.models import _DTYPES, autocast, load_model, precision_candidates, resolve_device
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    device = resolve_device(args.device)
    names = precision_candidates("auto", device)
    specs = local_specs(archs=args.models)
    if args.remeasure:
        shutil.rmtree(cache_dir() / "autotune", ignore_errors=True)
    compile_mode = "off" if args.no_compile else "auto"
    auto = Runtime(Zoo(specs), args.device, precision="auto", compile=compile_mode)
    eager_auto = Runtime(Zoo(specs), args.device, precision="auto", compile="off")
    image = load_image(EXAMPLE)
    x = prepare(image, specs[0].preprocessing).batch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device {device}, candidates {', '.join(names)}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, {args.repeats} interleaved rounds, medians in ms (batch 1)")
    cols = [f"bare {n}" for n in names] + [f"eager {n}" for n in names]
    cols += [] if args.no_compile else [f"compiled {n}" for n in names]
    print(f"{'model':<11}" + "".join(f"{c:>15}" for c in cols) + f"{'auto chose':>20}{'auto ms':>9}")
    med_all: dict[str, dict[str, float]] = {}
    for spec in specs:
        lm_auto = auto.cache.get(spec)  # measures (or reads) auto's precision, like the app at start
        if not args.no_compile:
            auto.cache.compile(lm_auto, ["one"])  # builds, or loads; then compiled vs eager (zoo.autotune)
        eager_auto.cache.get(spec)
        torch.manual_seed(0)
        bare = torchvision.models.get_model(spec.arch.name).eval().to(device)
        lm = load_model(spec, device, precision="fp32")
        xb, xf = x.to(device), lm.to_input(x)
        jobs: dict[str, Callable[[], object]] = {}
        for n in names:
            def run_bare(dt=_DTYPES[n]):
                with torch.inference_mode(), autocast(device, dt):
                    bare(xb)
            jobs[f"bare {n}"] = run_bare
            at = dataclasses.replace(lm, precision=_DTYPES[n])
            jobs[f"eager {n}"] = lambda at=at: at.run(xf)
        if not args.no_compile:
            for n in names:
                c = dataclasses.replace(lm, precision=_DTYPES[n], compiled=None)
                if not compile_model(c, resolve("on", device), ["one"]):
                    raise SystemExit(f"{spec.name} {n}: {c.compile_note}")
                jobs[f"compiled {n}"] = lambda c=c: c.run(xf)
        jobs["auto"] = lambda: lm_auto.run(xf)
        with torch.inference_mode():
            med = interleaved(jobs, args.repeats, sync)
        trunk = "compiled" if lm_auto.compiled is not None and lm_auto.use_compiled else "eager"
        chose = f"{lm_auto.precision_name} {trunk}"
        med_all[spec.name] = med
        print(f"{spec.name:<11}" + "".join(f"{med[c]:15.1f}" for c in cols) + f"{chose:>20}{med['auto']:9.1f}")
        print(f"{'':<11}why: {lm_auto.precision_note}; {lm_auto.compile_note or 'eager'}")
        del jobs, lm, bare

    sums = {c: sum(m[c] for m in med_all.values()) for c in cols + ["auto"]}
    fastest_bare = sum(min(m[f"bare {n}"] for n in names) for m in med_all.values())
    print("sums: " + ", ".join(f"{c} {v:.1f}" for c, v in sums.items()))

    def run_compare(ex=auto):
        compare.result(ex, compare.Request.create(ex, image, [s.name for s in specs]))

    big = specs[-1]
    jobs = {"compare auto": run_compare, "compare auto eager": lambda: run_compare(eager_auto),
            "load": lambda: load_model(big, device, precision="fp32")}
    for spec in specs:
        lmc = eager_auto.cache.get(spec)
        jobs[f"classify+CAM {spec.name}"] = lambda lmc=lmc: explain(lmc, classify(lmc, image, 5), "cam")
    med = interleaved(jobs, args.repeats, sync)
    cmp_ms, cmp_eager = med["compare auto"], med["compare auto eager"]
    print(f"five-depth compare at auto: {cmp_ms:.1f} ms (compile {compile_mode}; eager at auto {cmp_eager:.1f} ms); "
          f"sum of bare fp32 {sums['bare fp32']:.1f} ms; sum of the fastest bare eager per depth {fastest_bare:.1f} ms")
    print(f"compare at auto / sum(bare fp32) = {cmp_ms / sums['bare fp32']:.2f}  (target <= 0.70); "
          f"eager at auto: {cmp_eager / sums['bare fp32']:.2f}")
    print(f"compare at auto / sum(fastest bare eager) = {cmp_ms / fastest_bare:.2f}  (target <= 1.00); "
          f"eager at auto: {cmp_eager / fastest_bare:.2f}")
    print("classify+CAM at auto, eager: " + ", ".join(f"{s.name} {med['classify+CAM ' + s.name]:.1f}" for s in specs))
    one = med_all[big.name]["bare fp32"]
    print(f"{big.name} warm load {med['load']:.0f} ms = {med['load'] / one:.2f} x one bare fp32 forward "
          f"({one:.0f} ms)  (target <= 2)")
    print(f"precision at auto: {auto.precision} ({auto.precision_note})")


if __name__ == "__main__":
    main()
