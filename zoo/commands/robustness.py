"""``zoo robustness``: a folder under ImageNet-C corruptions (JSON lines or a table; accuracy, CE, mCE), or
one image: every corruption x severity (``--sweep``) or one corruption at one severity (``--corruption``,
``--severity``), as the Robustness lab's sweep and live view (and their endpoints) show them."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import ZooError
from ..registry import Zoo
from .batch import engine_args, make_executor
from .common import device_arg, precision_arg

DEFAULT_SEVERITY = 3  # zoo.features.robustness's (not imported here: --help loads no engine)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("robustness", parents=[common],
                       help="a folder under ImageNet-C corruptions (Hendrycks & Dietterich 2019): accuracy, CE, mCE")
    s.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (walked), globs, .zip files "
                                                            "(one image with --sweep or --corruption)")
    one = s.add_argument_group("one image (the Robustness lab's sweep and live view)")
    one.add_argument("--sweep", action="store_true", help="every corruption x severity x depth on one image: "
                                                          "where each depth's top-1 breaks (/robustness_sweep)")
    one.add_argument("--corruption", metavar="NAME", help="one corruption at one --severity: every depth's answer "
                                                          "(and with --method its map) (/robustness_live)")
    one.add_argument("--severity", type=int, default=None, metavar="S",
                     help=f"with --corruption: 0 (clean) to 5 (default {DEFAULT_SEVERITY})")
    one.add_argument("--method", default=None, metavar="METHOD",
                     help="with --corruption: each depth's map of the corrupted crop (default: predictions only)")
    one.add_argument("--target", default=None, help="with --sweep or --corruption: class index or name (default: "
                                                    "the class most depths pick on the clean crop)")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    s.add_argument("--corruptions", nargs="+", metavar="NAME",
                   help="corruption names (default: all 19; e.g. fog jpeg_compression gaussian_noise)")
    s.add_argument("--severities", nargs="+", type=int, metavar="S", help="1-5 (default: all five)")
    s.add_argument("--labels", metavar="CSV", help="'file,label' rows; otherwise labels come from folder names "
                                                   "(ImageNet class names or WordNet ids), if any")
    s.add_argument("--seed", type=int, default=0, help="base seed of the random corruptions (default 0); each "
                                                       "crop's own seed is in its JSON line")
    s.add_argument("--save-dir", metavar="DIR", help="write the clean and every corrupted crop as PNG "
                                                     "(DIR/<image>/<corruption>-<severity>.png)")
    s.add_argument("--top", type=int, default=5, metavar="K")
    s.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="default: 64 on CUDA, 32 on MPS, 16 on CPU")
    s.add_argument("--json", action="store_true",
                   help="JSON lines: one per image, model, corruption and severity, then a summary")
    s.add_argument("--out", metavar="FILE.jsonl", help="a journal: one JSON line per image, corruption, severity "
                                                       "and model, written as each is done, that --resume goes on "
                                                       "with")
    device_arg(s)
    precision_arg(s)
    engine_args(s, "robustness")
    s.set_defaults(func=run)


def run(zoo: Zoo, args: argparse.Namespace) -> int:
    """Every chosen depth over the folder's crops; the per-prediction JSON lines, then the summary.
    With ``--sweep`` or ``--corruption``: one image (``one_image``)."""
    if args.sweep or args.corruption:
        return one_image(zoo, args)
    if args.severity is not None or args.method or args.target:
        raise ZooError("--severity, --method and --target are for one image: add --corruption NAME (or --sweep).")
    from ..batch import Skipped, gather
    from ..features import robustness as feature
    from ..robustness_folder import FolderSummary, SampleResult
    from ..params import model_names
    from ..runtime import Runtime

    if args.out and not args.out.lower().endswith(".jsonl"):
        raise ZooError("--out for robustness is a journal of JSON lines: name it FILE.jsonl.")
    rt = Runtime(zoo, args.device, cache_size=len(model_names(zoo, args.models)), precision=args.precision,
                 compile=args.compile)
    req = feature.Request.create(rt, args.paths, args.models, args.corruptions, args.severities, args.seed, args.top,
                                 labels_csv=args.labels, save_dir=args.save_dir, batch_size=args.batch_size,
                                 globs=True)
    last = [0.0]

    def progress(fraction: float | None, message: str) -> None:
        if fraction is None or time.monotonic() - last[0] > 5:
            last[0] = time.monotonic()
            print(message, file=sys.stderr, flush=True)

    # Forwards per model: the clean crop and one per corruption and severity, per image.
    crops = 1 + len(req.corruptions) * len(req.severities)
    images = len(gather(args.paths, labels_csv=args.labels, globs=True).items)  # a listing: nothing decoded
    make = make_executor(zoo, args, "robustness", progress, rt.cache, forwards=images * crops)
    labels = feature.labels_of(rt, req.models)
    result = None
    for event in feature.run(rt, req, progress, executor=make):
        if isinstance(event, Skipped):
            print(f"skipped {event.name}: {event.reason}", file=sys.stderr)
        elif isinstance(event, SampleResult) and args.json:
            for line in feature.record_lines(event, req.models, labels, req.top_k):
                print(line, flush=True)
        elif isinstance(event, FolderSummary) and not event.partial:
            result = event
    assert result is not None
    print(feature.summary_line(result) if args.json else text(result))
    if args.save_dir:
        print(f"wrote the crops to {args.save_dir}", file=sys.stderr)
    return 0


def text(r: Any) -> str:
    """A folder run's summary as the command line prints it."""
    from ..robustness import get_corruption

    pct = lambda v: "    -" if v != v else f"{v * 100:5.1f}"  # noqa: E731  (NaN: no labelled image)
    lines = [f"{r.images} images ({r.labelled} labelled), {len(r.skipped)} skipped; {len(r.corruptions)} corruptions "
             f"x severities {', '.join(map(str, r.severities))}; seed {r.seed}; {r.device}, {r.precision}, "
             f"{r.seconds:.1f} s"]
    head = f"{'corruption':<18}" + "".join(f"{m[:12]:>14}" for m in r.models)
    if not r.labelled:
        lines += ["No labels: accuracy and corruption errors need them (class folders or --labels CSV).", "",
                  "Share of images whose top-1 changed from the clean crop's, % (mean over severities):", head]
        for j, c in enumerate(r.corruptions):
            lines.append(f"{get_corruption(c).label:<18}"
                         + "".join(f"{pct(float(r.changed[i, j].mean())):>14}" for i in range(len(r.models))))
    else:
        alex = "" if r.mce_alexnet is None else f"{'mCE/AlexNet':>13}"
        lines.append(f"{'model':<14}{'clean %':>9}{'mCE':>8}{alex}")
        for i, m in enumerate(r.models):
            row = f"{m:<14}{pct(r.clean_accuracy[i]):>9}{r.mce[i]:8.3f}"
            if r.mce_alexnet is not None:
                row += f"{r.mce_alexnet[i]:13.3f}"
            lines.append(row)
        lines += ["", f"Top-1 accuracy % by corruption (mean over severities); CE relative to {r.reference}:", head]
        for j, c in enumerate(r.corruptions):
            cells = "".join(f"{pct(float(r.accuracy[i, j].mean())):>7} {r.ce[i, j]:6.3f}" for i in range(len(r.models)))
            lines.append(f"{get_corruption(c).label:<18}{cells}")
    if r.skipped:
        lines += ["", f"Skipped {len(r.skipped)}:"] + [f"  {s.name}: {s.reason}" for s in r.skipped]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def one_image(zoo: Zoo, args: argparse.Namespace) -> int:
    """``--sweep`` or ``--corruption``: the feature's ``SweepRequest`` or ``LiveRequest`` on one image;
    its JSON (the endpoint's) or a table."""
    from dataclasses import replace

    from ..features import robustness as feature
    from ..images import load_image
    from ..params import model_names
    from ..runtime import Runtime

    if args.sweep and args.corruption:
        raise ZooError("--sweep runs every corruption, --corruption one: choose one of them.")
    if args.sweep and (args.method or args.severity is not None):
        raise ZooError("--method and --severity are for one corruption (--corruption NAME); a sweep runs every "
                       "severity of --severities with no map.")
    if len(args.paths) != 1:
        raise ZooError(f"--sweep and --corruption take one image, not {len(args.paths)} paths.")
    if args.save_dir or args.out or args.labels or args.resume or args.engine != "local":
        raise ZooError("--save-dir, --out, --labels, --engine and --resume are for a folder run: leave out --sweep "
                       "and --corruption.")
    rt = Runtime(zoo, args.device, cache_size=len(model_names(zoo, args.models)), precision=args.precision,
                 compile=args.compile)
    if args.sweep:
        req: Any = feature.SweepRequest.create(rt, None, args.models, args.corruptions, args.severities,
                                               args.target, args.seed, args.batch_size)
    else:
        severity = DEFAULT_SEVERITY if args.severity is None else args.severity
        req = feature.LiveRequest.create(rt, None, args.models, args.corruption, severity, args.method,
                                         args.target, args.seed, args.top)
    req = replace(req, image=load_image(args.paths[0]))  # settings first: they fail without reading it

    def progress(fraction: float | None, message: str) -> None:
        if fraction is None or fraction <= 0.0:
            print(message, file=sys.stderr, flush=True)

    result = feature.result(rt, req, progress)
    print(json.dumps(result.to_json()) if args.json else (sweep_text(result) if args.sweep else live_text(result)))
    return 0


def sweep_text(sweep: Any) -> str:
    """A sweep as the command line prints it: each depth's breaking point per corruption, and the sentence."""
    from ..robustness import get_corruption

    bps = sweep.breaking_points()
    lines = [f"target {sweep.target_label!r} ({sweep.target}, {sweep.chosen}); severities "
             f"{', '.join(map(str, sweep.severities))}; seed {sweep.seed}; {sweep.device}, {sweep.precision}",
             "", "Lowest severity at which each depth's top-1 changes from its clean one (-: never):",
             f"{'corruption':<18}" + "".join(f"{m[:12]:>14}" for m in sweep.models)]
    for j, c in enumerate(sweep.corruptions):
        lines.append(f"{get_corruption(c).label:<18}"
                     + "".join(f"{(str(int(bps[i, j])) if bps[i, j] else '-'):>14}" for i in range(len(sweep.models))))
    verdict = sweep.verdict()
    return "\n".join([*lines, *(["", verdict.sentence()] if verdict else [])])


def live_text(live: Any) -> str:
    """One corrupted crop as the command line prints it: each depth's top-1 and the target's probability."""
    from ..robustness import get_corruption

    lines = [f"{get_corruption(live.corruption).label}, severity {live.severity} (crop seed {live.seed}); target "
             f"{live.target_label!r} ({live.target})", f"{'model':<14}{'top-1':<32}{'p':>7}{'p(target)':>11}"]
    for run in live.classifications():
        top = run.predictions[0]
        lines.append(f"{run.model:<14}{top.label[:31]:<32}{top.prob:7.3f}{float(run.probs[live.target]):11.3f}")
    return "\n".join(lines)
