"""``python -m zoo``: list, download, pin, classify, explain and measure the ResNets (and their robustness); check a deployment."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Sequence

from .errors import ZooError
from .commands.common import (DEFAULT_MODEL, ProgressPrinter, compile_for_run, device_arg,  # noqa: F401
                              precision_arg, print_progress)
from .registry import Zoo

# One module per command (zoo/commands/<name>.py), each with ``add_parser(sub, common)`` that
# parses into its feature's request; build_parser adds them in this order.
COMMANDS: tuple[str, ...] = (
    "zoo_table",
    "selfcheck",
    "sanity",
    "robustness",
    "compare",
    "analyze",
    "landscape",
)


def cmd_classify(zoo: Zoo, args: argparse.Namespace) -> int:
    from .images import load_image
    from .inference import classify
    from .models import load_model

    spec = zoo.get(args.model)
    image = load_image(args.image)  # a bad path fails before seconds are spent on weights
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    compile_for_run(args, [model])
    result = classify(model, image, top_k=args.top)
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    for note in result.notes:
        print(f"note: {note}")
    print(f"{spec.name} on {result.device}, {result.precision} ({result.seconds * 1000:.0f} ms):")
    for p in result.predictions:
        print(f"  {p.prob * 100:6.2f}%  {p.label}  (class {p.index})")
    return 0


def cmd_explain(zoo: Zoo, args: argparse.Namespace) -> int:
    from .explain import METHODS, layer_param
    from .images import load_image
    from .inference import classify
    from .models import load_model

    spec = zoo.get(args.model)
    if args.layer == "all":
        return explain_every_stage(zoo, args)
    names = list(METHODS) if args.method == "all" else [args.method]
    if args.method != "all":  # a layer the method refuses, or parameters over the limits, fail now
        layer_param(args.method, {"layer": args.layer}, spec.cam_layer)
        METHODS[args.method].passes(method_params(args.method, args), spec.preprocessing.crop)
    image = load_image(args.image)
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    compile_for_run(args, [model])
    run = classify(model, image, top_k=5)
    failed = 0
    for name in names:
        try:
            explain_one(model, run, name, args, suffix=args.method == "all")
        except ZooError as e:
            if args.method != "all":
                raise
            failed += 1  # one method's refusal (CAM below layer4) does not stop the others
            if args.json:
                print(json.dumps({"model": spec.name, "method": name, "error": str(e)}), flush=True)
            else:
                print(f"{name}: skipped: {e}", flush=True)
    return 0 if failed < len(names) else 2


def explain_every_stage(zoo: Zoo, args: argparse.Namespace) -> int:
    """``explain --layer all``: the method's maps at layer1 ... layer4, one line (or JSON object) each."""
    from pathlib import Path

    from .explain import METHODS, check_every_stage, every_stage, every_stage_passes
    from .images import load_image
    from .inference import classify
    from .models import load_model
    from .render import overlay_crop, save_png

    if args.method == "all":
        raise ZooError("--layer all shows one method at every stage; name one method with --method.")
    if args.faithfulness:
        raise ZooError("--faithfulness scores one map; use it with one --layer, not --layer all.")
    check_every_stage(args.method)  # CAM and the input methods have no map at every stage
    spec = zoo.get(args.model)
    params = method_params(args.method, args)
    passes = every_stage_passes(args.method, params, spec.preprocessing.crop)
    image = load_image(args.image)
    model = load_model(spec, args.device, progress=None if args.json else print_progress,
                       precision=args.precision)
    run = classify(model, image, top_k=5)
    maps = every_stage(model, run, args.method, args.target, **params)
    for ex in maps:
        paths = []
        for path, kind in ((args.npy, "npy"), (args.out, "png")):
            if not path:
                continue
            path = Path(path)
            path = path.with_name(f"{path.stem}-{ex.layer}{path.suffix}")
            if kind == "npy":
                import numpy as np

                np.save(path, ex.raw.astype("float32"))
            else:
                save_png(overlay_crop(run, ex.raw, cmap=args.cmap, alpha=args.alpha), path)
            paths.append(path)
        t = ex.target
        if args.json:
            print(json.dumps({"model": spec.name, "method": args.method, "device": run.device,
                              "precision": run.precision, "precision_note": run.precision_note,
                              "target": {"index": t.index, "label": t.label, "prob": t.prob},
                              "layer": ex.layer, "shape": list(ex.raw.shape), "seconds": round(ex.seconds, 4),
                              "passes": passes, "notes": run.notes + ex.notes}), flush=True)
            continue
        for note in ex.notes:
            print(f"note: {note}")
        print(f"{spec.name} · {METHODS[args.method].label} for {t.label!r} (class {t.index}) at {ex.layer}: "
              f"map {ex.raw.shape[0]}x{ex.raw.shape[1]}", flush=True)
        for path in paths:
            print(f"wrote {path}")
    if not args.json:
        how = ("one forward and one backward for all four" if passes == 3
               else f"one run per stage ({passes} forward-pass equivalents)")
        print(f"every stage: {how}. Earlier stages are finer (56x56 at layer1) and see less abstract features "
              "(edges, textures); each stage's map is a different layer's evidence, so maps can flip between "
              "stages.")
    return 0


def method_params(name: str, args: argparse.Namespace) -> dict:
    """The command line's parameters for one method."""
    if name == "occlusion":
        return {"window": args.window, "stride": args.stride}
    if name == "integrated-gradients":
        return {"steps": args.steps}
    return {}


def explain_one(model, run, name: str, args: argparse.Namespace, suffix: bool) -> None:
    """One method's map (and its scores with --faithfulness); one line or one JSON object."""
    from pathlib import Path

    from .explain import METHODS, explain, takes_layer
    from .faithfulness import faithfulness
    from .render import overlay_crop, save_png

    params = method_params(name, args)
    if args.layer and (takes_layer(name) or not suffix):  # --method all: input methods just take none
        params["layer"] = args.layer
    ex = explain(model, run, name, args.target, **params)
    scores = faithfulness(model, run, ex.raw, ex.target.index) if args.faithfulness else None
    paths = []
    for path, write in ((args.npy, "npy"), (args.out, "png")):
        if not path:
            continue
        path = Path(path)
        if suffix:
            path = path.with_name(f"{path.stem}-{name}{path.suffix}")
        if write == "npy":
            import numpy as np

            np.save(path, ex.raw.astype("float32"))
        else:
            save_png(overlay_crop(run, ex.raw, cmap=args.cmap, alpha=args.alpha), path)
        paths.append(path)
    if args.json:
        t = ex.target
        out = {"model": model.spec.name, "method": name, "device": run.device, "precision": run.precision,
               "precision_note": run.precision_note,
               "target": {"index": t.index, "label": t.label, "prob": t.prob}, "shape": list(ex.raw.shape),
               "layer": ex.layer, "seconds": round(ex.seconds, 4), "notes": run.notes + ex.notes,
               "faithfulness": None}
        if scores is not None:
            f = scores.to_json()
            out["faithfulness"] = {k: f[k] for k in ("deletion_auc", "insertion_auc", "deletion_curve",
                                                      "insertion_curve", "fractions", "steps", "forwards", "seconds",
                                                      "road")}
        print(json.dumps(out), flush=True)
        return
    for note in run.notes + ex.notes:
        print(f"note: {note}")
    at = f" at {ex.layer}" if ex.layer else ""
    print(f"{model.spec.name} · {METHODS[name].label} for {ex.target.label!r} (class {ex.target.index}, "
          f"p={ex.target.prob:.3f}){at}; map {ex.raw.shape[0]}x{ex.raw.shape[1]}, {ex.seconds * 1000:.0f} ms",
          flush=True)
    if scores is not None:
        print(f"  deletion AUC {scores.deletion_auc:.4f} (lower is better) · insertion AUC "
              f"{scores.insertion_auc:.4f} (higher is better) · {scores.forwards} forwards, "
              f"{scores.seconds * 1000:.0f} ms", flush=True)
        if scores.road is not None:
            r = scores.road
            print(f"  ROAD {r.combined:+.4f} (higher is better; percentiles {', '.join(map(str, r.percentiles))}) · "
                  f"{r.forwards} forwards, {r.seconds * 1000:.0f} ms", flush=True)
    for path in paths:
        print(f"wrote {path}")


def engine_args(s: argparse.ArgumentParser, command: str) -> None:
    """--engine, --ray-address, --workers, --resume: how a long run's forwards run, and how it
    survives a stop. ``zoo batch`` and ``zoo robustness`` take the same."""
    s.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: this process (default); ray: a Ray cluster (pip install -r requirements-ray.txt)")
    s.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --engine ray: the cluster to join ('auto': the one this machine belongs to, see "
                        "`ray start`); default: start a local Ray instance for this run")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --engine ray: actors per model (default: one per GPU of the cluster, or its CPUs "
                        "shared out between the models)")
    s.add_argument("--resume", action="store_true",
                   help=f"go on with the journal --out FILE.jsonl: its {command} results are kept, only what it "
                        "does not hold yet runs, and the summary covers all of it")


def make_executor(zoo: Zoo, args: argparse.Namespace, command: str, progress=None, cache=None,
                  forwards: int | None = None):
    """The one way a command gets its executor: ``specs -> Executor``, as ``--engine``,
    ``--ray-address``, ``--workers``, ``--out FILE.jsonl`` and ``--resume`` say.

    Local: the models are loaded here (verified download), through ``cache`` (an
    ``Explorer``'s ``ModelCache``) or a cache of its own.
    Ray: each actor loads its model on its node through the same verified code; nothing
    imports Ray otherwise. With ``--out`` ending in ``.jsonl`` the executor is wrapped in a
    journal (``zoo.batch.journal.Journaled``) that writes every result as it arrives and,
    with ``--resume``, runs only what the file does not hold. ``forwards``: the run's
    forwards per model, for ``--compile auto`` (``compile_for_run``; local models only).
    """
    out = getattr(args, "out", None)
    journal = bool(out and out.lower().endswith(".jsonl"))
    if args.resume and not journal:
        raise ZooError("--resume goes on with a journal: pass --out FILE.jsonl (the same file as the run to resume).")
    if args.engine != "ray" and (args.ray_address or args.workers):
        raise ZooError("--ray-address and --workers are for --engine ray.")

    def make(specs):
        if args.engine == "ray":
            from .batch.ray_executor import RayExecutor

            ex = RayExecutor(specs, device=args.device, precision=args.precision, address=args.ray_address,
                             workers=args.workers)
        else:
            from .batch import LocalExecutor
            from .models import ModelCache

            from .batch import default_batch_size

            models = cache or ModelCache(len(specs), args.device, precision=args.precision)
            # auto's precision is measured at the run's batch size (zoo.autotune)
            models.batch_size = getattr(args, "batch_size", None) or default_batch_size(models.device)
            lms = [models.get(spec, progress) for spec in specs]
            compile_for_run(args, lms, forwards, models.batch_size)
            ex = LocalExecutor(lms)
        if journal:
            from .batch.journal import Journaled

            ex = Journaled(ex, out, command=command, resume=args.resume)
        return ex

    return make


def cmd_batch(zoo: Zoo, args: argparse.Namespace) -> int:
    """Every chosen depth over many images: JSON lines or a table, a CSV/JSON/JSON-lines file, a summary."""
    import csv

    from .batch import BatchResult, ImageResult, Skipped, csv_header, csv_row, gather, prediction_records
    from .service import Explorer

    models = args.models or [s.name for s in zoo.builtin_depths]
    last = [0.0]

    def progress(fraction: float | None, message: str) -> None:
        # Hub phases always; batch progress every few seconds (it comes once per chunk and model).
        if fraction is None or time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            print(message, file=sys.stderr, flush=True)

    explorer = Explorer(zoo, args.device, cache_size=len(models), precision=args.precision, compile=args.compile)
    images = len(gather(args.paths, labels_csv=args.labels, globs=True).items)  # a listing: nothing decoded
    make = make_executor(zoo, args, "batch", progress, explorer.cache, forwards=images)
    journal = bool(args.out and args.out.lower().endswith(".jsonl"))
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out and not journal else None
    as_json_file = bool(args.out and args.out.lower().endswith(".json"))
    writer = csv.writer(out) if out and not as_json_file else None
    if writer:
        writer.writerow(csv_header(args.top))

    result, labels = None, ()
    try:
        for event in explorer.batch_stream(args.paths, models, labels_csv=args.labels, top_k=args.top,
                                           batch_size=args.batch_size, globs=True, keep_images=as_json_file,
                                           progress=progress, executor=make):
            if isinstance(event, Skipped):
                print(f"skipped {event.name}: {event.reason}", file=sys.stderr)
            elif isinstance(event, ImageResult):
                labels = labels or zoo.get(models[0]).labels or _imagenet()
                records = list(prediction_records(event, models, labels, args.top))
                if writer:
                    writer.writerows(csv_row(r, args.top) for r in records)
                if args.json:
                    for r in records:
                        print(json.dumps(r), flush=True)
                else:
                    print(_image_line(event, records))
            elif isinstance(event, BatchResult):
                result = event
    finally:
        if out:
            if as_json_file and isinstance(result, BatchResult):
                json.dump(result.to_json(), out)
            out.close()
    assert isinstance(result, BatchResult)
    if args.json:
        print(json.dumps({"summary": result.summary()}))
    else:
        print()
        print(_summary_text(result))
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _imagenet() -> tuple[str, ...]:
    from .models import imagenet_labels

    return imagenet_labels()


def _image_line(img, records: list[dict]) -> str:
    label = f" [{records[0]['label']}]" if records[0]["label"] else ""
    mark = {True: " ✓", False: " ✗", None: ""}
    preds = " · ".join(f"{r['model']}: {r['predictions'][0]['label']} {r['predictions'][0]['prob'] * 100:.0f}%"
                       f"{mark[r['correct']]}" for r in records)
    return f"{img.name}{label}  {preds}" + ("" if img.agree else "  (depths disagree)")


def _summary_text(result) -> str:
    pct = lambda v, n: "-" if v is None else f"{v * 100:5.1f}% ({n})"  # noqa: E731
    lines = [f"{result.n_images} images ({result.n_labelled} labelled), {len(result.skipped)} skipped; "
             f"{result.device}, {result.precision}, batch {result.batch_size}, {result.seconds:.1f} s",
             f"{'model':<14}{'top-1':>16}{'top-5':>16}{'mean conf':>11}{'images/s':>10}"]
    for s in result.per_model:
        lines.append(f"{s.name:<14}{pct(s.top1, s.top1_correct):>16}{pct(s.top5, s.top5_correct):>16}"
                     f"{s.mean_confidence:11.3f}{s.images_per_s:10.1f}")
    lines += ["", "Agreement (share of images with the same top-1):",
              " " * 14 + "".join(f"{n[:10]:>11}" for n in result.models)]
    for name, row in zip(result.models, result.agreement):
        lines.append(f"{name:<14}" + "".join(f"{v:11.2f}" for v in row))
    if result.mattered:
        lines += ["", "Where depth mattered:"]
        lines += [f"  {m.image.name}: {m.reason}" for m in result.mattered]
    if result.skipped:
        lines += ["", f"Skipped {len(result.skipped)}:"] + [f"  {s.name}: {s.reason}" for s in result.skipped]
    lines += [f"note: {n}" for n in result.notes]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--zoo", metavar="FILE", default=argparse.SUPPRESS,
                        help="TOML file with extra [[model]] entries (default: $ZOO_FILE)")
    p = argparse.ArgumentParser(prog="python -m zoo", parents=[common],
                                description="ImageNet ResNets (18-152) from the Hugging Face Hub: "
                                            "classify, explain, measure.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(sub, common)

    def model_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("image", metavar="IMAGE")
        s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
        device_arg(s)
        precision_arg(s)
        s.add_argument("--json", action="store_true", help="print one JSON object")

    s = sub.add_parser("classify", parents=[common], help="top-k ImageNet classes of an image")
    model_args(s)
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.set_defaults(func=cmd_classify)

    from .explain import IG_STEPS, MAX_OCCLUSION_POSITIONS, METHODS, OCCLUSION_STRIDE, OCCLUSION_WINDOW, STAGES

    s = sub.add_parser("explain", parents=[common], help="where the network looked")
    model_args(s)
    s.add_argument("--method", default="cam", choices=[*METHODS, "all"],
                   help="explanation method, or 'all': one line (or JSON object) per method")
    s.add_argument("--layer", default=None, choices=[*STAGES, "all"],
                   help="stage the map is read from (default layer4; CAM works on layer4 only); 'all': the "
                        "method's maps at layer1 ... layer4, one forward and one backward for Grad-CAM, XGrad-CAM "
                        "and Layer-CAM")
    s.add_argument("--faithfulness", action="store_true",
                   help="also score the map: deletion AUC (lower is better), insertion AUC (higher is better) "
                        "and ROAD (higher is better), about 50 forwards and a few seconds of imputation")
    s.add_argument("--target", default=None, help="class index or name (default: top-1)")
    s.add_argument("--out", metavar="PNG", help="write the overlay on the model's crop")
    s.add_argument("--npy", metavar="NPY", help="write the raw map (float32, before normalising/upsampling)")
    s.add_argument("--cmap", default="jet")
    s.add_argument("--alpha", type=float, default=0.5)
    # Defaults and limits are zoo.explain's, as in the page and the API.
    s.add_argument("--window", type=int, default=OCCLUSION_WINDOW.default,
                   help=f"occlusion window (pixels, default {OCCLUSION_WINDOW.default})")
    s.add_argument("--stride", type=int, default=OCCLUSION_STRIDE.default,
                   help=f"occlusion stride (pixels, default {OCCLUSION_STRIDE.default}); at most "
                        f"{MAX_OCCLUSION_POSITIONS} window positions in all")
    s.add_argument("--steps", type=int, default=IG_STEPS.default,
                   help=f"integrated-gradients steps ({IG_STEPS.low}-{IG_STEPS.high}, default {IG_STEPS.default})")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("batch", parents=[common], help="many images at once: every depth, accuracy when labelled")
    s.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (walked), globs, .zip files")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    s.add_argument("--labels", metavar="CSV", help="'file,label' rows; otherwise labels come from folder names "
                                                   "(ImageNet class names or WordNet ids), if any")
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="default: 64 on CUDA, 32 on MPS, 16 on CPU")
    s.add_argument("--out", metavar="FILE", help="every prediction as CSV (or JSON when FILE ends in .json); "
                                                 "FILE.jsonl: a journal, one JSON line per image and model written "
                                                 "as each is done, that --resume goes on with")
    s.add_argument("--json", action="store_true", help="JSON lines: one per image and model, then a summary")
    device_arg(s)
    precision_arg(s)
    engine_args(s, "batch")
    s.set_defaults(func=cmd_batch)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "compile", None) == "on" or (getattr(args, "compile", None) is None
                                                      and os.environ.get("ZOO_COMPILE", "").lower() == "on"):
            # --compile on where it cannot be done fails at once, in every command
            from .compiled import resolve
            from .models import resolve_device

            resolve("on", resolve_device(getattr(args, "device", "auto")))
        zoo = Zoo.load(getattr(args, "zoo", None))
        return args.func(zoo, args)
    except ZooError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
