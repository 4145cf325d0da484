"""What every command shares: progress on stderr, --device/--precision/--compile, compiling for a run."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from ..params import COMPILE_MODES, DEVICES, PRECISIONS

DEFAULT_MODEL = "resnet50"


class ProgressPrinter:
    """The command line's progress on stderr.

    Each phase (a fraction of None or 0) is a line of its own, wherever stderr goes. On a
    terminal, a download's or a check's fraction is also drawn as a bar on one line,
    rewritten in place: huggingface_hub 2.x draws none of its own (``zoo.hub`` turns its
    bar off, so there is one reporter), and a 9 s download looked like a hang. In a log or
    a pipe only the phases are written: a line per chunk would flood it.
    """

    WIDTH = 24  # characters of the bar

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, interval_s: float = 0.1):
        self._stream = stream  # None: whatever sys.stderr is at the time (pytest's capture swaps it)
        self._tty = tty  # None: ask the stream
        self.interval_s = interval_s  # the fastest redraw; a bar at 100% is always drawn
        self._last = 0.0
        self._open = False  # a bar is on the current line, without its newline yet

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):  # a closed or unusual stream: no bar
            return False

    def __call__(self, fraction: float | None, message: str) -> None:
        if fraction is None or fraction <= 0.0:
            self._end_bar()
            print(message, file=self.stream, flush=True)
            return
        if not self.tty:
            return
        now = time.monotonic()
        done = fraction >= 1.0
        if not done and now - self._last < self.interval_s:
            return
        self._last = now
        filled = int(self.WIDTH * min(fraction, 1.0))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        # \r back to the line's start, \x1b[K clears what a longer previous message left.
        self.stream.write(f"\r[{bar}] {min(fraction, 1.0) * 100:3.0f}%  {message}\x1b[K")
        self._open = True
        if done:
            self._end_bar()
        self.stream.flush()

    def _end_bar(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


# One for the process: app.py reports its preloads through it too.
print_progress = ProgressPrinter()


def device_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--device", default="auto", choices=DEVICES)


def model_args(s: argparse.ArgumentParser) -> None:
    """An image, one --model, --device, --precision/--compile and --json (the single-model commands')."""
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"zoo name (default {DEFAULT_MODEL})")
    device_arg(s)
    precision_arg(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")


def precision_arg(s: argparse.ArgumentParser) -> None:
    """How the trunk runs: --precision and --compile (every command that loads a model takes both)."""
    s.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="trunk precision (default: $ZOO_PRECISION or auto: reduced only where the hardware "
                        "runs it natively)")
    s.add_argument("--compile", default=None, choices=COMPILE_MODES,
                   help="compiled trunk for classifying (default: $ZOO_COMPILE or auto: for a batch or robustness run, "
                        "a compiled trunk already in the cache, or one built for a run of at least 10000 forwards per "
                        "model, where building pays for itself; off where not possible, with a note); on compiles "
                        "whatever the run and is an error where compiling is not possible")


def compile_for_run(args: argparse.Namespace, models: list, images: int | None = None, batch: int = 1) -> None:
    """The command line's --compile for ``models`` (``LoadedModel``s) before a run of ``images`` forwards per model.

    ``images`` is None for single-image commands (batch-1 graph), else a batch or
    robustness run (the any-batch graph). ``on`` compiles (from the cache when it can);
    ``auto`` is eager for single images, and for a run takes a graph already in the cache,
    building a missing one only for at least ``zoo.compiled.CLI_MIN_FORWARDS`` forwards per
    model. What it does, and why not, goes to stderr for runs.
    """
    from ..compiled import CLI_MIN_FORWARDS, resolve
    from ..compiling import Compiler

    if not models:
        return
    plan = resolve(getattr(args, "compile", None), models[0].device)  # on, where impossible: an error

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if not plan.enabled:
        if images is not None and plan.mode != "off":
            say(f"compile {plan.mode}: {plan.note}")
        return
    kinds = ["one"] if images is None else ["any"]
    if plan.mode == "auto" and images is None:
        return  # one image: loading or building a graph costs more than it saves
    build = plan.mode == "on" or images >= CLI_MIN_FORWARDS
    why = "--compile on" if plan.mode == "on" else f"{images} forwards per model"
    compiler = Compiler(plan, batch=batch)  # a build runs in a child process, as the app's (zoo.compiling)
    for lm in models:
        if build:
            say(f"{lm.spec.name}: compiling the trunk ({why}; from the cache on disk when it is there)")
        compiler.run(lm, kinds, build_missing=build)
        if lm.compile_note:
            say(f"{lm.spec.name}: {lm.compile_note}")
        if lm.compiled is None and not build:
            say(f"compile auto: {lm.spec.name} eager, {images} forwards per model are too few for building a "
                f"compiled trunk to pay (auto builds one from {CLI_MIN_FORWARDS} and uses one already in the "
                "cache; --compile on forces it)")
