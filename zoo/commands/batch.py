"""``python -m zoo batch``: every chosen depth over many images, and "which depth should I ship?".

Also the engine flags (``engine_args``) and the one way a long command gets its executor
(``make_executor``), which ``zoo robustness`` shares.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import ZooError
from ..params import DECISION_LEVEL
from ..registry import Zoo
from .common import compile_for_run, device_arg, precision_arg


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


def make_executor(zoo: Zoo, args: argparse.Namespace, command: str, progress: Any = None, cache: Any = None,
                  forwards: int | None = None) -> Any:
    """The one way a command gets its executor: ``specs -> Executor``, as ``--engine``,
    ``--ray-address``, ``--workers``, ``--out FILE.jsonl`` and ``--resume`` say.

    Local: the models are loaded here (verified download), through ``cache`` (a runtime's
    ``ModelCache``) or a cache of its own. Ray: each actor loads its model on its node through
    the same verified code; nothing imports Ray otherwise. With ``--out`` ending in ``.jsonl``
    the executor is wrapped in a journal (``zoo.batch.journal.Journaled``) that writes every
    result as it arrives and, with ``--resume``, runs only what the file does not hold.
    ``forwards``: the run's forwards per model, for ``--compile auto`` (local models only).
    """
    out = getattr(args, "out", None)
    journal = bool(out and out.lower().endswith(".jsonl"))
    if args.resume and not journal:
        raise ZooError("--resume goes on with a journal: pass --out FILE.jsonl (the same file as the run to resume).")
    if args.engine != "ray" and (args.ray_address or args.workers):
        raise ZooError("--ray-address and --workers are for --engine ray.")

    def make(specs: list) -> Any:
        if args.engine == "ray":
            from ..batch.ray_executor import RayExecutor

            ex = RayExecutor(specs, device=args.device, precision=args.precision, address=args.ray_address,
                             workers=args.workers)
        else:
            from ..batch import LocalExecutor, default_batch_size
            from ..models import ModelCache

            models = cache or ModelCache(len(specs), args.device, precision=args.precision)
            # auto's precision is measured at the run's batch size (zoo.autotune)
            models.batch_size = getattr(args, "batch_size", None) or default_batch_size(models.device)
            lms = [models.get(spec, progress) for spec in specs]
            compile_for_run(args, lms, forwards, models.batch_size)
            ex = LocalExecutor(lms)
        if journal:
            from ..batch.journal import Journaled

            ex = Journaled(ex, out, command=command, resume=args.resume)
        return ex

    return make


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
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
    s.add_argument("--json", action="store_true", help="JSON lines: one per image and model, then the run's "
                                                       "JSON (the /batch endpoint's)")
    g = s.add_argument_group("which depth should I ship? (README)")
    g.add_argument("--decide", action="store_true",
                   help="add the decision: accuracy with bootstrap intervals, paired McNemar tests, error "
                        "consistency, calibration, cost here, and a recommended depth (labelled images)")
    g.add_argument("--max-ms", type=float, default=None, metavar="MS",
                   help="with --decide: a latency budget, milliseconds per image at batch 1 on this machine")
    g.add_argument("--level", type=float, default=DECISION_LEVEL, metavar="P",
                   help=f"with --decide: McNemar's significance level (default {DECISION_LEVEL})")
    g.add_argument("--corruptions", nargs="+", metavar="NAME", default=None,
                   help="with --decide: also accuracy under these corruptions (the robustness command's names)")
    g.add_argument("--severities", nargs="+", type=int, metavar="S", default=None,
                   help="with --corruptions: severities 1-5 (default 3)")
    g.add_argument("--seed", type=int, default=0, help="with --decide: the bootstrap's and corruptions' seed")
    device_arg(s)
    precision_arg(s)
    engine_args(s, "batch")
    s.set_defaults(func=cmd_batch)


def cmd_batch(zoo: Zoo, args: argparse.Namespace) -> int:
    """Every chosen depth over many images: JSON lines or a table, a CSV/JSON/JSON-lines file, a summary."""
    from ..batch import BatchResult, gather
    from ..features import batch as feature
    from ..runtime import Runtime

    if not args.decide and (args.max_ms is not None or args.corruptions):
        raise ZooError("--max-ms and --corruptions are parts of the decision: add --decide.")
    last = [0.0]

    def progress(fraction: float | None, message: str) -> None:
        # Hub phases always; batch progress every few seconds (it comes once per chunk and model).
        if fraction is None or time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            print(message, file=sys.stderr, flush=True)

    models = args.models or [s.name for s in zoo.builtin_depths]
    rt = Runtime(zoo, args.device, cache_size=len(models), precision=args.precision, compile=args.compile)
    as_json_file = bool(args.out and args.out.lower().endswith(".json"))
    req = feature.Request.create(rt, args.paths, models, labels_csv=args.labels, top_k=args.top,
                                 batch_size=args.batch_size, globs=True, keep_images=as_json_file,
                                 decide=args.decide, max_ms=args.max_ms, level=args.level,
                                 corruptions=args.corruptions, severities=args.severities, seed=args.seed)
    images = len(gather(args.paths, labels_csv=args.labels, globs=True).items)  # a listing: nothing decoded
    make = make_executor(zoo, args, "batch", progress, rt.cache, forwards=images)
    result = _stream(zoo, args, feature.run(rt, req, progress, make), req.models, as_json_file)
    assert isinstance(result, BatchResult)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print()
        print(summary_text(result))
        if result.decision is not None:
            print()
            print(decision_text(result.decision))
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _stream(zoo: Zoo, args: argparse.Namespace, events: Any, models: tuple[str, ...], as_json_file: bool) -> Any:
    """Print each image (a line, or its JSON records) and skipped file as it comes; write --out; the result."""
    import csv

    from ..batch import BatchResult, ImageResult, Skipped, csv_header, csv_row, prediction_records

    journal = bool(args.out and args.out.lower().endswith(".jsonl"))
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out and not journal else None
    writer = csv.writer(out) if out and not as_json_file else None
    if writer:
        writer.writerow(csv_header(args.top))
    result, labels = None, ()
    try:
        for event in events:
            if isinstance(event, Skipped):
                print(f"skipped {event.name}: {event.reason}", file=sys.stderr)
            elif isinstance(event, ImageResult):
                labels = labels or zoo.get(models[0]).class_names
                records = list(prediction_records(event, models, labels, args.top))
                if writer:
                    writer.writerows(csv_row(r, args.top) for r in records)
                if args.json:
                    for r in records:
                        print(json.dumps(r), flush=True)
                else:
                    print(image_line(event, records))
            elif isinstance(event, BatchResult) and not event.partial:
                result = event
    finally:
        if out:
            if as_json_file and isinstance(result, BatchResult):
                json.dump(result.export_json(), out)
            out.close()
    return result


def image_line(img: Any, records: list[dict]) -> str:
    label = f" [{records[0]['label']}]" if records[0]["label"] else ""
    mark = {True: " ✓", False: " ✗", None: ""}
    preds = " · ".join(f"{r['model']}: {r['predictions'][0]['label']} {r['predictions'][0]['prob'] * 100:.0f}%"
                       f"{mark[r['correct']]}" for r in records)
    return f"{img.name}{label}  {preds}" + ("" if img.agree else "  (depths disagree)")


def summary_text(result: Any) -> str:
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


def decision_text(d: Any) -> str:
    """The decision as the terminal shows it: a table, the recommendation, the pairs."""
    iv = lambda v, ci: "-" if v is None else f"{v * 100:5.1f}% [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]"  # noqa: E731
    num = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    lines = [f"Which depth should I ship? ({d.n} labelled images; 95 % bootstrap intervals, seed {d.seed})",
             f"{'model':<14}{'top-1 [95 %]':>24}{'top-5 [95 %]':>24}{'ECE':>7}{'NLL':>7}{'Brier':>7}"
             f"{'ms@1':>8}{'ms/img':>8}"]
    for m in d.models:
        a, c, k = d.accuracy.get(m, {}), d.calibration.get(m, {}), d.cost.get(m, {})
        lines.append(f"{m:<14}{iv(a.get('top1'), a.get('top1_ci')):>24}{iv(a.get('top5'), a.get('top5_ci')):>24}"
                     f"{num(c.get('ece'), '.3f'):>7}{num(c.get('nll'), '.2f'):>7}{num(c.get('brier'), '.3f'):>7}"
                     f"{num(k.get('ms_batch1'), '.1f'):>8}{num(k.get('ms_per_image'), '.1f'):>8}")
    lines += ["", *d.sentences()]
    if d.robustness:
        for r in d.robustness["results"]:
            lines.append(f"{r['corruption']} severity {r['severity']}: " + ", ".join(
                f"{m} {iv(r['top1'][m], r['top1_ci'][m]).strip()}" for m in d.models))
    published = {m: p for m, p in d.published.items() if p}
    if published:
        lines += ["", "Published ImageNet figures (not your data): README, 'Which depth should I ship?'"]
    return "\n".join(lines)
