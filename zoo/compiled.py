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

The cache: ``cache_dir()`` (``$ZOO_COMPILE_CACHE``, else ``rde-compile`` next to the
Hugging Face home) holds the packages, each named after a key of everything it depends on
(the trunk's weights, precision, input size, kind, device, the CPU's instruction set,
torch's version, this module's ``FORMAT``), beside a JSON record with the package's
sha256. A package whose record is missing or does not match, or that fails to load, is
deleted and built again; a build that still fails leaves the model eager, with the reason
in ``LoadedModel.compile_note``. Nothing in the cache is unpickled.

A compiled trunk cannot call ``zoo.cancel.check()`` between residual blocks: the token is
checked before and after it (one compiled forward is short).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

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

# Bump when what is exported or how it is compiled changes: older packages are then
# never loaded (their key differs) and are rebuilt.
FORMAT = 3

# On CUDA, inductor's autotuned kernels. Not measured here: no GPU was at hand.
CUDA_OPTIONS = {"max_autotune": True}

# One compile at a time (TORCHINDUCTOR_CACHE_DIR is process-wide); reentrant, so that
# ``LoadedModel.compile`` holds it from reading its graphs to swapping the new ones in.
COMPILE_LOCK = threading.RLock()
STALE_LEFTOVERS_S = 24 * 3600  # a build's temporary files older than this are a crash's leftovers
# The temporary names this module makes: a build's scratch folder, and ".<package>.<pid>.<n>..." files.
_LEFTOVER = re.compile(r"^\.(build-\d+-\d+|[A-Za-z0-9_.-]+-(one|any)-[0-9a-f]{20}\.[A-Za-z0-9_.-]+)$")


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


def weights_digest(module: nn.Module) -> str:
    """sha256 of the trunk's weights as loaded (folded), the part of a package's key that names the model."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        if name.startswith("fc."):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))  # logical order, whatever the layout
    return h.hexdigest()


def machine(device: torch.device) -> dict[str, Any]:
    """What a package built here depends on in the machine: code compiled for one CPU may not run on another."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(index),
                "capability": list(torch.cuda.get_device_capability(index)), "cuda": torch.version.cuda}
    from .models import cpu_bf16_native

    return {"device": device.type, "isa": torch.backends.cpu.get_cpu_capability(), "bf16": cpu_bf16_native(),
            "cpu": _cpu_flags(), "machine": platform.machine(),
            # a build fixes its OpenMP thread count when it differs from the cores'
            "threads": torch.get_num_threads()}


def _cpu_flags() -> str:
    """A digest of the CPU's feature flags: inductor compiles with -march=native, so code built on one
    CPU may use instructions another lacks (and would crash there)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        flags = next((ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    except OSError:  # not Linux
        flags = f"{platform.processor()} {platform.machine()}"
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Package:
    """Where one compiled graph lives in the cache, and everything its key depends on."""

    path: Path  # the shared library (CPU) or the .pt2 package (CUDA)
    fields: dict[str, Any]

    @property
    def record(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    @classmethod
    def of(cls, folder: Path, label: str, kind: str, digest: str, shape: tuple[int, int, int],
           device: torch.device, dtype: torch.dtype) -> Package:
        fields = {"format": FORMAT, "torch": torch.__version__, "kind": kind, "shape": list(shape),
                  "dtype": str(dtype), "weights": digest, **machine(device)}
        key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60] or "model"
        suffix = ".so" if device.type == "cpu" else ".pt2"
        return cls(folder / f"{safe}-{kind}-{key}{suffix}", fields)

    def valid(self) -> bool:
        """The package is there, whole, and was built for exactly this key."""
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return (isinstance(record, dict) and record.get("fields") == self.fields and self.path.is_file()
                and record.get("sha256") == _sha256(self.path))

    def remove(self) -> None:
        for p in (self.path, self.record):
            _wipe(p)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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


def _wipe(path: Path) -> None:
    """Remove a folder, or whatever else sits at ``path``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _example(kind: str, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    n = 1 if kind == "one" else 2
    return torch.zeros(n, *shape, device=device).contiguous(memory_format=torch.channels_last)


def build(trunk: Trunk, package: Package, shape: tuple[int, int, int], device: torch.device) -> None:
    """Export ``trunk`` and compile it into ``package`` (written whole, or not at all)."""
    kind = package.fields["kind"]
    x = _example(kind, shape, device)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if kind == "any" else None
    options: dict[str, Any] = {"freezing": True}
    if device.type == "cpu":
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
        _atomic_write(package.record, json.dumps({"fields": package.fields, "sha256": _sha256(built)}, indent=1))
        os.replace(built, package.path)
    finally:
        for p in (tmp, lib, scratch):
            _wipe(p)
    _prune(package)


def _prune(package: Package) -> None:
    """Delete this model's packages of the same kind that no install of this torch can load (a stale
    cache), and temporary files a crashed build left behind."""
    folder = package.path.parent
    name = package.path.name.rsplit("-", 1)[0]  # "<label>-<kind>"
    now = time.time()
    for other in folder.glob(f"{name}-*"):
        if other == package.path or other.suffix not in (".so", ".pt2"):
            continue
        try:
            fields = json.loads(Package(other, {}).record.read_text(encoding="utf-8"))["fields"]
            stale = fields["format"] != FORMAT or fields["torch"] != torch.__version__
        except (OSError, ValueError, KeyError, TypeError):
            # No usable record, so nothing will load it (a build writes the record before the
            # package): an older format's package, or what is left of a damaged one.
            stale = True
        if stale:
            Package(other, {}).remove()
            _wipe(other.with_suffix(".json"))  # an older format's record
    for leftover in folder.glob(".*"):
        if not _LEFTOVER.match(leftover.name):
            continue  # not ours: a cache folder may be shared
        with contextlib.suppress(OSError):
            st = leftover.stat()
            if now - max(st.st_mtime, st.st_ctime) > STALE_LEFTOVERS_S:  # a new hard link updates ctime
                _wipe(leftover)


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
            _wipe(link)
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
                _wipe(link)  # mapped now: the name is no longer needed
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
    x = _example(package.fields["kind"], shape, device)
    with torch.inference_mode():
        out = fn(x)
    if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0] or out.dtype != torch.float32:
        raise RuntimeError(f"{package.path.name} returned {type(out).__name__}, not the trunk's features")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return fn


@dataclass
class Outcome:
    """What ``compile_trunk`` did: the trunk with its graphs, and per graph kind what happened or why it failed."""

    compiled: CompiledTrunk | None
    notes: dict[str, str]  # kind -> "batch 1 loaded from the cache in 0.2 s", "... built in 12 s", "... failed (...)"
    folder: Path


def describe(compiled: CompiledTrunk | None, notes: dict[str, str], folder: Path) -> str:
    """One line on a model's compiled path, from the notes of every kind so far."""
    done = [KIND_NAMES[k] for k in KINDS if compiled is not None and k in compiled.graphs]
    text = "; ".join(notes[k] for k in KINDS if k in notes)
    if not done:
        return f"eager: {text}"
    return f"compiled ({', '.join(done)}): {text} (cache: {folder})"


def compile_trunk(module: nn.Module, shape: tuple[int, int, int], device: torch.device,
                  precision: torch.dtype | None, *, label: str = "model", kinds: Sequence[str] = KINDS,
                  have: CompiledTrunk | None = None, folder: Path | None = None, build_missing: bool = True,
                  module_lock: contextlib.AbstractContextManager | None = None) -> Outcome:
    """``have`` (or a new ``CompiledTrunk``) with the graphs of ``kinds`` added, and what happened per kind.

    Each graph is loaded from the cache in ``folder`` (default ``cache_dir()``) when a valid
    package is there, else built (unless ``build_missing`` is False: then it is left out).
    A package that fails to load is deleted and built again; a build that fails is tried once
    more (after replacing a cache path that is not a folder). A graph that still fails is left
    out, and its note says why; if no graph could be had at all, that failure is raised (the
    caller stays eager). ``module_lock`` is held while the weights are copied (explanations
    put hooks on ``module`` under it, and a copy would keep them).
    """
    folder = folder or cache_dir()
    dtype = precision or torch.float32
    graphs: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    notes: dict[str, str] = {}
    error: Exception | None = None

    def build_and_load(package: Package) -> Callable[[torch.Tensor], torch.Tensor]:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder} is not a folder")
        with module_lock or contextlib.nullcontext():
            trunk = Trunk(module, dtype).eval()
        build(trunk, package, shape, device)
        return load(package, shape, device)

    with COMPILE_LOCK:
        digest = weights_digest(module)
        for kind in kinds:
            if have is not None and kind in have.graphs:
                continue
            name = KIND_NAMES[kind]
            package = Package.of(folder, label, kind, digest, shape, device, dtype)
            t0 = time.perf_counter()
            why = ""
            if package.valid():
                try:
                    graphs[kind] = load(package, shape, device)
                    notes[kind] = f"{name} loaded from the cache in {time.perf_counter() - t0:.1f} s"
                    continue
                except Exception as e:  # noqa: BLE001 - a package that does not load is rebuilt
                    package.remove()
                    why = f"its cached package failed to load ({type(e).__name__}: {_short(e)})"
            if not build_missing:
                if why:
                    notes[kind] = f"{name}: {why}; not rebuilt"
                continue
            try:
                try:
                    graphs[kind] = build_and_load(package)
                except Exception as first:  # noqa: BLE001 - inductor raises many kinds; once more, then give up
                    # The cache may be what failed: a cache path that is not a folder is replaced,
                    # and this package goes (other models' packages stay).
                    replaced = folder.exists() and not folder.is_dir()
                    if replaced:
                        _wipe(folder)
                    package.remove()
                    t0 = time.perf_counter()
                    graphs[kind] = build_and_load(package)
                    why = "; ".join(filter(None, [why, f"the first build failed ({type(first).__name__}: "
                                                       f"{_short(first)}) and was tried again"
                                                       + (f" after replacing {folder}, which was not a folder"
                                                          if replaced else "")]))
            except Exception as e:  # noqa: BLE001 - this graph stays out; the others may still come
                error = e
                notes[kind] = f"{name} failed ({type(e).__name__}: {_short(e)})"
                continue
            notes[kind] = f"{name} built in {time.perf_counter() - t0:.1f} s" + (f"; {why}" if why else "")
    if not graphs and have is None and error is not None:
        raise error
    compiled = (have or CompiledTrunk(shape, device)).with_graphs(graphs) if graphs or have else None
    return Outcome(compiled, notes, folder)


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def compile_model(model: Any, plan: Plan, kinds: Sequence[str] = KINDS, build_missing: bool = True) -> bool:
    """Add the graphs of ``kinds`` to ``model``'s (a ``LoadedModel``) compiled trunk now, in this thread,
    if ``plan`` allows; True if the model then runs compiled.

    A failure leaves the model as it was (eager, or with the graphs it had), with the reason
    in ``compile_note``.
    """
    if not plan.enabled:
        model.compile_note = plan.note
        return False
    try:
        model.compile(kinds=kinds, build_missing=build_missing)
    except Exception as e:  # noqa: BLE001 - the eager model (or the graphs it has) answers; say why
        why = f"compiling failed ({type(e).__name__}: {_short(e)})"
        model.compile_note = f"eager: {why}" if model.compiled is None else f"{model.compile_note}; then {why}"
    return model.compiled is not None
