"""``python -m zoo``: list, download, pin, classify, explain and measure the ResNets (and their robustness); check a deployment."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from .errors import ZooError
from .registry import Zoo

# One module per command (zoo/commands/<name>.py), each with ``add_parser(sub, common)`` that
# parses into its feature's request; build_parser adds them in this order.
COMMANDS: tuple[str, ...] = (
    "zoo_table",  # list, download, pin, stats
    "classify",  # classify, explain
    "compare",
    "rank",
    "sanity",
    "analyze",
    "landscape",
    "robustness",
    "batch",
    "selfcheck",
)


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
