"""The build of compiled graphs, in a process of its own: ``python -m zoo.compile_child JOB.json``.

Tracing, ``torch.export`` and inductor keep process-wide state (fx metadata, config flags,
dispatch modes) that other threads trip over, and their Python-heavy work holds the GIL
for long stretches; so the serving process never runs them (``zoo.compiling`` starts this
process, one at a time, and only loads what it writes). Nothing is pickled across: the job
is JSON, the weights a safetensors file that the parent wrote from its folded model.

The job: ``arch`` (torchvision's name), ``weights`` (safetensors of the folded model),
``dtype``, ``shape``, ``device``, ``packages`` (each ``{"path", "fields"}``, the key the
parent computed), ``threads`` (torch threads for the build: fewer than the cores, so a
visitor's request still gets one), ``graph_threads`` (the OpenMP threads the graph will
run with: the parent's, which the key names), ``nice`` and ``result`` (where to write, per
kind, ``{"seconds": s}`` or ``{"error": "..."}``, after each graph).

The process ends when its parent does (it watches its standard input, a pipe from the
parent: end of file means the parent is gone), so a killed server leaves no build behind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .compile_cache import Package, atomic_write, example, sha256_of, wipe
from .compiled import CUDA_OPTIONS, MAX_BATCH, find_compiler


class Trunk(nn.Module):
    """What is exported: a private copy of the stem and the four stages at ``dtype``.

    fp32 channels-last input in, fp32 features out, so that it replaces the eager trunk
    (which runs the same layers under autocast) without any change around it.
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        m = module
        layers = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)
        self.body = copy.deepcopy(layers).to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.to(self.dtype)).float()


@contextlib.contextmanager
def _cache_env(folder: Path):
    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old


def build(trunk: Trunk, package: Package, shape: tuple[int, int, int], device: torch.device,
          graph_threads: int) -> None:
    """Export ``trunk`` and compile it into ``package`` (written whole, or not at all).

    ``graph_threads``: the OpenMP threads the graph's kernels will use (inductor writes the
    count into the code; the build itself runs on fewer).
    """
    kind = package.fields["kind"]
    x = example(kind, shape, device)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if kind == "any" else None
    options: dict[str, Any] = {"freezing": True}
    if device.type == "cpu":
        options["cpp.threads"] = graph_threads
        cxx = find_compiler()
        if cxx:
            options["cpp.cxx"] = (None, cxx)
    elif device.type == "cuda":
        options.update(CUDA_OPTIONS)
    package.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = package.path.with_name(f".{package.path.stem}.{os.getpid()}.{threading.get_ident()}.pt2")
    lib = tmp.with_suffix(".so")
    # inductor's own cache for this build only: it would keep a second copy of every package
    # (its build folders hold the weights), and an AOTInductor build reuses none of it.
    scratch = package.path.with_name(f".build-{os.getpid()}-{threading.get_ident()}")
    try:
        with torch.no_grad(), _cache_env(scratch):
            exported = torch.export.export(trunk, (x,), dynamic_shapes=dynamic)
            torch._inductor.aoti_compile_and_package(exported, package_path=str(tmp), inductor_configs=options)
        if package.path.suffix == ".so":  # the CPU package's one library holds graph, kernels and constants
            with zipfile.ZipFile(tmp) as z:
                members = [n for n in z.namelist() if n.endswith(".wrapper.so")]
                if len(members) != 1:
                    raise RuntimeError(f"AOTInductor's package holds {len(members)} wrapper libraries, not one "
                                       "(a platform this path does not know)")
                (member,) = members
                with z.open(member) as src, lib.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 22)
            built = lib
        else:
            built = tmp
        # The record first, then the package: a package is never without its record (another
        # process's prune would take it for a leftover), and a record without its package is
        # simply not valid. Publishing makes a new file: a process that has the old one mapped
        # keeps it whole.
        atomic_write(package.record, json.dumps({"fields": package.fields, "sha256": sha256_of(built)}, indent=1))
        os.replace(built, package.path)
    finally:
        for p in (tmp, lib, scratch):
            wipe(p)



def folded_module(arch: str, weights: Path, device: torch.device) -> nn.Module:
    """torchvision's ``arch`` with its BatchNorm folded (as ``zoo.models.ready`` leaves it) and ``weights`` assigned."""
    import torchvision
    from safetensors.torch import load_file

    from .models import fold_batchnorm

    state = load_file(str(weights), device="cpu")
    with torch.device("meta"):
        module = torchvision.models.get_model(arch, weights=None, num_classes=state["fc.weight"].shape[0])
    with torch.no_grad():
        fold_batchnorm(module)  # the same module names and shapes as the parent's folded model
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)


def _watch_parent() -> None:
    """End this process when the parent's pipe closes: the parent has exited or was killed."""
    def watch() -> None:
        with contextlib.suppress(OSError, ValueError):
            while sys.stdin.buffer.read(1 << 16):
                pass
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    job: dict[str, Any] = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    _watch_parent()
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on Windows
        os.nice(int(job["nice"]))
    # Linux: run only when a core is otherwise idle (inherited by inductor's compiler processes
    # and torch's threads), so a visitor's forward is not slowed by a build sharing its cores;
    # nice alone still leaves a build a share of a busy core.
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    os.umask(0o077)  # packages and records: this user's only (zoo.compile_cache.refusal)
    torch.set_num_threads(int(job["threads"]))
    device = torch.device(job["device"])
    shape = tuple(job["shape"])
    module = folded_module(job["arch"], Path(job["weights"]), device)
    trunk = Trunk(module, getattr(torch, job["dtype"].removeprefix("torch."))).eval()
    del module
    results: dict[str, dict[str, Any]] = {}
    for entry in job["packages"]:
        package = Package(Path(entry["path"]), entry["fields"])
        t0 = time.perf_counter()
        try:
            build(trunk, package, shape, device, int(job["graph_threads"]))  # type: ignore[arg-type]
            results[package.fields["kind"]] = {"seconds": time.perf_counter() - t0}
        except Exception as e:  # noqa: BLE001 - inductor raises many kinds; the parent says which
            results[package.fields["kind"]] = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
        atomic_write(Path(job["result"]), json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
