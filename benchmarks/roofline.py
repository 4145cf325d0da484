"""How close the batch forward is to what this machine can do: why compiling pays more for some depths.

    python benchmarks/roofline.py [--batch-size 32] [--repeats 5] [--models resnet18 resnet50] [--precision auto]

For each depth, at one batch size and the app's precision, interleaved runs (medians):

* eager: ``zoo.batch.classify_batch`` (the project's batched forward: the BatchNorm-folded,
  channels-last trunk under autocast, pooling and fc in fp32, top-5);
* compiled: the same with the any-batch compiled graph (zoo.compiled);
* their throughput in multiply-adds per second, from the trunk's MACs (``zoo.stats``);
* the machine's matmul rate at the same precision (a 2048 x 2048 x 2048 product through
  torch, that is oneDNN/MKL): the practical peak of the cores for dense arithmetic;
* the convolutions' share of the eager forward and their rate (torch.profiler).

"ceiling": eager time / the time if every multiply-add ran at the matmul rate and nothing
else cost anything. No compiler, ours or another, can beat eager by more than that; a
target above it is out of reach on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common  # noqa: F401 - puts the project on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from zoo.batch import classify_batch
    from zoo.compiled import resolve
    from zoo.compiling import compile_model
    from zoo.models import autocast, load_model, precision_name, resolve_precision
    from zoo.stats import model_stats

    torch.set_flush_denormal(True)  # random-init weights: subnormals would slow eager and compiled alike
    device = torch.device("cpu")
    dtype = resolve_precision(args.precision, device)
    n = args.batch_size

    def matmul_rate() -> float:
        a = torch.randn(2048, 2048)
        b = torch.randn(2048, 2048)
        with torch.inference_mode(), autocast(device, dtype):
            a @ b
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - t0)
        return 2048 ** 3 / statistics.median(times)  # MAC/s

    peak = [matmul_rate()]
    print(f"cpu, precision {precision_name(dtype)}, batch {n}, threads {torch.get_num_threads()}, "
          f"{args.repeats} interleaved rounds, medians")
    print(f"{'model':<11}{'eager ms/img':>13}{'compiled':>10}{'speed-up':>10}{'eager GMAC/s':>14}"
          f"{'compiled':>10}{'matmul':>8}{'conv share':>12}{'conv GMAC/s':>13}{'ceiling':>9}")
    for spec in common.local_specs(archs=args.models):
        lm = load_model(spec, device, precision=args.precision)
        fast = load_model(spec, device, precision=args.precision)
        if not compile_model(fast, resolve("on", device), kinds=["any"]):
            raise SystemExit(f"{spec.name}: {fast.compile_note}")
        x = torch.randn(n, 3, 224, 224)
        macs = model_stats(spec.arch.name).macs * n
        jobs = {"eager": lambda: classify_batch(lm, x, 5), "compiled": lambda: classify_batch(fast, x, 5)}
        for fn in jobs.values():
            fn()
            fn()
        times: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(args.repeats):
            for k, fn in jobs.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
            peak.append(matmul_rate())
        e, c = (statistics.median(times[k]) for k in ("eager", "compiled"))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            classify_batch(lm, x, 5)
        events = prof.key_averages()
        total = sum(ev.self_cpu_time_total for ev in events)
        conv = sum(ev.self_cpu_time_total for ev in events if "convolution" in ev.key)
        conv_s = e * conv / total
        rate = statistics.median(peak)
        print(f"{spec.name:<11}{e / n * 1e3:13.2f}{c / n * 1e3:10.2f}{e / c:10.2f}{macs / e / 1e9:14.0f}"
              f"{macs / c / 1e9:10.0f}{rate / 1e9:8.0f}{conv / total:12.0%}{macs / conv_s / 1e9:13.0f}"
              f"{e / (macs / rate):9.2f}")
        del lm, fast
    print("GMAC/s: the trunk's multiply-adds per second; matmul: the cores' dense rate at this precision; "
          "conv share: of the eager forward's CPU time; ceiling: the most any compiler could gain over eager")


if __name__ == "__main__":
    main()
