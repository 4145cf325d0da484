"""What the sanity check's new measures and Compare depths' evidence transfer cost, in forwards.

    python benchmarks/mprt.py [--repeats 5] [--device cpu] [--archs resnet18 resnet50] [--method gradcam]

Per depth, on the sanity check's own kind of model (a private fp32 copy, BatchNorm folded,
eager) and on the cached kind (``load_model``, fp32) for the transfer:

* a forward: the median ``classify`` of the example image, timed between the measurements below
  so every ratio sees the same load on a shared machine;
* eMPRT: the two histogram entropies (``zoo.mprt.entropy``) of a map on the crop;
* sMPRT, per noisy copy of the input: its classification and ``--method``'s map (``zoo.mprt.denoised``);
  a check with N samples pays 2 x (N - 1) of them;
* a ``residual-branches`` step and a ``stage`` step of the check (``zoo.sanity.iter_sanity``, the
  whole run divided by its steps): re-initialising, copying, classifying, mapping;
* one cell of the transfer matrix (``zoo.faithfulness.faithfulness``: 39 images), without and
  with ROAD (4 percentiles); a matrix of n depths costs n x (n - 1) cells (n x n when the
  comparison did not score its own maps).

Random-init weights, subnormals flushed (see common.py): timings, not values.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

from common import EXAMPLE, local_specs


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--archs", nargs="*", default=["resnet18", "resnet50"])
    ap.add_argument("--method", default="gradcam")
    args = ap.parse_args()

    import numpy as np

    from zoo import mprt, sanity
    from zoo.explain import explain
    from zoo.faithfulness import faithfulness
    from zoo.images import load_image
    from zoo.inference import classify, prepare
    from zoo.models import load_model, ready, resolve_device
    from zoo.private import private_copy
    from zoo.render import heat_on_crop

    device = resolve_device(args.device)
    image = load_image(EXAMPLE)
    print(f"device {device}, {os.cpu_count()} CPUs, torch threads {__import__('torch').get_num_threads()}, "
          f"method {args.method}, median of {args.repeats}")
    print(f"{'model':<10}{'forward ms':>11}{'eMPRT':>8}{'sMPRT/copy':>12}{'branch step':>13}{'stage step':>12}"
          f"{'transfer cell':>15}{'+ROAD':>8}   (multiples of a forward)")
    for spec in local_specs(archs=args.archs):
        master = private_copy(spec)  # the private fp32 copy sanity and landscape perturb (zoo.private)
        lm = ready(spec, copy.deepcopy(master), device, None)
        prepared = prepare(image, spec.preprocessing)
        run = classify(lm, image, prepared=prepared)
        forward = lambda: classify(lm, image, prepared=prepared)  # noqa: E731
        fwd = [timed(forward, args.repeats)]
        idx = run.predictions[0].index
        crop = spec.preprocessing.crop
        heat = heat_on_crop(explain(lm, run, args.method, idx).raw, crop)
        e = timed(lambda: (mprt.entropy(heat), mprt.entropy(heat)), args.repeats)
        copies = 4
        s = timed(lambda: mprt.denoised(lm, run, image, {args.method: {}}, idx, crop, {args.method: heat},
                                        copies + 1, np.random.RandomState(0)), max(1, args.repeats // 2)) / copies
        fwd.append(timed(forward, args.repeats))
        steps = {}
        for g in ("residual-branches", "stage"):
            t0 = time.perf_counter()
            report = sanity.sanity_check(spec, image, [args.method], granularity=g, device=device)
            steps[g] = (time.perf_counter() - t0) / len(report.planned)
        fwd.append(timed(forward, args.repeats))
        cached = load_model(spec, device, precision="fp32")
        crun = classify(cached, image, prepared=prepared)
        raw = explain(cached, crun, args.method, idx).raw
        cell = timed(lambda: faithfulness(cached, crun, raw, idx, road_percentiles=None), max(1, args.repeats // 2))
        road = timed(lambda: faithfulness(cached, crun, raw, idx), 1)
        fwd.append(timed(lambda: classify(cached, image, prepared=prepared), args.repeats))
        f = statistics.median(fwd)
        print(f"{spec.name:<10}{f * 1000:>11.1f}{e / f:>8.2f}{s / f:>12.1f}{steps['residual-branches'] / f:>13.1f}"
              f"{steps['stage'] / f:>12.1f}{cell / f:>15.1f}{road / f:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
