"""Helpers for the benchmarks: local random-init weights, so no network is needed.

Speed depends on the architecture, not on the weight values, so random weights give
the same timings as the Hub's; they go through the same load path (safetensors,
sha256 check with its verified record, strict load).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.registry import ARCHITECTURES, ModelSpec  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chelsea.png"


WEIGHTS = Path(tempfile.gettempdir()) / "rde-bench-weights"


def setup(doc: str | None) -> tuple[argparse.Namespace, "torch.device", list[ModelSpec]]:  # noqa: F821
    """Parse --repeats/--device; return them with the device and the five local specs."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = ap.parse_args()
    from zoo.models import resolve_device

    return args, resolve_device(args.device), local_specs(WEIGHTS)


def local_specs(folder: Path = WEIGHTS, archs: list[str] | None = None) -> list[ModelSpec]:
    """One spec per depth, backed by random-init safetensors in ``folder`` (made once)."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    # The random-init weights drive deep activations into subnormal floats, which x86 CPUs
    # process ~3x slower (ResNet-50: 1.2 s instead of 0.37 s a forward here); trained weights
    # do not. Flushing them to zero times what a user with real weights would see, on both
    # sides of every ratio.
    torch.set_flush_denormal(True)
    folder.mkdir(parents=True, exist_ok=True)
    specs = []
    for arch in archs or list(ARCHITECTURES):
        path = folder / f"{arch}.safetensors"
        if not path.exists():
            torch.manual_seed(0)
            save_file(torchvision.models.get_model(arch, weights=None).state_dict(), str(path))
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        specs.append(ModelSpec(name=arch, arch=ARCHITECTURES[arch], path=str(path), sha256=sha))
    return specs


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float, float]:
    """(median, min, max) seconds of ``fn`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), max(times)
