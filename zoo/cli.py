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
    "classify",
    "zoo_table",
    "selfcheck",
    "sanity",
    "robustness",
    "compare",
    "analyze",
    "landscape",
)


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
