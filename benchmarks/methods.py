"""What each explanation method costs, as a multiple of one forward pass, per depth; and what scoring a map costs.

    python benchmarks/methods.py [--repeats N] [--device auto] [--models resnet18,resnet50,resnet152]
                                 [--methods all|NAME,...] [--scorecam auto|yes|no] [--ablationcam auto|yes|no]
                                 [--scores yes|no]

The unit ("1 forward") is one fp32 forward of the same model on the same 224x224 crop,
batch 1, in inference mode. Each round times, for every method and for the two
faithfulness curves of the Grad-CAM map (39 perturbed images through ``lm.forward``,
batched, at the model's precision), for its ROAD score (sparse-solve imputations on the
CPU, then their forwards) at the default percentiles and at the paper's nine (10..90),
one forward right before it and the method itself:
the ratio of the pair cancels slow changes in machine load. Figures are medians over
rounds (ratios) and the median times. Methods run with their default parameters, on layer4.

Score-CAM and Ablation-CAM run one forward per channel of layer4 (512 or 2048, + 2): by
default (auto) they are timed on a GPU only, and on the CPU their pass count is printed instead.
``--scores no`` leaves out the deletion/insertion and ROAD rows (to time a few methods quickly).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import EXAMPLE, local_specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--models", default="resnet18,resnet50,resnet152")
    ap.add_argument("--methods", default="all", help="comma-separated method names, or all")
    ap.add_argument("--scorecam", default="auto", choices=["auto", "yes", "no"])
    ap.add_argument("--ablationcam", default="auto", choices=["auto", "yes", "no"])
    ap.add_argument("--scores", default="yes", choices=["yes", "no"])
    args = ap.parse_args()

    import torch

    from zoo.explain import METHODS, explain, stage_channels
    from zoo.faithfulness import ROAD_PERCENTILES, faithfulness, road
    from zoo.inference import classify
    from zoo.models import load_model, resolve_device

    device = resolve_device(args.device)
    names = list(METHODS) if args.methods == "all" else args.methods.split(",")
    skipped = [n for n in ("scorecam", "ablationcam")
               if getattr(args, n) == "no" or (getattr(args, n) == "auto" and device.type == "cpu")]
    names = [n for n in names if n not in skipped]
    wanted = args.models.split(",")
    specs = local_specs(archs=wanted)
    print(f"device: {device}, torch threads: {torch.get_num_threads()}, rounds: {args.repeats}, subnormals flushed")
    table: dict[str, dict[str, str]] = {}
    for spec in specs:
        lm = load_model(spec, device)
        run = classify(lm, EXAMPLE)
        x = lm.to_input(run.input)

        def forward() -> None:
            with torch.inference_mode():
                lm.module(x)
            sync(device)

        raw = explain(lm, run, "gradcam").raw
        # The "1 forward" row is a forward over the forward before it: how noisy the machine is.
        jobs = {"1 forward": forward, **{n: (lambda n=n: explain(lm, run, n)) for n in names}}
        target = run.predictions[0].index
        scores = {"deletion+insertion": lambda: faithfulness(lm, run, raw, target, road_percentiles=None),
                  f"ROAD {','.join(map(str, ROAD_PERCENTILES))}": lambda: road(lm, run, raw, target),
                  "ROAD 10..90 (paper)": lambda: road(lm, run, raw, target, percentiles=range(10, 100, 10))}
        if args.scores == "yes":
            jobs.update(scores)
        for fn in jobs.values():  # warm-up: first calls pay for allocations and kernel choice
            fn()
        times: dict[str, list[float]] = {k: [] for k in jobs}
        ratios: dict[str, list[float]] = {k: [] for k in jobs}
        units: list[float] = []
        for _ in range(args.repeats):
            for key, fn in jobs.items():
                unit = timed(forward, device)
                took = timed(fn, device)
                units.append(unit)
                times[key].append(took)
                ratios[key].append(took / unit)
        unit = statistics.median(units)
        for key in jobs:
            med = statistics.median(times[key])
            table.setdefault(key, {})[spec.name] = f"{statistics.median(ratios[key]):8.1f}x {med * 1e3:9.1f} ms"
        for n in skipped:
            passes = stage_channels(spec.arch, "layer4") + 2
            table.setdefault(n, {})[spec.name] = f"~{passes:6d} passes (not run)"
        print(f"{spec.name}: one fp32 forward {unit * 1e3:.1f} ms", flush=True)
        done = specs[: specs.index(spec) + 1]
        print_table(table, [s.name for s in done])  # after each depth: a long run still leaves figures


def print_table(table: dict[str, dict[str, str]], cols: list[str]) -> None:
    print()
    print(f"{'method':<26}" + "".join(f"{c:>27}" for c in cols))
    for key, row in table.items():
        print(f"{key:<26}" + "".join(f"{row.get(c, '-'):>27}" for c in cols))
    print(flush=True)


def timed(fn, device) -> float:
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


if __name__ == "__main__":
    main()
