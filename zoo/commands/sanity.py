"""``zoo sanity``: can I trust this map? Re-initialise the layers top down and watch each map change."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from ..registry import Zoo
from .common import DEFAULT_MODEL, device_arg, precision_arg


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..explain import IG_STEPS, METHODS
    from ..sanity import DEFAULT_METHODS, GRANULARITIES, SEED

    s = sub.add_parser("sanity", parents=[common],
                       help="can I trust this map? re-initialise the layers top down and watch each map change")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--methods", nargs="+", metavar="METHOD", choices=list(METHODS),
                   help=f"methods to check (default: {' '.join(DEFAULT_METHODS)}); 'edges' is the control")
    s.add_argument("--target", default=None, help="class index or name (default: top-1 of the original model)")
    s.add_argument("--granularity", default="stage", choices=GRANULARITIES,
                   help="'stage': fc, layer4 ... layer1, stem (6 steps); 'block': every residual block, top down; "
                        "'residual-branches': each block's residual branch only, top down (stem, shortcuts, fc kept)")
    s.add_argument("--seed", type=int, default=SEED, help=f"seed of the re-initialisation (default {SEED})")
    s.add_argument("--steps", type=int, default=IG_STEPS.default,
                   help=f"integrated-gradients steps ({IG_STEPS.low}-{IG_STEPS.high}, default {IG_STEPS.default})")
    s.add_argument("--smooth-samples", type=int, default=0, metavar="N",
                   help="smooth MPRT: average each map over N copies of the input (N-1 noisy; 0, the default: off)")
    s.add_argument("--npy-dir", metavar="DIR", help="write each step's map on the crop as METHOD-STEP.npy")
    s.set_defaults(func=run)


def run(zoo: Zoo, args: argparse.Namespace) -> int:
    """The sanity check (Adebayo et al. 2018): does each method's map depend on the weights?"""
    from ..features import sanity
    from ..images import load_image
    from ..runtime import Runtime

    rt = Runtime(zoo, args.device, cache_size=1, precision=args.precision)
    req = sanity.Request.create(rt, None, [args.model], args.methods, args.target, args.granularity, args.seed,
                                {"integrated-gradients": {"steps": args.steps}},
                                smooth_samples=args.smooth_samples)
    name = zoo.get(req.models[0]).name
    maps, forwards = sanity.maps(rt, req) // len(req.methods), sanity.estimate(rt, req).forwards
    req = dataclasses.replace(req, image=load_image(args.image))  # settings first: they fail without reading it
    if not args.json:
        print(f"{name}: {len(req.methods)} method(s) x {maps} maps (the original, then {maps - 1} "
              f"randomization steps), about {forwards} forward-pass equivalents, in fp32; seed {args.seed}",
              file=sys.stderr, flush=True)

    def progress(fraction: float | None, message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    checks = sanity.result(rt, req, progress)
    report = checks.reports[0]
    if args.npy_dir:
        paths = report.save_maps(args.npy_dir)
        if not args.json:
            print(f"wrote {len(paths)} maps to {args.npy_dir}", file=sys.stderr)
    if args.json:
        print(json.dumps(checks.to_json()))  # the feature's one JSON (the /sanity endpoint's)
        return 0
    print(text(report))
    return 0


def text(report: Any) -> str:
    """The report as the command line prints it: a table of similarities per method, and the verdicts."""
    from ..explain import METHODS
    from ..sanity import PASS_BELOW

    t = report.target
    lines = [f"{report.model}, class {t.label!r} ({t.index}), granularity {report.granularity}, seed {report.seed}: "
             f"similarity of each map with the original as the layers are randomized, top down"]
    fmt = lambda v: f"{v:6.2f}" if v is not None else f"{'-':>6}"  # noqa: E731
    for m in report.methods:
        at = f" at {m.layer}" if m.layer else ""
        verdict = {True: "PASSES", False: "FAILS", None: "no verdict"}[m.passes]
        lines += ["", f"{METHODS[m.method].label}{at}: {verdict}",
                  f"  {'randomized':<12}{'|rank|':>8}{'rank':>8}{'SSIM':>8}"]
        for s in m.steps:
            mark = "  <- verdict" if s.randomized == m.verdict_at else ""
            lines.append(f"  {s.randomized:<12}{fmt(s.spearman_abs):>8}{fmt(s.spearman):>8}{fmt(s.ssim):>8}{mark}")
        lines += [f"  note: {note}" for note in m.notes]
        lines += [f"  {line}" for line in m.readings()]
    random = "every residual branch" if report.granularity == "residual-branches" else "fc and layer4"
    lines += ["", f"A method passes when, with {random} random, both the rank correlation of the absolute maps "
                  f"and SSIM fall below {PASS_BELOW}. 'edges' never reads the network: it must fail."]
    return "\n".join(lines)
