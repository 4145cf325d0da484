"""The compiled path: the trunk of a ``LoadedModel`` compiled ahead of time by inductor.

Only the forwards that classify use it (``LoadedModel.run``: classify, compare, batch,
the robustness sweep, scoring maps); explanations, the Depth lab and statistics keep the
eager ``module``, whose hooks and per-block walk they need. Global average pooling and
``fc`` stay eager fp32 on the fp32 features, so CAM stays exact and the logits equal the
eager path's within the precision's tolerance.

How: ``torch.export`` of the stem and the four stages (BatchNorm folded, channels-last,
weights at the run's precision), then AOTInductor (``torch._inductor.aoti_compile_and_package``)
with ``freezing``: the weights become constants, prepacked for oneDNN, and every
convolution is fused with its ReLU or residual add. The result is a shared library holding
the graph and its constants (on CUDA, a ``.pt2`` package of it and its kernels), which a
later start loads in a fraction of a second. On the CPU it is run through AOTInductor's C
interface with ctypes (``CpuGraph``), which lets other Python threads run during a forward.
(``torch.compile`` would re-trace every graph at each start, tens of seconds for the five
depths even with its caches warm, and its ``freezing`` option alone does not freeze:
dynamo reads the global flag when it traces.)

Two packages per model (``KINDS``): ``one``, batch 1 with static shapes (classify,
compare: the fastest for one image), and ``any``, a dynamic batch dimension (batch and
robustness runs never recompile per batch size). The app builds every model's ``one``
first, then the ``any`` ones; the CLI builds what its run uses.

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

Where the parts live: this module is what a serving process runs (the plan, the compiled
trunk, loading a finished library); ``zoo.compile_cache`` is the cache on disk (keys,
records, whom it trusts); ``zoo.compile_child`` is the build, which only ever runs in a
child process; ``zoo.compiling`` is the one entry point (``Compiler``) that loads from the
cache or has a child build, then swaps the graphs into the model. A build that fails
leaves the model eager, with the reason in ``LoadedModel.compile_note``. Nothing in the
cache is unpickled.

A compiled trunk cannot call ``zoo.cancel.check()`` between residual blocks: the token is
checked before and after it (one compiled forward is short).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .compile_cache import Package, cache_dir, example, wipe  # noqa: F401 - cache_dir: where callers look for it
from .errors import ZooError

MODES = ("auto", "on", "off")

# The graphs a model can have: batch 1 (static shapes) and any batch size (dynamic).
KINDS = ("one", "any")
KIND_NAMES = {"one": "batch 1", "any": "any batch"}
MAX_BATCH = 4096  # the dynamic batch dimension's upper bound, far above any batch we run

# The CLI's ``auto`` uses a package already in the cache for any batch or robustness run
# (loading one takes well under a second) and builds a missing one only for a run of at
# least this many forwards per model. Building costs 10-60 s per model on a 2-core CPU and
# each forward saves a few ms at batch 16 (benchmarks/batch.py), so a build pays for itself
# after some thousands of images.
CLI_MIN_FORWARDS = 10_000

# On CUDA, inductor's autotuned kernels. Not measured here: no GPU was at hand.
CUDA_OPTIONS = {"max_autotune": True}


class CompileUnavailableError(ZooError):
    """``--compile on`` was asked for where compiling is not possible."""


@dataclass(frozen=True)
class Plan:
    """What ``--compile`` resolved to on this device."""

    mode: str  # auto | on | off, as asked
    enabled: bool  # compile (when the front end's policy says the run pays for it)
    note: str  # why not, when not; "" otherwise


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
    elif device.type != "cpu":
        return f"torch.compile is not used on {device.type}"
    if find_compiler() is None:  # AOTInductor compiles its C++ wrapper on every device
        cxx = os.environ.get("CXX")
        named = f"$CXX={cxx!r} is not a working compiler" if "CXX" in os.environ else "no g++ was found"
        return (f"AOTInductor compiles C++ and {named} (install g++, e.g. apt-get install g++, "
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


@dataclass(frozen=True)
class CompiledTrunk:
    """A model's compiled graphs (kind -> callable), for inputs of ``shape`` on ``device``.

    Immutable: adding a graph makes a new one (``with_graphs``), swapped into the model in
    one assignment. ``accepts`` says whether an input is one it was compiled for (fp32,
    channels-last, the model's image size, no gradients wanted); anything else runs eager.
    """

    shape: tuple[int, int, int]  # (C, H, W)
    device: torch.device
    graphs: dict[str, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)

    def graph(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return (self.graphs.get("one") if x.shape[0] == 1 else None) or self.graphs.get("any")

    def accepts(self, x: torch.Tensor) -> bool:
        return (not torch.is_grad_enabled() and tuple(x.shape[1:]) == self.shape
                and _same_device(x.device, self.device)
                and x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
                and 1 <= x.shape[0] <= MAX_BATCH and self.graph(x) is not None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        fn = self.graph(x)
        assert fn is not None, "call accepts() first"
        return fn(x)

    def with_graphs(self, graphs: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> CompiledTrunk:
        return CompiledTrunk(self.shape, self.device, {**self.graphs, **graphs})


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device when 0 is the current one (``==`` says they are not)."""
    def index(d: torch.device) -> int | None:
        return d.index if d.index is not None or d.type != "cuda" else torch.cuda.current_device()
    return a.type == b.type and index(a) == index(b)


def _python_api() -> ctypes.PyDLL:
    """Python's C API through a handle of our own (setting argtypes on ``ctypes.pythonapi`` would change
    them for every user of it in the process)."""
    api = ctypes.PyDLL(None)
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    api.PyCapsule_New.restype = ctypes.py_object
    api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    return api


class CpuGraph:
    """A compiled CPU graph, run through AOTInductor's C interface with ctypes.

    Why not torch's loader (``aoti_load_package``): its Python binding holds the GIL for the
    whole forward, so a batch of 16 through ResNet-50 would freeze every other thread (the
    web server: Stop, progress, other visitors) for most of a second; a ctypes call releases
    the GIL. The calls are the ones torch's C++ runner makes: creating the container loads
    the constants from the library, the container takes ownership of the input handles, and
    the output handles are ours, turned back into tensors. One model per container:
    concurrent calls take turns inside it.
    """

    _loads = 0

    def __init__(self, path: Path):
        self._api = _python_api()
        # The dynamic loader hands back the library already loaded from the same path, even if
        # the file was rebuilt since; a link of our own per load is always this file's code.
        CpuGraph._loads += 1
        link = path.with_name(f".{path.name}.{os.getpid()}.{CpuGraph._loads}.so")
        try:
            wipe(link)
            try:
                os.link(path, link)
            except OSError:  # a file system without hard links
                shutil.copyfile(path, link)
        except OSError:  # a cache we may not write to: the file itself (a rebuild needs a restart)
            link = path
        try:
            lib = self._lib = ctypes.CDLL(str(link))
        finally:
            if link != path:
                wipe(link)  # mapped now: the name is no longer needed
        p = ctypes.c_void_p
        lib.AOTInductorModelContainerCreateWithDevice.argtypes = [ctypes.POINTER(p), ctypes.c_size_t,
                                                                  ctypes.c_char_p, ctypes.c_char_p]
        lib.AOTInductorModelContainerRun.argtypes = [p, ctypes.POINTER(p), ctypes.c_size_t, ctypes.POINTER(p),
                                                     ctypes.c_size_t, p, p]
        lib.AOTInductorModelContainerDelete.argtypes = [p]
        lib.AOTInductorGetLastError.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        self._handle: ctypes.c_void_p | None = p()
        if lib.AOTInductorModelContainerCreateWithDevice(ctypes.byref(self._handle), 1, b"cpu", None):
            self._handle = None
            raise RuntimeError(f"{path.name}: AOTInductor could not create its model: {self._error()}")

    def _error(self) -> str:
        message = ctypes.c_char_p()
        if self._lib.AOTInductorGetLastError(ctypes.byref(message)) or not message.value:
            return "no message"
        return message.value.decode(errors="replace")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (capsule,) = torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors([x])
        inputs = (ctypes.c_void_p * 1)(self._api.PyCapsule_GetPointer(capsule, None))
        outputs = (ctypes.c_void_p * 1)()
        if self._lib.AOTInductorModelContainerRun(self._handle, inputs, 1, outputs, 1, None, None):
            raise RuntimeError(f"the compiled trunk failed: {self._error()}")
        (out,) = torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(
            [self._api.PyCapsule_New(outputs[0], None, None)])
        return out

    def __del__(self) -> None:
        # Not while the interpreter shuts down: a daemon thread may still be inside a forward.
        if getattr(self, "_handle", None) and not sys.is_finalizing():
            self._lib.AOTInductorModelContainerDelete(self._handle)
            self._handle = None


def load(package: Package, shape: tuple[int, int, int], device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The package's graph, run once on zeros (its first call sets up its constants) so no request pays for it."""
    fn = CpuGraph(package.path) if package.path.suffix == ".so" else torch._inductor.aoti_load_package(str(package.path))
    x = example(package.fields["kind"], shape, device)
    with torch.inference_mode():
        out = fn(x)
    if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0] or out.dtype != torch.float32:
        raise RuntimeError(f"{package.path.name} returned {type(out).__name__}, not the trunk's features")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return fn


def describe(compiled: CompiledTrunk | None, notes: dict[str, str], folder: Path) -> str:
    """One line on a model's compiled path, from the notes of every kind so far."""
    done = [KIND_NAMES[k] for k in KINDS if compiled is not None and k in compiled.graphs]
    text = "; ".join(notes[k] for k in KINDS if k in notes)
    if not done:
        return f"eager: {text}"
    return f"compiled ({', '.join(done)}): {text} (cache: {folder})"


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]
