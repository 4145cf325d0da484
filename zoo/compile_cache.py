"""The compile cache: where compiled graphs live on disk, what names them, and whom it trusts.

A package (``Package``) is one compiled graph: a shared library on the CPU (a ``.pt2``
package on CUDA), named after a key of everything it depends on (the trunk's weights,
precision, input size, graph kind, device, the CPU's instruction set, torch's version,
``FORMAT``), beside a JSON record with its sha256. Only a child process builds packages
(``zoo.compile_child``); the serving process only loads them (``zoo.compiled.load``).

A library in the cache is code that runs in the process that loads it, so the cache is
treated as ssh treats its keys (``private_folder``, ``Package.check``): a folder or file
owned by another user (root excepted) or writable by group or others is refused with a
message, and a refused folder is replaced by a private temporary one for this process.
The cache folder is created 0700 and packages are written 0600. The sha256 in a record
proves that a package is whole, not who wrote it; ownership and modes do that.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Bump when what is exported or how it is compiled changes: older packages are then
# never loaded (their key differs) and are rebuilt.
FORMAT = 3
STALE_LEFTOVERS_S = 24 * 3600  # a build's temporary files older than this are a crash's leftovers
# The temporary names a build makes: its scratch folder, and ".<package>.<pid>.<n>..." files.
_LEFTOVER = re.compile(r"^\.(build-\d+-\d+|[A-Za-z0-9_.-]+-(one|any)-[0-9a-f]{20}\.[A-Za-z0-9_.-]+)$")


def cache_dir() -> Path:
    """Where compiled artifacts are cached: ``$ZOO_COMPILE_CACHE``, else ``rde-compile`` beside ``$HF_HOME``."""
    given = os.environ.get("ZOO_COMPILE_CACHE")
    if given:
        return Path(given).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME).expanduser().resolve().parent / "rde-compile"


# --- trust: like ssh with its keys ------------------------------------------------------------

def refusal(path: Path, folder: bool = False) -> str | None:
    """Why ``path`` (a cache folder, or a file in it) must not be trusted, or None.

    Refused: not owned by this user (nor root), writable by group or others, or, for a
    file, not a regular file (a link could point anywhere). Where modes mean nothing
    (Windows), nothing is refused.
    """
    if not hasattr(os, "getuid"):
        return None
    try:
        st = path.stat() if folder else path.lstat()  # a folder may be reached through a link, a file not
    except FileNotFoundError:
        return None
    kind = "folder" if folder else "file"
    if folder and not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder"
    if not folder and not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if st.st_uid not in (os.getuid(), 0):
        return f"the {kind} {path} belongs to another user (uid {st.st_uid}, this process runs as {os.getuid()})"
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("its group", 0o020), ("others", 0o002)) if st.st_mode & bit)
        return f"the {kind} {path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_folder(folder: Path) -> tuple[Path, str]:
    """``folder`` ready to hold the cache (created 0700), and a note; or where it cannot be trusted,
    a private temporary folder for this process, and the note says why (its packages are not loaded).

    A file of this user's in the folder's place is replaced by the folder (the note says so).
    """
    note = ""
    if folder.exists() and not folder.is_dir() and refusal(folder) is None:
        wipe(folder)
        note = f"replaced {folder}, which was not a folder"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        why = refusal(folder, folder=True)
    except OSError as e:
        why = f"{folder} cannot be created ({e.strerror or e})"
    if why is None:
        return folder, note
    own = Path(tempfile.mkdtemp(prefix="rde-compile-"))  # 0700, this process's only
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    return own, (f"compile cache refused: {why}, so a library in it could be someone else's code "
                 f"(fix: chown it to this user and chmod 700, or set ZOO_COMPILE_CACHE); "
                 f"building in {own} for this run instead")


# --- what names a package -------------------------------------------------------------------

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
    bf16 = bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return {"device": device.type, "isa": torch.backends.cpu.get_cpu_capability(), "bf16": bf16,
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

    def check(self) -> str:
        """"" if the package is there, whole, built for exactly this key and trusted; else why not."""
        if not self.path.exists() and not self.path.is_symlink():
            return "not built yet"
        why = refusal(self.path) or refusal(self.record)
        if why:
            return f"refused: {why}"
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "its record is missing or unreadable"
        if not isinstance(record, dict) or record.get("fields") != self.fields:
            return "its record is for another key"
        if record.get("sha256") != sha256_of(self.path):
            return "it does not match its record's sha256"
        return ""

    def valid(self) -> bool:
        """The package is there, whole, built for exactly this key, and trusted (``check``)."""
        return not self.check()

    def remove(self) -> None:
        for p in (self.path, self.record):
            wipe(p)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)



def wipe(path: Path) -> None:
    """Remove a folder, or whatever else sits at ``path``."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def example(kind: str, shape: tuple[int, int, int], device: torch.device) -> torch.Tensor:
    n = 1 if kind == "one" else 2
    return torch.zeros(n, *shape, device=device).contiguous(memory_format=torch.channels_last)


def prune(package: Package) -> None:
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
            wipe(other.with_suffix(".json"))  # an older format's record
    for leftover in folder.glob(".*"):
        if not _LEFTOVER.match(leftover.name):
            continue  # not ours: a cache folder may be shared
        with contextlib.suppress(OSError):
            st = leftover.stat()
            if now - max(st.st_mtime, st.st_ctime) > STALE_LEFTOVERS_S:  # a new hard link updates ctime
                wipe(leftover)

