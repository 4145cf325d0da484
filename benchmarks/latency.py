"""Latency per depth (median and spread, batch 1; images/s at a large batch on GPU).

    python benchmarks/latency.py [--device auto] [--resolution 224] [--repeats 10]

The same measurement ``python -m zoo stats --latency`` runs (zoo.stats.measure_latency).
"""

from __future__ import annotations

import argparse

import common  # noqa: F401 - puts the project on sys.path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    from zoo.models import resolve_device
    from zoo.registry import ARCHITECTURES
    from zoo.stats import measure_latency

    device = resolve_device(args.device)
    print(f"device: {device}, {args.resolution}x{args.resolution}, batch 1, {args.repeats} runs after warm-up")
    print(f"{'model':<11}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'images/s':>10}{'vs resnet18':>13}")
    base = None
    for arch in ARCHITECTURES:
        lat = measure_latency(arch, device, args.resolution, repeats=args.repeats)
        base = base or lat.median_ms
        print(f"{arch:<11}{lat.median_ms:11.1f}{lat.p10_ms:9.1f}{lat.p90_ms:9.1f}{lat.images_per_s:10.1f}"
              f"{lat.median_ms / base:13.2f}")


if __name__ == "__main__":
    main()
