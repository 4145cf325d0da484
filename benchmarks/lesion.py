"""What the Depth lab's single-block lesion study costs, per depth, in forward passes.

    python benchmarks/lesion.py [--repeats N] [--device auto] [--archs resnet18 resnet152]

The study deletes each of the n blocks in turn. Done naively that is n full forward
passes. zoo.analysis reuses the undamaged pass's block inputs (a lesion at block b cannot
change anything before b) and sends the variants through the remaining blocks in
batches. Target (issue 11): at most 0.6 x (n x one forward) for ResNet-152 on the CPU.

The baseline is bare torchvision in fp32 (BatchNorm unfolded, NCHW, batch 1, inference
mode), measured in the same run, interleaved with the study; medians. The app's own
forward (BatchNorm folded, channels-last) is shown too, and the ratio to it.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import EXAMPLE, local_specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--archs", nargs="*", default=None, help="default: all five depths")
    args = ap.parse_args()

    import torch
    import torchvision
    from safetensors.torch import load_file

    from zoo.analysis import blocks, clean_inputs, lesioned_logits, prepare
    from zoo.models import load_model, resolve_device

    device = resolve_device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t0

    print(f"device: {device}  torch {torch.__version__}  threads {torch.get_num_threads()}  "
          f"repeats {args.repeats} (interleaved, after one warm-up)")
    print(f"{'model':<11}{'blocks':>7}{'bare fwd ms':>13}{'app fwd ms':>12}{'lesion ms':>11}{'x bare fwd':>12}"
          f"{'/(n x bare)':>13}{'/(n x app)':>12}")
    verdict = None
    for spec in local_specs(archs=args.archs):
        lm = load_model(spec, device)
        bare = torchvision.models.get_model(spec.arch.name, weights=None)
        bare.load_state_dict(load_file(spec.path))
        bare = bare.eval().to(device)
        x = prepare(lm, EXAMPLE)
        x_bare = x.contiguous()
        n = len(blocks(lm.module))
        singles = [frozenset({i}) for i in range(n)]

        def bare_forward() -> None:
            with torch.inference_mode():
                bare(x_bare)

        def app_forward() -> None:
            with torch.inference_mode():
                lm.forward(x)

        def lesion_study() -> None:
            _, inputs = clean_inputs(lm, x)
            lesioned_logits(lm, inputs, singles)

        times: dict[str, list[float]] = {"bare": [], "app": [], "lesion": []}
        for r in range(args.repeats + 1):
            for name, fn in (("bare", bare_forward), ("app", app_forward), ("lesion", lesion_study)):
                t = timed(fn)
                if r:  # the first round warms up
                    times[name].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        per_bare = med["lesion"] / (n * med["bare"])
        print(f"{spec.name:<11}{n:>7}{med['bare'] * 1e3:13.1f}{med['app'] * 1e3:12.1f}{med['lesion'] * 1e3:11.0f}"
              f"{med['lesion'] / med['bare']:12.1f}{per_bare:13.3f}{med['lesion'] / (n * med['app']):12.3f}")
        if spec.name == "resnet152":
            verdict = per_bare
    if verdict is not None:
        print(f"\nResNet-152 lesion study: {verdict:.3f} x (50 x one bare forward); target <= 0.6: "
              f"{'met' if verdict <= 0.6 else 'NOT met'}")


if __name__ == "__main__":
    main()
