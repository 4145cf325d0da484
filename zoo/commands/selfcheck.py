"""``python -m zoo selfcheck``: do the deployed weights give real answers? (``zoo.features.selfcheck``)."""

from __future__ import annotations

import argparse
import json

from ..registry import Zoo
from .common import device_arg, precision_arg, print_progress


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("selfcheck", parents=[common],
                       help="do the deployed weights give real answers? pin, sha256 and the example photos' "
                            "top-5 per model, with a diagnosis of what looks wrong")
    s.add_argument("--models", nargs="+", metavar="NAME", help="zoo names (default: the five depths)")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_selfcheck)


def cmd_selfcheck(zoo: Zoo, args: argparse.Namespace) -> int:
    """Pin, sha256 and the example photos' answers for each model; exit 1 if any fails."""
    from ..features import selfcheck
    from ..runtime import Runtime
    from ..selfcheck import report

    rt = Runtime(zoo, args.device, precision=args.precision)
    result = selfcheck.result(rt, selfcheck.Request.create(rt, args.models), None if args.json else print_progress)
    print(json.dumps(result.to_json(), indent=2) if args.json else report(result))
    return 0 if result.passed else 1
