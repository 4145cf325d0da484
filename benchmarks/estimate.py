"""How close ``zoo.features.classify.map_estimate`` comes to the time a run takes, per method (issue 17, item 7).

    python benchmarks/estimate.py [--device auto] [--models resnet18,resnet50] [--methods NAME,...]
                                  [--precision auto|fp32|bf16|fp16]

For each model: one CAM run (a model has run: the estimate now has a measured forward),
then for each method at its default settings, in order: the estimate from the table alone
(``PASS_COSTS`` x the measured forward), the estimate as the page shows it (the table,
corrected by the methods that ran before it here), the run's measured time, and, after a
second run, the estimate from the method's own measured passes against that run's time.
A ratio is estimate / measured; the aim is within 1.5x either way.

The table's figures come from ``benchmarks/methods.py`` (a map's time over a paired forward's,
divided by its passes); this script checks them through the Runtime, as the page uses them.
"""

from __future__ import annotations

import argparse

from common import EXAMPLE, local_specs

DEFAULT_METHODS = "integrated-gradients,occlusion,gradcam,saliency,guided-gradcam,smoothgradcampp,layercam"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names")
    ap.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "fp16"])
    args = ap.parse_args()

    import torch

    from zoo.explain import METHODS
    from zoo.features import classify
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    specs = local_specs(archs=args.models.split(","))
    explorer = Runtime(Zoo(specs), args.device, precision=args.precision)
    print(f"device: {explorer.device}, precision: {explorer.precision}, torch threads: {torch.get_num_threads()}")
    head = f"{'model':<10}{'method':<22}{'passes':>7}{'table':>9}{'page':>9}{'measured':>10}{'ratio':>7}" \
           f"{'own':>9}{'measured':>10}{'ratio':>7}"
    print(head)
    worst = 1.0
    for spec in specs:
        for _ in range(2):  # a model has run: its forward is measured (twice: a first call pays for allocations)
            classify.result(explorer, classify.Request.create(explorer, EXAMPLE, spec.name, 5, "cam"))
        for name in args.methods.split(","):
            unit = explorer.costs.forward_seconds(spec.name)[0]
            page = classify.map_estimate(explorer, [spec.name], name)
            table = unit * (1 + (page.passes - 1) * METHODS[name].pass_cost)
            first = classify.result(explorer, classify.Request.create(explorer, EXAMPLE, spec.name, 5, name)).seconds
            own = classify.map_estimate(explorer, [spec.name], name)
            second = classify.result(explorer, classify.Request.create(explorer, EXAMPLE, spec.name, 5, name)).seconds
            r1, r2 = page.seconds / first, own.seconds / second
            worst = max(worst, r1, 1 / r1, r2, 1 / r2)
            print(f"{spec.name:<10}{name:<22}{page.passes:>7}{table:8.2f}s{page.seconds:8.2f}s{first:9.2f}s{r1:7.2f}"
                  f"{own.seconds:8.2f}s{second:9.2f}s{r2:7.2f}", flush=True)
    print(f"\nworst ratio either way: {worst:.2f}x (the aim: 1.5x)")


if __name__ == "__main__":
    main()
