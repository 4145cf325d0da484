"""Batch throughput per depth: the project's batched classification against bare torchvision.

    python benchmarks/batch.py [--device auto] [--precision auto] [--batch-size N] [--repeats 5] [--images 64] [--no-compile]

For each depth, on the same already-decoded, preprocessed CPU batch, at the same batch
size and precision, interleaved run by run (medians):

* project: ``zoo.batch.classify_batch``, what ``zoo.batch.stream`` runs for every chunk
  and model (to the device in channels-last, the BatchNorm-folded trunk under autocast,
  pooling and fc in fp32, softmax, top-5, back to the CPU);
* bare: ``torchvision.models.<arch>`` with the same weights, eval, ``x.to(device)``, the
  whole model under the same autocast, softmax, top-5, back to the CPU.

* compiled (unless ``--no-compile``): ``classify_batch`` on the same model with its trunk
  compiled (zoo.compiled: the any-batch graph, one for every batch size).

The ratio project / bare should be at least 0.90, compiled / project at least 1.4 at
batch 32. Then end to end: ``zoo.batch.run`` over PNG files on disk (decoding in the
thread pool, one model at a time), images/s, with the compiled model when there is one.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401 - puts the project on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=64, help="files for the end-to-end figure")
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled column")
    args = ap.parse_args()

    import torch
    import torchvision
    from PIL import Image
    from safetensors.torch import load_file

    from zoo import batch
    from zoo.images import load_image, model_crop, to_tensor
    from zoo.models import autocast, load_model, precision_name, resolve_device, resolve_precision

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    bs = args.batch_size or batch.default_batch_size(device)
    specs = common.local_specs(archs=args.models)
    pre = specs[0].preprocessing
    photos = sorted(p for p in common.EXAMPLE.parent.iterdir() if p.suffix in (".png", ".jpg"))
    tensors = [to_tensor(model_crop(load_image(p).image, pre), pre)[0] for p in photos]
    x = torch.stack([tensors[i % len(tensors)] for i in range(bs)])  # decoded and preprocessed, on the CPU

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"device {device}, precision {precision_name(dtype)}, "
          f"batch {bs}, {args.repeats} interleaved runs after warm-up, medians")
    print(f"{'model':<11}{'project img/s':>15}{'bare img/s':>12}{'ratio':>8}{'compiled img/s':>16}"
          f"{'compiled/project':>18}{'compile s':>11}{'end-to-end img/s':>19}")
    folder = Path(tempfile.mkdtemp(prefix="rde-bench-batch-"))
    for i in range(args.images):
        Image.open(photos[i % len(photos)]).convert("RGB").save(folder / f"{i:04d}.png")
    ratios: list[float] = []
    speedups: list[float] = []
    for spec in specs:
        lm = load_model(spec, device, precision=args.precision or "auto")
        bare = torchvision.models.get_model(spec.arch.name, weights=None)
        bare.load_state_dict(load_file(str(spec.path)))
        bare = bare.eval().to(device)

        compiled, compile_s = None, float("nan")
        if not args.no_compile:
            from zoo.compiled import resolve
            from zoo.compiling import compile_model

            compiled = load_model(spec, device, precision=args.precision or "auto")
            t0 = time.perf_counter()
            if not compile_model(compiled, resolve("on", device), kinds=["any"]):
                raise SystemExit(f"{spec.name}: {compiled.compile_note}")
            compile_s = time.perf_counter() - t0

        def project() -> None:
            batch.classify_batch(lm, x, 5)
            sync()

        def project_compiled() -> None:
            batch.classify_batch(compiled, x, 5)
            sync()

        @torch.inference_mode()
        def baseline() -> None:
            with autocast(device, dtype):
                logits = bare(x.to(device))
            top = torch.topk(torch.softmax(logits.float(), dim=1), 5, dim=1)
            top.indices.cpu(), top.values.cpu()
            sync()

        jobs = [("project", project), ("bare", baseline)] + ([("compiled", project_compiled)] if compiled else [])
        for _ in range(2):  # warm-up: allocator, oneDNN/cuDNN algorithm choice
            for _, fn in jobs:
                fn()
        times: dict[str, list[float]] = {name: [] for name, _ in jobs}
        for _ in range(args.repeats):
            for name, fn in jobs:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        ours, theirs = (bs / statistics.median(times[k]) for k in ("project", "bare"))
        fast = bs / statistics.median(times["compiled"]) if compiled else float("nan")
        ratios.append(ours / theirs)
        if compiled:
            speedups.append(fast / ours)
        t0 = time.perf_counter()
        result = batch.run(batch.gather([folder]), [compiled or lm], batch_size=bs)
        e2e = result.n_images / (time.perf_counter() - t0)
        print(f"{spec.name:<11}{ours:15.1f}{theirs:12.1f}{ours / theirs:8.2f}{fast:16.1f}{fast / ours:18.2f}"
              f"{compile_s:11.1f}{e2e:19.1f}")
        del lm, bare, compiled
    print(f"lowest ratio {min(ratios):.2f} (target >= 0.90); end to end includes reading and decoding "
          f"{args.images} PNG files in the thread pool")
    if speedups:
        print(f"compiled / project: lowest {min(speedups):.2f}, median {statistics.median(speedups):.2f} "
              f"(target >= 1.4 at batch 32)")


if __name__ == "__main__":
    main()
