"""Load time from a warm disk cache, and classify latency, for each depth on this machine.

    python benchmarks/load_and_classify.py [--repeats N] [--device auto]

"Warm" means the weights file is on disk and its sha256 was verified before, as on a
second start of the app. Prints absolute figures and ratios to ResNet-18 from one run.
"""

from __future__ import annotations

from common import EXAMPLE, median_time, setup


def main() -> None:
    args, device, specs = setup(__doc__)

    import torch

    from zoo.hub import fetch_weights
    from zoo.inference import classify
    from zoo.models import load_model

    print(f"device: {device}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"{'model':<11}{'load ms':>10}{'(min-max)':>16}{'classify ms':>13}{'(min-max)':>16}{'load x':>8}{'classify x':>11}")
    base = None
    for spec in specs:
        fetch_weights(spec)  # verify once: later loads use the verified record
        load = median_time(lambda: load_model(spec, device), max(3, args.repeats // 3), warmup=1)
        lm = load_model(spec, device)
        cls = median_time(lambda: classify(lm, EXAMPLE), args.repeats)
        base = base or (load[0], cls[0])
        print(f"{spec.name:<11}{load[0] * 1e3:10.0f}{f'({load[1] * 1e3:.0f}-{load[2] * 1e3:.0f})':>16}"
              f"{cls[0] * 1e3:13.1f}{f'({cls[1] * 1e3:.1f}-{cls[2] * 1e3:.1f})':>16}"
              f"{load[0] / base[0]:8.2f}{cls[0] / base[1]:11.2f}")


if __name__ == "__main__":
    main()
