"""Batch throughput per depth: every precision and trunk, and what ``auto`` chose, against bare torchvision.

    python benchmarks/batch.py [--device auto] [--batch-size 32] [--repeats 5] [--models ...] [--no-compile]
                               [--remeasure]

For each depth, on the same already-decoded, preprocessed CPU batch, interleaved run by run
(medians), images/s, for each precision ``auto`` weighs here (fp32, and bf16 where the CPU
runs it natively; fp16 too on CUDA):

* ``bare P``: ``torchvision.models.<arch>`` with the same weights, eval, ``x.to(device)``, the
  whole model under autocast to P, softmax, top-5, back to the CPU;
* ``eager P``: ``zoo.batch.classify_batch``, what ``zoo.batch.stream`` runs for every chunk and
  model (channels-last, the BatchNorm-folded trunk at P, pooling and fc in fp32, top-5);
* ``compiled P`` (unless ``--no-compile``): the same with the trunk compiled at P (the any-batch
  graph, zoo.compiled);
* ``auto``: the model as a batch run at this batch size loads it (``--precision auto``: measured
  at this batch size by zoo.autotune, or read from its cache; ``--compile auto``: the compiled
  trunk kept only if not clearly slower than eager).

Targets: auto >= 1.4x bare fp32 for ResNet-50 at batch 32; eager P / bare P >= 0.90.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil

import common  # noqa: F401 - puts the project on sys.path
from compare import interleaved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled columns")
    ap.add_argument("--remeasure", action="store_true", help="drop auto's cached measurements first")
    args = ap.parse_args()

    import torch
    import torchvision
    from safetensors.torch import load_file

    from zoo import batch
    from zoo.compile_cache import cache_dir
    from zoo.compiled import resolve
    from zoo.compiling import compile_model
    from zoo.images import load_image, model_crop, to_tensor
    from zoo.models import _DTYPES, ModelCache, autocast, load_model, precision_candidates, resolve_device

    device = resolve_device(args.device)
    names = precision_candidates("auto", device)
    bs = args.batch_size
    specs = common.local_specs(archs=args.models)
    if args.remeasure:
        shutil.rmtree(cache_dir() / "autotune", ignore_errors=True)
    pre = specs[0].preprocessing
    photos = sorted(p for p in common.EXAMPLE.parent.iterdir() if p.suffix in (".png", ".jpg"))
    tensors = [to_tensor(model_crop(load_image(p).image, pre), pre)[0] for p in photos]
    x = torch.stack([tensors[i % len(tensors)] for i in range(bs)])  # decoded and preprocessed, on the CPU
    cache = ModelCache(len(specs), args.device, precision="auto", compile="off" if args.no_compile else "auto")
    cache.batch_size = bs  # as a batch run sets it (zoo.commands.batch.make_executor)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    cols = [f"bare {n}" for n in names] + [f"eager {n}" for n in names]
    cols += [] if args.no_compile else [f"compiled {n}" for n in names]
    print(f"device {device}, batch {bs}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{args.repeats} interleaved runs after warm-up, medians, images/s")
    print(f"{'model':<11}" + "".join(f"{c:>14}" for c in cols) + f"{'auto chose':>20}{'auto':>8}{'auto/bare fp32':>16}")
    for spec in specs:
        lm_auto = cache.get(spec)
        if not args.no_compile:
            cache.compile(lm_auto, ["any"])  # builds, or loads; then compiled vs eager at this batch size
        bare = torchvision.models.get_model(spec.arch.name, weights=None)
        bare.load_state_dict(load_file(str(spec.path)))
        bare = bare.eval().to(device)
        lm = load_model(spec, device, precision="fp32")
        jobs = {}
        for n in names:
            @torch.inference_mode()
            def baseline(dt=_DTYPES[n]) -> None:
                with autocast(device, dt):
                    logits = bare(x.to(device))
                top = torch.topk(torch.softmax(logits.float(), dim=1), 5, dim=1)
                top.indices.cpu(), top.values.cpu()
            jobs[f"bare {n}"] = baseline
            jobs[f"eager {n}"] = lambda m=dataclasses.replace(lm, precision=_DTYPES[n]): batch.classify_batch(m, x, 5)
        if not args.no_compile:
            for n in names:
                c = dataclasses.replace(lm, precision=_DTYPES[n], compiled=None)
                if not compile_model(c, resolve("on", device), ["any"]):
                    raise SystemExit(f"{spec.name} {n}: {c.compile_note}")
                jobs[f"compiled {n}"] = lambda c=c: batch.classify_batch(c, x, 5)
        jobs["auto"] = lambda: batch.classify_batch(lm_auto, x, 5)
        ms = interleaved(jobs, args.repeats, sync, warmup=1)
        ips = {k: bs / (v / 1e3) for k, v in ms.items()}
        trunk = "compiled" if lm_auto.compiled is not None and lm_auto.use_compiled else "eager"
        chose = f"{lm_auto.precision_name} {trunk}"
        print(f"{spec.name:<11}" + "".join(f"{ips[c]:14.1f}" for c in cols)
              + f"{chose:>20}{ips['auto']:8.1f}{ips['auto'] / ips['bare fp32']:16.2f}")
        print(f"{'':<11}eager/bare: " + ", ".join(f"{n} {ips['eager ' + n] / ips['bare ' + n]:.2f}" for n in names)
              + f"; why: {lm_auto.precision_note}; {lm_auto.compile_note or 'eager'}")
        del jobs, lm, bare
    print("target: auto / bare fp32 >= 1.4 for resnet50 at batch 32; eager P / bare P >= 0.90")


if __name__ == "__main__":
    main()
