"""The fast path against bare torchvision, per depth and for the five-depth compare.

    python benchmarks/compare.py [--repeats N] [--device auto] [--precision auto]

Per depth, batch 1 at 224x224, medians of interleaved runs (this machine is shared and
noisy, so every path is timed in the same rounds):

* ``bare fp32``: torchvision's model as it comes (BatchNorm, contiguous, fp32, eager);
* ``bare fast``: the same network with BatchNorm folded, channels-last, at the app's
  precision: the floor for what the app can do;
* ``classify+CAM``: the project's ``classify`` and CAM on a decoded image (crop,
  normalise, forward, softmax, top-k, map);
* ``compare``: ``Explorer.compare`` over the five depths (one decode, one crop per
  recipe, one forward per depth, CAMs for the shared class), models already loaded;
* ``load``: loading ResNet-152 from a warm disk cache (verified record present).

Ratios printed: compare / sum(bare fast) (target <= 1.10), compare / sum(bare fp32)
(target <= 0.6 on a CPU with AMX at precision auto), load / one fp32 forward (<= 2).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import EXAMPLE, local_specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    args = ap.parse_args()

    import torch
    import torchvision

    from zoo.explain import explain
    from zoo.hub import fetch_weights
    from zoo.images import load_image
    from zoo.inference import classify, prepare
    from zoo.models import autocast, fold_batchnorm, load_model, resolve_device, resolve_precision, to_input
    from zoo.registry import Zoo
    from zoo.service import Explorer

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    specs = local_specs()
    explorer = Explorer(Zoo(specs), args.device, precision=args.precision)
    image = load_image(EXAMPLE)
    x = prepare(image, specs[0].preprocessing).batch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    paths = {}
    for spec in specs:
        fetch_weights(spec)
        torch.manual_seed(0)
        bare = torchvision.models.get_model(spec.arch.name).eval().to(device)
        fast = torchvision.models.get_model(spec.arch.name).eval()
        with torch.no_grad():
            fold_batchnorm(fast)
        fast = fast.to(device, memory_format=torch.channels_last)
        lm = explorer.cache.get(spec)
        xb, xf = x.to(device), to_input(x, device)

        def run_bare(m=bare, xb=xb):
            with torch.inference_mode():
                m(xb)

        def run_fast(m=fast, xf=xf):
            with torch.inference_mode(), autocast(device, dtype):
                m(xf)

        def run_ours(lm=lm):
            run = classify(lm, image, 5)
            explain(lm, run, "cam")

        paths[spec.name] = {"bare fp32": run_bare, "bare fast": run_fast, "classify+CAM": run_ours}

    def run_compare():
        explorer.compare(image, [s.name for s in specs])

    big = specs[-1]

    def run_load():
        load_model(big, device, precision=args.precision)

    times: dict[tuple[str, str], list[float]] = {}
    jobs = [((name, kind), fn) for name, d in paths.items() for kind, fn in d.items()]
    jobs += [(("all", "compare"), run_compare), ((big.name, "load"), run_load)]
    for _, fn in jobs:  # warm-up
        fn()
        fn()
    for _ in range(args.repeats):
        for key, fn in jobs:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.setdefault(key, []).append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}

    print(f"device {device}, precision {explorer.precision}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, {args.repeats} interleaved rounds, medians in ms")
    print(f"{'model':<11}{'bare fp32':>11}{'bare fast':>11}{'classify+CAM':>14}{'ours/fast':>11}{'fast/fp32':>11}")
    for name in paths:
        b, f, o = med[(name, "bare fp32")], med[(name, "bare fast")], med[(name, "classify+CAM")]
        print(f"{name:<11}{b:11.1f}{f:11.1f}{o:14.1f}{o / f:11.2f}{f / b:11.2f}")
    sum_fp32 = sum(med[(n, "bare fp32")] for n in paths)
    sum_fast = sum(med[(n, "bare fast")] for n in paths)
    cmp_ms = med[("all", "compare")]
    load_ms = med[(big.name, "load")]
    one = med[(big.name, "bare fp32")]
    print(f"five-depth compare: {cmp_ms:.1f} ms; sum of bare fast {sum_fast:.1f} ms; sum of bare fp32 {sum_fp32:.1f} ms")
    print(f"compare / sum(bare fast) = {cmp_ms / sum_fast:.2f}  (target <= 1.10)")
    print(f"compare / sum(bare fp32) = {cmp_ms / sum_fp32:.2f}  (target <= 0.60 where bf16 is native; "
          f"precision here: {explorer.precision})")
    print(f"{big.name} warm load {load_ms:.0f} ms = {load_ms / one:.2f} x one fp32 forward ({one:.0f} ms)  "
          "(target <= 2)")


if __name__ == "__main__":
    main()
