"""``python -m zoo analyze``: Depth lab for one model (zoo.features.analyze)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

from ..params import LRP_COMPOSITES
from ..registry import Zoo
from .common import DEFAULT_MODEL, compile_for_run, device_arg, precision_arg, print_progress


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("analyze", parents=[common], help="per-block responses, gradients and lesions (Depth lab)")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--target", default=None, help="class index or name (default: top-1)")
    s.add_argument("--lesion", action="store_true", help="delete each block's residual branch in turn")
    s.add_argument("--deletions", action="store_true", help="delete k random identity-shortcut blocks at once")
    s.add_argument("--relevance", action="store_true",
                   help="also where LRP relevance flows in each block: into the shortcut or the residual branch")
    s.add_argument("--composite", default=None, choices=list(LRP_COMPOSITES),
                   help=f"the LRP composite of --relevance (default {LRP_COMPOSITES[0]})")
    s.set_defaults(func=cmd_analyze)


def cmd_analyze(zoo: Zoo, args: argparse.Namespace) -> int:
    """The Depth lab's statistics of one model, run as the app runs them (its cache, precision, compile)."""
    from ..features import analyze
    from ..images import load_image
    from ..runtime import Runtime

    rt = Runtime(zoo, args.device, cache_size=1, precision=args.precision, compile=args.compile)
    req = analyze.Request.create(rt, None, [args.model], args.target, lesion=args.lesion, deletions=args.deletions,
                                  relevance=args.relevance, composite=args.composite)
    req = replace(req, image=load_image(args.image))  # checked first; then a bad file fails before any download
    progress = None if args.json else print_progress
    if rt.compile_plan.mode == "on":
        compile_for_run(args, [rt.cache.get(spec, progress) for spec in rt.specs(req.models)])
    result = analyze.result(rt, req, progress)
    print(json.dumps(result.to_json()) if args.json else analysis_text(result, args.lesion, args.deletions))
    return 0


def analysis_text(result, lesion: bool, deletions: bool) -> str:
    """What the command prints without --json: a row per block, the deletions, what each column means."""
    t = result.target
    lesions = f", lesions in {result.precision}" if lesion or deletions else ""
    lines = [f"{result.model} on {result.device}: {result.num_blocks} blocks, target {t.label!r} (class {t.index}, "
             f"p={t.prob:.3f}); statistics in fp32{lesions}, {result.seconds:.1f} s"]
    head = f"{'block':<11}{'proj':>5}{'response std':>14}{'|F|/|x|':>10}{'grad norm':>12}"
    flow = result.relevance.blocks if result.relevance is not None else [None] * result.num_blocks
    if result.relevance is not None:
        head += f"{'R branch':>10}"
    if lesion:
        head += f"{'p deleted':>11}  top-1 when deleted"
    lines.append(head)
    for b, r in zip(result.blocks, flow):
        line = (f"{b.name:<11}{'yes' if b.downsample else '':>5}{b.response_std:14.4g}{b.residual_ratio:10.3f}"
                f"{b.grad_norm:12.4g}")
        if r is not None:
            line += f"{'-' if r.share_branch is None else f'{r.share_branch:.0%}':>10}"
        if b.lesion:
            line += f"{b.lesion.prob:11.3f}  {b.lesion.top1.label}"
        lines.append(line)
    if result.deletions:
        lines.append(f"\nk identity blocks deleted at random ({result.deletions[1].draws} seeded draws each):")
        lines.append(f"{'k':>4}{'draws':>7}{'mean p':>9}{'top-1 kept':>12}")
        lines += [f"{d.k:>4}{d.draws:>7}{d.prob_mean:9.3f}{d.top1_kept:12.0%}" for d in result.deletions]
    lines.append("\nresponse std: spread of each block's 3x3-layer output after BN (paper Fig. 7); |F|/|x|: how much "
                 "the block changes its input; grad norm: gradient of the target logit at the block's input"
                 + ("; p deleted: p(target) with the block's residual branch removed (Veit et al. 2016)."
                    if lesion else ".")
                 + ("" if result.relevance is None else
                    f"\nR branch: share of the LRP relevance arriving at each block's output that flows into its "
                    f"residual branch rather than its shortcut ({result.relevance.composite}; relevance conserved "
                    f"to the pixels: {result.relevance.conservation:.0%})."))
    return "\n".join(lines)
