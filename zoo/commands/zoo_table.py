"""``python -m zoo list | download | pin | stats``: the model zoo (``zoo.features.zoo_table``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from ..errors import ZooError
from ..registry import Zoo
from .common import device_arg, precision_arg, print_progress


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("list", parents=[common], help="the models, their size and whether they are cached")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("download", parents=[common], help="fetch and verify weights")
    s.add_argument("names", nargs="*", metavar="NAME")
    s.add_argument("--all", action="store_true", help="every model in the zoo")
    s.add_argument("--force", action="store_true", help="drop the cached copy first")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("pin", parents=[common],
                       help="read each model's current commit, size and sha256 from the Hub; print the lines to "
                            "paste into zoo/registry.py and the README's front matter")
    s.add_argument("names", nargs="*", metavar="NAME", help="zoo names (default: the five built-in depths)")
    s.set_defaults(func=cmd_pin)

    s = sub.add_parser("stats", parents=[common], help="parameters, FLOPs and speed per depth and stage")
    s.add_argument("--json", action="store_true")
    s.add_argument("--resolution", type=int, default=224, metavar="N")
    s.add_argument("--stages", metavar="NAME", help="per-stage table of one model, as in the paper's Table 1")
    s.add_argument("--latency", action="store_true", help="also measure latency on --device")
    device_arg(s)
    precision_arg(s)
    s.set_defaults(func=cmd_stats)


def _table(zoo: Zoo, args: argparse.Namespace, latency: bool = False):
    from ..features import zoo_table
    from ..runtime import Runtime

    rt = Runtime(zoo, getattr(args, "device", "auto"), precision=getattr(args, "precision", None))
    req = zoo_table.Request.create(rt, getattr(args, "resolution", 224), latency)
    return zoo_table.result(rt, req, None if args.json else print_progress)


def cmd_list(zoo: Zoo, args: argparse.Namespace) -> int:
    table = _table(zoo, args)
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
        return 0
    print(f"{'name':<18}{'depth':>6}  {'params':>11}  {'top-1':>6}  {'top-5':>6}  {'cached':<7}repo")
    for e in table.entries:
        r = e.row
        acc = lambda v: f"{v:6.2f}" if v is not None else f"{'-':>6}"  # noqa: E731
        print(f"{r.name:<18}{r.depth:>6}  {r.params:>11,}  {acc(r.top1)}  {acc(r.top5)}  "
              f"{'yes' if e.cached else 'no':<7}{e.repo}")
    return 0


def cmd_stats(zoo: Zoo, args: argparse.Namespace) -> int:
    from .. import stats
    from ..features import zoo_table

    if args.stages:
        rows = zoo_table.stages(zoo, args.stages, args.resolution)
        if args.json:  # the model's whole row, as `stats --json` writes it, with its stages
            row = zoo_table.entry(zoo.get(args.stages), args.resolution).to_json()
            print(json.dumps({**row, "stages": [r.to_json() for r in rows]}, indent=2))
        else:
            print(stats.format_stage_table(zoo.get(args.stages).name, rows, args.resolution))
        return 0
    table = _table(zoo, args, latency=args.latency)
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
    else:
        print(stats.format_table(table.rows, args.resolution))
        print()
        for note in stats.NOTES:
            print(f"* {note}")
    return 0


def cmd_download(zoo: Zoo, args: argparse.Namespace) -> int:
    from ..features.zoo_table import download

    download(zoo, args.names, every=args.all, force=args.force, progress=print_progress,
             each=lambda spec, path: print(f"{spec.name}: {path}"))
    return 0


def cmd_pin(zoo: Zoo, args: argparse.Namespace) -> int:
    """Each model's current commit, size and LFS sha256 on the Hub, as registry and front-matter lines."""
    from huggingface_hub import constants

    from ..pin import front_matter_line, read_hub_file, report, require_online

    specs = [zoo.get(n) for n in args.names] if args.names else zoo.builtin_depths
    require_online()
    today = dt.date.today()
    print(f"# Read from {constants.ENDPOINT} on {today.isoformat()} with huggingface_hub.model_info"
          "(files_metadata=True).\n# 'DIFFERS' marks a value the registry does not hold yet. Paste the lines "
          "below over the old ones.", flush=True)
    failed: list[str] = []
    differ: dict[str, list[str]] = {}
    front: list[str] = []
    for spec in specs:
        try:
            hub = read_hub_file(spec)
        except ZooError as e:
            print(f"error: {spec.name}: {e}", file=sys.stderr, flush=True)
            failed.append(spec.name)
            if spec.builtin:  # keep the block whole: this line as the registry has it now
                front.append(f"  - {spec.repo} {spec.filename}" + (f" {spec.revision}" if spec.pinned else "")
                             + "  # not read from the Hub: unchanged")
            continue
        lines, changed = report(spec, hub, today)
        print("\n" + "\n".join(lines), flush=True)
        if changed:
            differ[spec.name] = changed
        if spec.builtin:
            front.append(front_matter_line(hub))
    if front:
        print("\n# README.md, front matter:\npreload_from_hub:\n" + "\n".join(front))
    done = len(specs) - len(failed)
    if differ:
        print(f"\n# {len(differ)} of {done} differ from the registry: "
              + "; ".join(f"{n} ({', '.join(c)})" for n, c in differ.items())
              + ". After pasting, run the tests: tests/test_spaces.py checks the front matter against the registry.")
    elif done:
        print(f"\n# All {done} match the registry; nothing to paste.")
    if failed:
        print(f"# Not read: {', '.join(failed)} (see the errors above).")
    return 2 if failed else 0
