"""``python -m zoo compare``: several depths on one image, maps for one shared class (zoo.features.compare)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..registry import Zoo
from .common import compile_for_run, device_arg, precision_arg, print_progress


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..explain import METHODS

    s = sub.add_parser("compare", parents=[common], help="several depths on one image: maps for one shared "
                                                         "class, and whether they look at the same place")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    s.add_argument("--method", default="cam", choices=list(METHODS), help="explanation method (default cam)")
    s.add_argument("--target", default=None, help="class index or name (default: the class most models put first)")
    s.add_argument("--faithfulness", action="store_true", help="also score each depth's map (deletion, insertion, "
                                                               "ROAD)")
    s.add_argument("--transfer", action="store_true",
                   help="also the evidence-transfer matrix: each depth's map deletes pixels for every other depth "
                        "(deletion AUC over that depth's own; with --faithfulness, ROAD too)")
    s.add_argument("--npy-dir", metavar="DIR", help="write each model's raw map as DIR/<model>-<method>-<class>.npy")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object: what /compare's details hold")
    s.set_defaults(func=cmd_compare)


def cmd_compare(zoo: Zoo, args: argparse.Namespace) -> int:
    """Several depths on one image, maps for one shared class, and how far the maps agree."""
    from ..features import compare
    from ..images import load_image
    from ..runtime import Runtime

    models = list(dict.fromkeys(args.models or [s.name for s in zoo.builtin_depths]))
    rt = Runtime(zoo, args.device, cache_size=len(models), precision=args.precision, compile=args.compile)
    req = compare.Request.create(rt, None, models, args.method, args.target, faithfulness=args.faithfulness,
                                 transfer=args.transfer)
    req = replace(req, image=load_image(args.image))  # checked first; then a bad file fails before any download
    progress = None if args.json else print_progress
    if rt.compile_plan.mode == "on":
        compile_for_run(args, [rt.cache.get(spec, progress) for spec in rt.specs(req.models)])
    cmp = compare.result(rt, req, progress)
    written = _save_maps(cmp, args) if args.npy_dir else []
    if args.json:
        print(json.dumps(cmp.to_json()))
        return 0
    print(comparison_text(cmp, args.method))
    for path in written:
        print(f"wrote {path}")
    return 0


def _save_maps(cmp, args: argparse.Namespace) -> list[Path]:
    import numpy as np

    folder = Path(args.npy_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for r in cmp.results:
        path = folder / f"{r.run.model}-{args.method}-{cmp.target}.npy"
        np.save(path, r.explanation.raw.astype("float32"))
        written.append(path)
    return written


def comparison_text(cmp, method: str) -> str:
    """What the command prints without --json: notes, a line per depth, the map-agreement matrices."""
    lines = [f"note: {r.run.model}: {note}" for r in cmp.results for note in r.run.notes + r.explanation.notes]
    lines.append(f"{method} maps for {cmp.target_label!r} (class {cmp.target}; "
                 f"{'the class you gave' if cmp.chosen == 'given' else 'the class most models put first'}):")
    for r in cmp.results:
        top = r.run.predictions[0]
        line = (f"  {r.run.model:<14} top-1 {top.label!r} ({top.prob:.3f}) · p(target) "
                f"{r.explanation.target.prob:.3f} · map {r.explanation.raw.shape[0]}x{r.explanation.raw.shape[1]} · "
                f"{r.seconds * 1000:.0f} ms")
        if r.faithfulness is not None:
            f = r.faithfulness
            line += f" · deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f}"
            if f.road is not None:
                line += f", ROAD {f.road.combined:+.3f}"
        lines.append(line)
    m = cmp.map_agreement
    if len(m.models) > 1:
        lines.append(f"\nDo the depths look at the same place? (on the {m.size}x{m.size} crop)")
        for title, matrix in (("Spearman rank correlation", m.spearman),
                              ("IoU of the top-20 % regions", m.iou_top20)):
            lines.append(f"{title}:\n" + " " * 14 + "".join(f"{n[:10]:>11}" for n in m.models))
            for name, row in zip(m.models, matrix):
                lines.append(f"{name:<14}" + "".join(f"{'-' if v != v else f'{v:.2f}':>11}" for v in row))
    if cmp.transfer is not None:
        lines += ["", transfer_text(cmp.transfer)]
    return "\n".join(lines)


def transfer_text(t) -> str:
    """The evidence-transfer matrix (row: whose map orders the pixels; column: whose confidence falls) and
    its sentence."""
    lines = ["Do the depths use the same evidence? Deletion AUC of the column's model with pixels deleted in the "
             "order of the row's map, over its own map's (1.00: as good as its own; above: slower):",
             " " * 14 + "".join(f"{n[:10]:>11}" for n in t.models)]
    for name, row in zip(t.models, t.deletion):
        lines.append(f"{name:<14}" + "".join(f"{'-' if v != v else f'{v:.2f}':>11}" for v in row))
    lines.append(t.sentence())
    lines += [f"note: {n}" for n in t.notes]
    return "\n".join(lines)
