"""Robustness sweep throughput against a bare torchvision loop, and the cost of each corruption.

    python benchmarks/robustness.py [--device auto] [--precision auto] [--models resnet18 resnet50]
                                    [--images 1] [--repeats 3] [--batch-size N] [--skip-costs]

1. Cost of each corruption: ``zoo.robustness.corrupt_array`` (corrupt-tta, seeded) on a
   224 x 224 crop of the example photo, median over ``--repeats`` of the mean over severities
   1-5, in ms (the figures ``zoo.robustness.CORRUPTIONS`` carries for the estimates).
2. The sweep, end to end: ``zoo.robustness_sweep.sweep_stream`` over a ``zoo.batch.LocalExecutor``
   (every corruption x severity x model; crops corrupted in the executor's pool while the
   batched forwards run), against a bare loop: ``torchvision.models.<arch>`` with the same
   weights, eval, channels-last, under the same autocast, batched forwards + softmax +
   top-k over *the same crops already corrupted and normalised* (so the bare side pays no
   corruption at all). Interleaved run by run; medians. Throughput in corrupted crops per
   second (an image x corruption x severity through every model) and in images·corruptions
   per second (the same / 5 severities). ratio = project / bare; the issue's target is 0.9
   where the corruptions' cost can hide behind the forwards (several or deep models).
"""

from __future__ import annotations

import argparse
import statistics
import time

import common  # noqa: F401 - puts the project on sys.path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "fp16"])
    ap.add_argument("--models", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="the executor's pool (default: min(4, CPUs))")
    ap.add_argument("--skip-costs", action="store_true", help="only the sweep")
    args = ap.parse_args()

    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from safetensors.torch import load_file

    from zoo import robustness as rb
    from zoo.batch import LocalExecutor, default_batch_size
    from zoo.images import load_image, model_crop, to_tensor
    from zoo.models import autocast, load_model, precision_name, resolve_device, resolve_precision
    from zoo.robustness_sweep import sweep_stream

    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    bs = args.batch_size or default_batch_size(device)
    photo = load_image(common.EXAMPLE).image
    pre = common.local_specs(archs=args.models[:1])[0].preprocessing
    crop = np.asarray(model_crop(photo, pre))
    print(f"device {device}, precision {precision_name(dtype)}, batch {bs}, torch threads {torch.get_num_threads()}")

    if not args.skip_costs:
        print("\nCost of each corruption on a 224 x 224 crop (mean over severities 1-5, median of "
              f"{args.repeats}):")
        print(f"{'corruption':<20}{'ms':>9}{'table ms':>10}")
        for c in rb.CORRUPTIONS:  # warm-up: the first call imports OpenCV and scikit-image
            rb.corrupt_array(crop, c.name, 1, 0)
        for c in rb.CORRUPTIONS:
            runs = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                for s in rb.SEVERITIES:
                    rb.corrupt_array(crop, c.name, s, rb.sample_seed(r, "bench", c.name, s))
                runs.append((time.perf_counter() - t0) / len(rb.SEVERITIES))
            print(f"{c.name:<20}{statistics.median(runs) * 1e3:9.1f}{c.seconds * 1e3:10.1f}", flush=True)

    specs = common.local_specs(archs=args.models)
    lms = [load_model(s, device, precision=precision_name(dtype)) for s in specs]
    executor = LocalExecutor(lms, workers=args.workers)
    bare = []
    for s in specs:
        m = torchvision.models.get_model(s.arch.name, weights=None)
        m.load_state_dict(load_file(s.path))
        bare.append(m.eval().to(device, memory_format=torch.channels_last))
    # Different images: the photo flipped and rotated (one decode, several crops).
    images = [photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else photo for i in range(args.images)]
    images = [im.rotate(90 * (i // 2), expand=True) for i, im in enumerate(images)]
    names = [c.name for c in rb.CORRUPTIONS]
    n_crops = args.images * len(names) * len(rb.SEVERITIES)
    # The bare loop's input: the very crops the sweep makes (clean + corrupted), normalised.
    tensors = []
    for i, im in enumerate(images):
        clean = np.asarray(model_crop(im, pre))
        tensors.append(to_tensor(Image.fromarray(clean), pre)[0])
        for c in names:
            for s in rb.SEVERITIES:
                arr = rb.corrupt_array(clean, c, s, rb.sample_seed(0, f"image{i}", c, s))
                tensors.append(to_tensor(Image.fromarray(arr), pre)[0])

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def project() -> float:
        t0 = time.perf_counter()
        for i, im in enumerate(images):
            for _ in sweep_stream(executor, im, name=f"image{i}", seed=0, batch_size=bs):
                pass
        sync()
        return time.perf_counter() - t0

    @torch.inference_mode()
    def baseline() -> float:
        t0 = time.perf_counter()
        for j in range(0, len(tensors), bs):
            x = torch.stack(tensors[j:j + bs])
            for m in bare:
                with autocast(device, dtype):
                    logits = m(x.to(device).contiguous(memory_format=torch.channels_last))
                p = torch.softmax(logits.float(), dim=1)
                torch.topk(p, 1000, dim=1).indices.cpu()
        sync()
        return time.perf_counter() - t0

    project(), baseline()  # warm-up
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(project())
        theirs.append(baseline())
    po, pb = statistics.median(ours), statistics.median(theirs)
    print(f"\nSweep of {args.images} image(s) x 19 corruptions x 5 severities through {', '.join(args.models)} "
          f"(median of {args.repeats}, interleaved):")
    print(f"{'':<10}{'seconds':>9}{'crops/s':>9}{'img·corr/s':>12}")
    for label, t in (("project", po), ("bare", pb)):
        print(f"{label:<10}{t:9.2f}{n_crops / t:9.2f}{n_crops / t / 5:12.2f}")
    print(f"ratio project/bare (throughput): {pb / po:.2f}")


if __name__ == "__main__":
    main()
