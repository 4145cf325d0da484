"""``zoo rank``: several methods' maps of one image for one class, ranked by how faithful each is."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..registry import Zoo
from .classify import load, runtime
from .common import model_args, print_progress


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..explain import METHODS
    from ..features.rank import RANK_DEFAULT, RANK_KEYS

    s = sub.add_parser("rank", parents=[common],
                       help="rank explanation methods on one image by faithfulness (deletion, insertion, ROAD)")
    model_args(s)
    s.add_argument("--methods", nargs="+", metavar="METHOD", choices=list(METHODS),
                   help=f"methods to rank (default: the cheap ones, {' '.join(RANK_DEFAULT)})")
    s.add_argument("--target", default=None, help="class index or name (default: the model's top-1)")
    s.add_argument("--sort", default="deletion", choices=RANK_KEYS,
                   help="deletion (lower is better, default), insertion or road (higher is better)")
    s.set_defaults(func=run)


def run(zoo: Zoo, args: argparse.Namespace) -> int:
    """The ranking (``zoo.features.rank``): its JSON (the /rank_methods endpoint's) or a table."""
    from dataclasses import replace

    from ..features import rank as feature
    from ..images import load_image

    rt = runtime(zoo, args)
    req = feature.Request.create(rt, None, args.model, args.target, args.methods, args.sort)  # settings first
    req = replace(req, image=load_image(args.image))
    load(rt, args, req.model)
    ranking = feature.result(rt, req, None if args.json else print_progress)
    print(json.dumps(ranking.to_json()) if args.json else text(ranking))
    return 0


def text(ranking: Any) -> str:
    """The ranking as the command line prints it: one row per method, best first."""
    t = ranking.target
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9}"  # noqa: E731
    lines = [f"{ranking.run.model}: class {t.label!r} ({t.index}, p={t.prob:.3f}); methods best first by "
             f"{ranking.by}", f"{'method':<26}{'layer':<10}{'deletion':>9}{'insertion':>10}{'ROAD':>9}"]
    for r in ranking.sorted(ranking.by):
        f = r.faithfulness
        road = None if f.road is None else f.road.combined
        lines.append(f"{r.explanation.method:<26}{r.explanation.layer or '-':<10}{fmt(f.deletion_auc)}"
                     f" {fmt(f.insertion_auc)}{fmt(road)}")
    lines += ["", "deletion: area under the curve as the most important pixels go (lower is better); insertion: "
                  "as they come back (higher is better); ROAD: the combined score (higher is better)."]
    lines += [f"note: {n}" for n in ranking.run.notes]
    return "\n".join(lines)
