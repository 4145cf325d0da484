"""The compiled path: the trunk of a ``LoadedModel`` through ``torch.compile`` (inductor).

Only the forwards that classify use it (``LoadedModel.forward``: classify, compare, batch,
scoring maps); explanations, the Depth lab and statistics keep the eager ``module``, whose
hooks and per-block walk they need. Global average pooling and ``fc`` stay eager fp32 on
the fp32-cast features, so CAM stays exact and the logits equal the eager path's within
the precision's tolerance.

``--compile auto|on|off`` (also ``ZOO_COMPILE``) decides; ``resolve`` says whether
compiling is possible here and, if not, why:

* the CPU backend of inductor compiles C++: it needs a compiler (``$CXX``, else
  ``torch._inductor.config.cpp.cxx``, i.e. ``g++``; a CPU Space's Debian image has none
  unless ``packages.txt`` names ``g++``);
* Apple MPS: not supported here; ZeroGPU: its documentation rules ``torch.compile`` out
  (the front end says so through ``forbidden``);
* ``off``.

``auto`` falls back to eager with a note saying why; ``on`` where it is impossible is an
error that says why.

Compiled artifacts (inductor's FX graph cache, kernels, autotuning results) go to
``cache_dir()``: ``$ZOO_COMPILE_CACHE``, else ``rde-compile`` next to the Hugging Face
home (``~/.cache/rde-compile`` by default), set as ``TORCHINDUCTOR_CACHE_DIR`` while
compiling. A warm cache turns a ResNet's compile from tens of seconds into a few; a
corrupted or stale cache is wiped and rebuilt once, and a compile that still fails
leaves the model eager, with the reason in ``LoadedModel.compile_note``.

Batch sizes: batch 1 (one image: classify, compare) gets its own graph; every batch of 2
or more shares one graph with a dynamic batch dimension, so batch and robustness runs
never recompile per batch size. Both are compiled up front (``compile_trunk``) so that
no request pays for a compile.

A compiled trunk cannot call ``zoo.cancel.check()`` between residual blocks: the token is
checked before and after it (one compiled forward is short).
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import ZooError

MODES = ("auto", "on", "off")

# The CLI's ``auto`` compiles a batch run when it classifies at least this many images
# per model: a cold compile costs about 20-30 s per model on a 2-core CPU and saves about
# a third of each forward, so a few hundred images pay for a warm cache's seconds and
# about a thousand for a cold one.
CLI_MIN_IMAGES = 1000

# On CUDA: inductor's autotuned kernels, without CUDA graphs (requests of any batch size
# arrive from several threads). Not measured here: no GPU was at hand.
CUDA_MODE = "max-autotune-no-cudagraphs"

_COMPILE_LOCK = threading.Lock()  # one compile at a time: TORCHINDUCTOR_CACHE_DIR is process-wide


class CompileUnavailableError(ZooError):
    """``--compile on`` was asked for where compiling is not possible."""


@dataclass(frozen=True)
class Plan:
    """What ``--compile`` resolved to on this device."""

    mode: str  # auto | on | off, as asked
    enabled: bool  # compile (when the front end's policy says the run pays for it)
    note: str  # why not, when not; "" otherwise


def cache_dir() -> Path:
    """Where compiled artifacts are cached: ``$ZOO_COMPILE_CACHE``, else ``rde-compile`` beside ``$HF_HOME``."""
    given = os.environ.get("ZOO_COMPILE_CACHE")
    if given:
        return Path(given).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME).expanduser().resolve().parent / "rde-compile"


def find_compiler() -> str | None:
    """The C++ compiler inductor would use, if it runs: ``$CXX`` when set, else ``config.cpp.cxx``."""
    if "CXX" in os.environ:
        candidates: tuple[Any, ...] = (os.environ["CXX"],)
    else:
        import torch._inductor.config as ic

        cxx = ic.cpp.cxx
        candidates = tuple(cxx) if isinstance(cxx, (list, tuple)) else (cxx,)
    for cxx in candidates:
        if not cxx or not shutil.which(cxx):
            continue
        try:
            subprocess.run([cxx, "--version"], capture_output=True, check=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        return cxx
    return None


def unavailable(device: torch.device, forbidden: str | None = None) -> str | None:
    """Why the trunk cannot be compiled on ``device`` here, or None if it can."""
    if forbidden:
        return forbidden
    if device.type == "mps":
        return "torch.compile is not used on Apple MPS"
    if device.type == "cuda":
        import importlib.util

        if importlib.util.find_spec("triton") is None:
            return "inductor's CUDA backend needs triton, which is not installed"
        return None
    if device.type != "cpu":
        return f"torch.compile is not used on {device.type}"
    if find_compiler() is None:
        cxx = os.environ.get("CXX")
        named = f"$CXX={cxx!r} is not a working compiler" if "CXX" in os.environ else "no g++ was found"
        return (f"inductor's CPU backend compiles C++ and {named} (install g++, e.g. apt-get install g++, "
                "or set CXX)")
    return None


def resolve(mode: str | None, device: torch.device, forbidden: str | None = None) -> Plan:
    """``mode`` (default ``$ZOO_COMPILE``, else auto) on ``device``; ``on`` where impossible raises."""
    mode = (mode or os.environ.get("ZOO_COMPILE") or "auto").strip().lower()
    if mode not in MODES:
        raise CompileUnavailableError(f"Unknown --compile {mode!r}; choose one of {', '.join(MODES)}.")
    if mode == "off":
        return Plan(mode, False, "eager: --compile off")
    why = unavailable(device, forbidden)
    if why is None:
        return Plan(mode, True, "")
    if mode == "on":
        raise CompileUnavailableError(f"--compile on is not possible here: {why}. Use --compile auto or off.")
    return Plan(mode, False, f"eager: {why}")


class CompiledTrunk:
    """``torch.compile`` of a private copy of a model's trunk (stem, layer1-4).

    The copy keeps the compiled graphs away from the hooks that explanations put on the
    shared ``module`` for a moment. ``__call__`` takes what ``LoadedModel.forward`` gives
    it: an input in channels-last layout of the warmed image size, under inference mode
    and the model's autocast; ``accepts`` says whether an input is one of those (anything
    else runs eager rather than trigger a compile inside a request).
    """

    def __init__(self, trunk: nn.Module, shape: tuple[int, int, int], device: torch.device,
                 precision: torch.dtype | None):
        self.shape = shape  # (C, H, W) it was compiled for
        self.device = device
        self.precision = precision
        options = {"freezing": True}  # weights become constants: folded, prepacked for oneDNN
        kwargs: dict[str, Any] = {"options": options}
        if device.type == "cpu":
            cxx = find_compiler()
            if cxx:
                options["cpp.cxx"] = (None, cxx)  # type: ignore[assignment]
        elif device.type == "cuda":
            kwargs = {"mode": CUDA_MODE}
        self._module = trunk
        self._fn: Callable[[torch.Tensor], torch.Tensor] = torch.compile(trunk, dynamic=False, **kwargs)

    def accepts(self, x: torch.Tensor) -> bool:
        return (torch.is_inference_mode_enabled() and tuple(x.shape[1:]) == self.shape and x.device == self.device
                and x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            torch._dynamo.mark_dynamic(x, 0)  # every batch of 2 or more: one graph
        return self._fn(x)


def trunk_copy(module: nn.Module) -> nn.Module:
    """A private copy of the stem and the four stages of a (folded, channels-last) torchvision ResNet."""
    m = module
    return copy.deepcopy(nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4))


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


def _wipe(folder: Path) -> None:
    """Remove a cache that failed (a folder, or whatever else sits at its path)."""
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            folder.unlink()


def _warm(ct: CompiledTrunk, autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
    """Compile both graphs (batch 1, and batch >= 2) now, so that no request pays for it."""
    c, h, w = ct.shape
    with torch.inference_mode(), autocast():
        for n in (1, 2):
            x = torch.zeros(n, c, h, w, device=ct.device).contiguous(memory_format=torch.channels_last)
            ct(x)
    if ct.device.type == "cuda":
        torch.cuda.synchronize(ct.device)


def compile_trunk(module: nn.Module, shape: tuple[int, int, int], device: torch.device,
                  precision: torch.dtype | None, autocast: Callable[[], contextlib.AbstractContextManager],
                  folder: Path | None = None) -> tuple[CompiledTrunk, str]:
    """A warmed ``CompiledTrunk`` of ``module`` for inputs of ``shape``, and a note on how it went.

    Uses the on-disk cache in ``folder`` (default ``cache_dir()``). If compiling fails,
    the cache may be corrupt or stale: it is wiped and the compile runs once more; a second
    failure raises (the caller stays eager).
    """
    folder = folder or cache_dir()
    # Every model's trunk is an nn.Sequential: its forward's code object holds two graphs per
    # model (batch 1, batch >= 2); dynamo's default limit of 8 per code object would send
    # the fifth depth back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    def attempt() -> CompiledTrunk:
        folder.mkdir(parents=True, exist_ok=True)
        with _cache_env(folder):
            ct = CompiledTrunk(trunk_copy(module), shape, device, precision)
            _warm(ct, autocast)
        return ct

    with _COMPILE_LOCK:
        t0 = time.perf_counter()
        try:
            ct = attempt()
            return ct, f"compiled in {time.perf_counter() - t0:.1f} s (cache: {folder})"
        except Exception as first:  # noqa: BLE001 - inductor raises many kinds; one rebuild, then give up
            # No torch._dynamo.reset(): it would drop the other models' compiled graphs too.
            _wipe(folder)
            t0 = time.perf_counter()
            ct = attempt()
            reason = " ".join(str(first).split())[:200]
            return ct, (f"compiled in {time.perf_counter() - t0:.1f} s after rebuilding the compile cache "
                        f"{folder}, which failed ({type(first).__name__}: {reason})")


def compile_model(model: Any, plan: Plan) -> bool:
    """Compile ``model``'s trunk (a ``LoadedModel``) now, in this thread, if ``plan`` allows; True if compiled.

    A failure leaves the model eager, with the reason in ``compile_note``.
    """
    if not plan.enabled:
        model.compile_note = plan.note
        return False
    if model.compiled is None:
        try:
            model.compile()
        except Exception as e:  # noqa: BLE001 - the eager model answers; say why
            model.compile_note = f"eager: compiling failed ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
    return model.compiled is not None
