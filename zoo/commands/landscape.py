"""``python -m zoo landscape``: the loss around one model's weights (zoo.features.landscape, Li et al. 2018)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..errors import ZooError
from ..registry import Zoo
from .common import DEFAULT_MODEL, device_arg, precision_arg


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from ..landscape import DEFAULT_GRID, DEFAULT_MAX_IMAGES, DEFAULT_SEED, DEFAULT_SPAN
    from ..params import DIMS, GRID_MAX, GRID_MIN, LANDSCAPE_IMAGES_MAX, SPAN_MAX

    s = sub.add_parser("landscape", parents=[common],
                       help="the loss around a model's weights along random directions (Li et al. 2018)")
    s.add_argument("paths", nargs="+", metavar="PATH", help="an image, or files, folders, globs, a .zip (as batch)")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
    s.add_argument("--target", default=None, help="class index or name for every image (default: each image's "
                                                   "label from its folder or --labels, else the model's top-1)")
    s.add_argument("--labels", metavar="CSV", help="'file,label' rows, as for batch")
    s.add_argument("--grid", type=int, default=DEFAULT_GRID, metavar="N",
                   help=f"points per axis, odd, {GRID_MIN}-{GRID_MAX} (default {DEFAULT_GRID}: "
                        f"{DEFAULT_GRID} x {DEFAULT_GRID} in 2-D)")
    s.add_argument("--span", type=float, default=DEFAULT_SPAN,
                   help=f"alpha, beta in [-span, span] (default {DEFAULT_SPAN:g}, at most {SPAN_MAX:g})")
    s.add_argument("--dims", type=int, default=2, choices=list(DIMS),
                   help="2: a surface; 1: a curve along delta only")
    s.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the random directions (default {DEFAULT_SEED})")
    s.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES, metavar="N",
                   help=f"average over the first N images (default {DEFAULT_MAX_IMAGES}, at most "
                        f"{LANDSCAPE_IMAGES_MAX})")
    s.add_argument("--directions-out", metavar="FILE.safetensors",
                   help="save delta and eta, keyed by torchvision parameter name, to recompute any point")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    device_arg(s)
    precision_arg(s)  # accepted like everywhere; the landscape itself always runs in fp32
    s.set_defaults(func=cmd_landscape)


def cmd_landscape(zoo: Zoo, args: argparse.Namespace) -> int:
    """The loss around one model's weights along filter-normalized random directions (Li et al. 2018)."""
    from ..features import landscape
    from ..runtime import Runtime

    if args.directions_out and not args.directions_out.lower().endswith(".safetensors"):
        raise ZooError("--directions-out writes safetensors: give a file name ending in .safetensors.")
    rt = Runtime(zoo, args.device, cache_size=1, precision=args.precision)
    req = landscape.Request.create(rt, args.paths, [args.model], args.target, grid=args.grid, span=args.span,
                                   dims=args.dims, seed=args.seed, max_images=args.max_images,
                                   labels_csv=args.labels, globs=True, keep_directions=bool(args.directions_out))
    result = landscape.result(rt, req, None if args.json else _Throttled())
    if args.directions_out:
        result.save_directions(args.directions_out)
    for s in result.skipped:
        print(f"skipped {s.name}: {s.reason}", file=sys.stderr)
    print(json.dumps(result.to_json()) if args.json else landscape_text(result))
    if args.directions_out:
        print(f"wrote {args.directions_out} (delta and eta by parameter name; seed {result.seed})", file=sys.stderr)
    return 0


class _Throttled:
    """Progress on stderr: Hub phases and the first point always; then where the grid is, every 10 seconds."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, fraction: float | None, message: str) -> None:
        if fraction in (None, 0.0) or time.monotonic() - self.last > 10:
            self.last = time.monotonic()
            print(message, file=sys.stderr, flush=True)


def landscape_text(r) -> str:
    """What the command prints without --json: the run, the targets, the loss table."""
    n = len(r.images)
    lines = [f"{r.model} on {r.device}, fp32: cross-entropy averaged over {n} image(s), filter-normalized "
             f"directions, seed {r.seed}, {r.points} points ({r.point_seconds * 1000:.0f} ms each), "
             f"{r.seconds:.1f} s",
             "targets: " + ", ".join(f"{i.name}: {i.label} ({i.chosen})" for i in r.images[:8])
             + (" ..." if n > 8 else ""),
             f"loss at the trained weights: {r.center_loss:.4g}"]
    if r.dims == 1:
        lines += [f"{'alpha':>8}  loss"] + [f"{a:8.2f}  {v:.4g}" for a, v in zip(r.alphas, r.loss[0])]
    else:
        lines.append("loss[beta][alpha]; rows: beta from -span to +span, columns: alpha")
        corner = "b \\ a"
        lines.append(f"{corner:>7}" + "".join(f"{a:>9.2f}" for a in r.alphas))
        for b, row in zip(r.betas, r.loss):
            lines.append(f"{b:7.2f}" + "".join(f"{v:9.3g}" for v in row))
    lines += [f"note: {note}" for note in r.notes]
    return "\n".join(lines)
