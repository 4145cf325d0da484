"""The one way a model gets compiled graphs: ``Compiler``.

``Compiler.run(model, kinds)`` gives ``model`` (a ``zoo.models.LoadedModel``) the graphs of
``kinds`` now, in the calling thread (the CLI, scripts, tests); ``Compiler.submit(model,
kinds)`` queues the same work for the compiler's one background worker (the app): every
model's batch-1 graph first (what a visitor waits on), then the any-batch ones. Both end
in ``Compiler._ensure``: a trusted, valid package in the cache is loaded; a missing one is
built by a child process (``zoo.compile_child``: spawned, niced, its threads capped, one at
a time in this process), then loaded; the new graphs are swapped into the model in one
assignment. No tracing, export or compiling ever runs in this process.

A build that fails, or a child that crashes, is killed or runs out of memory, leaves that
graph out and the model as it was (eager, or with the graphs it had), with the reason in
``model.compile_note``; nothing is raised.

What callers read: ``model.graphs`` (the kinds loaded), ``model.compile_note``,
``Compiler.pending()`` (models waiting for or under a build) and ``Compiler.building()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from .compile_cache import Package, cache_dir, private_folder, prune, weights_digest
from .compiled import KIND_NAMES, KINDS, CompiledTrunk, Plan, _short, describe, load


class LoadedModel(Protocol):
    """What compiling reads and sets on a model: ``zoo.models.LoadedModel`` (not imported: models imports us)."""

    spec: Any
    module: nn.Module
    device: torch.device
    precision: torch.dtype | None
    compiled: CompiledTrunk | None
    compile_note: str
    compile_log: dict[str, str]

BUILD_TIMEOUT_S = 1800  # a build this long is stuck: the child is killed, the model stays eager
NICE = 10  # the child's niceness: a visitor's request comes first
# One child at a time in this process (several would only share the same cores), and one
# model's graphs swapped at a time.
_BUILD_LOCK = threading.RLock()
_ROOT = str(Path(__file__).resolve().parents[1])  # where the child finds the ``zoo`` package


def build_threads() -> int:
    """Torch threads for a build: one fewer than this process uses, at least one (a request keeps a core)."""
    return max(1, torch.get_num_threads() - 1)


class Compiler:
    """Loads or builds compiled graphs for models under one ``Plan``, into one cache folder.

    ``folder``: the cache (default ``zoo.compile_cache.cache_dir()``), checked once, when
    first used (``private_folder``: one that cannot be trusted is replaced by a private
    temporary folder, and ``note`` says why). ``report(model)`` is called by the background
    worker after each graph it handled.
    """

    def __init__(self, plan: Plan, folder: Path | None = None,
                 report: Callable[[LoadedModel], None] | None = None, batch: int = 1):
        self.plan = plan
        self.batch = batch  # the batch size ``auto`` weighs compiled against eager at (zoo.autotune)
        self.report = report
        self.note = ""  # why the cache folder was refused, if it was
        self._asked = folder
        self._folder: Path | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: list[tuple[weakref.ref, str]] = []
        self._current: tuple[str, str] | None = None  # (model name, kind) handled by the worker now
        self._worker: threading.Thread | None = None
        self.command = [sys.executable, "-m", "zoo.compile_child"]  # the child (tests replace it)

    @property
    def folder(self) -> Path:
        with _BUILD_LOCK:
            if self._folder is None:
                self._folder, self.note = private_folder(self._asked or cache_dir())
            return self._folder

    # --- now, in this thread -----------------------------------------------------------------

    def run(self, model: LoadedModel, kinds: Sequence[str] = KINDS, build_missing: bool = True) -> bool:
        """Give ``model`` the graphs of ``kinds`` now (``build_missing``: build what the cache lacks, in a
        child process, waiting for it); True if the model then runs compiled. Never raises."""
        from . import autotune

        if not self.plan.enabled:
            model.compile_note = self.plan.note
            return False
        auto = self.plan.mode == "auto"
        tuned = getattr(model, "tuned", None)
        if tuned is not None:
            tuned.wait()  # graphs are built at the precision measured fastest here (zoo.autotune)
        lost = autotune.compile_lost(model, self.batch) if auto else None
        if lost:  # an earlier start measured eager clearly faster here: no build at all
            model.compile_note = lost
            return False
        try:
            self._ensure(model, kinds, build_missing)
            if auto and model.compiled is not None:
                autotune.check_compiled(model, self.batch)  # keeps the compiled trunk only if not clearly slower
        except Exception as e:  # noqa: BLE001 - the eager model (or the graphs it has) answers; say why
            why = f"compiling failed ({type(e).__name__}: {_short(e)})"
            model.compile_note = f"eager: {why}" if model.compiled is None else f"{model.compile_note}; then {why}"
        return model.compiled is not None and getattr(model, "use_compiled", True)

    def _ensure(self, model: LoadedModel, kinds: Sequence[str], build_missing: bool) -> None:
        with _BUILD_LOCK:  # from reading the graphs the model has to the swap
            folder = self.folder
            have = model.compiled
            crop = model.spec.preprocessing.crop
            shape = (3, crop, crop)
            dtype = model.precision or torch.float32
            digest = weights_digest(model.module)
            graphs, notes, wanted = {}, {}, []
            for kind in kinds:
                if have is not None and kind in have.graphs:
                    continue
                package = Package.of(folder, model.spec.name, kind, digest, shape, model.device, dtype)
                t0 = time.perf_counter()
                why = package.check()
                if not why:
                    try:
                        graphs[kind] = load(package, shape, model.device)
                        notes[kind] = f"{KIND_NAMES[kind]} loaded from the cache in {time.perf_counter() - t0:.1f} s"
                        continue
                    except Exception as e:  # noqa: BLE001 - a package that does not load is rebuilt
                        why = f"its cached package failed to load ({type(e).__name__}: {_short(e)})"
                if why != "not built yet":
                    package.remove()  # refused, damaged or stale: never loaded (the folder is ours)
                else:
                    why = ""
                if not build_missing:
                    if why:
                        notes[kind] = f"{KIND_NAMES[kind]}: {why}; not rebuilt"
                    continue
                wanted.append((package, why))
            if wanted:
                built = self._build(model, [p for p, _ in wanted], shape)
                for package, why in wanted:
                    kind = package.fields["kind"]
                    outcome = built[kind]
                    if "error" not in outcome:
                        prune(package)  # older packages of this model and kind, a crashed build's leftovers
                        try:
                            graphs[kind] = load(package, shape, model.device)
                        except Exception as e:  # noqa: BLE001 - this graph stays out
                            outcome = {"error": f"the built package failed to load ({type(e).__name__}: {_short(e)})"}
                    if "error" in outcome:
                        notes[kind] = f"{KIND_NAMES[kind]} failed ({outcome['error']})"
                    else:
                        notes[kind] = f"{KIND_NAMES[kind]} built in {outcome['seconds']:.1f} s" + (
                            f" (its cached package: {why})" if why else "")
            if graphs:
                model.compiled = (have or CompiledTrunk(shape, model.device)).with_graphs(graphs)  # the swap
            model.compile_log.update(notes)
            if model.compile_log or self.note:
                text = describe(model.compiled, model.compile_log, folder) if model.compile_log else "eager"
                model.compile_note = f"{text}; {self.note}" if self.note else text

    def _build(self, model: LoadedModel, packages: list[Package], shape: tuple[int, int, int]) -> dict[str, dict]:
        """Build ``packages`` in a child process; per kind ``{"seconds": s}`` or ``{"error": why}``."""
        from safetensors.torch import save_file

        with tempfile.TemporaryDirectory(prefix="rde-build-") as tmp:  # 0700: the weights are ours
            work = Path(tmp)
            # The folded model's weights, as the parent has them: the child loads these, so the
            # package holds exactly the weights its key's digest names.
            save_file({k: v.detach().to("cpu").contiguous() for k, v in model.module.state_dict().items()},
                      str(work / "weights.safetensors"))
            job = {"arch": model.spec.arch.name, "weights": str(work / "weights.safetensors"),
                   "dtype": str(model.precision or torch.float32), "shape": list(shape),
                   "device": str(model.device), "threads": build_threads(),
                   "graph_threads": torch.get_num_threads(), "nice": NICE, "result": str(work / "result.json"),
                   "packages": [{"path": str(p.path), "fields": p.fields} for p in packages]}
            (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
            code, log = self._spawn(work)
            try:
                results = json.loads((work / "result.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                results = {}
        failed = {"error": _child_failure(code, log)}
        return {p.fields["kind"]: results.get(p.fields["kind"], failed) for p in packages}

    def _spawn(self, work: Path) -> tuple[int, str]:
        """Run the child on ``work/job.json`` and wait; its exit code and the end of its output."""
        threads = str(build_threads())
        env = {**os.environ, "OMP_NUM_THREADS": threads, "TORCHINDUCTOR_COMPILE_THREADS": threads,
               "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        with (work / "child.log").open("wb") as out:
            # A new interpreter (fork+exec, never a fork of this threaded server); its standard input
            # is a pipe it watches, so it ends with this process.
            proc = subprocess.Popen([*self.command, str(work / "job.json")], stdin=subprocess.PIPE, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=work)
            try:
                code = proc.wait(timeout=BUILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            finally:
                if proc.stdin:
                    proc.stdin.close()
        text = (work / "child.log").read_text(encoding="utf-8", errors="replace")
        return code, text[-2000:]

    # --- in the background (the app) ---------------------------------------------------------

    def submit(self, model: LoadedModel, kinds: Sequence[str] = KINDS) -> None:
        """Queue ``model``'s graphs of ``kinds`` for the background worker (started on first use): batch 1
        after the batch-1 graphs already queued, the others last. The eager model answers meanwhile."""
        if not self.plan.enabled:
            model.compile_note = self.plan.note
            return
        with self._lock:
            entries = [(weakref.ref(model), k) for k in kinds]
            known = {(r(), k) for r, k in self._queue}
            entries = [e for e in entries if (model, e[1]) not in known]
            first = [e for e in self._queue + entries if e[1] == KINDS[0]]
            self._queue[:] = first + [e for e in self._queue + entries if e[1] != KINDS[0]]
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="zoo-compile", daemon=True)
                self._worker.start()
            self._idle.notify_all()

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._idle.wait()
                ref, kind = self._queue.pop(0)
                model = ref()  # None: the model was evicted and freed meanwhile
                self._current = (model.spec.name, kind) if model is not None else None
            try:
                if model is not None:
                    self.run(model, [kind])  # never raises: a failure is in compile_note
                    if self.report:
                        try:
                            self.report(model)
                        except Exception:  # noqa: BLE001 - a broken report must not stop later builds
                            pass
            finally:
                with self._lock:
                    self._current = None
                    self._idle.notify_all()

    def pending(self) -> list[str]:
        """Models waiting for or under a build or load now, in queue order."""
        with self._lock:
            names = [self._current[0]] if self._current else []
            for ref, _ in self._queue:
                model = ref()
                if model is not None and model.spec.name not in names:
                    names.append(model.spec.name)
            return names

    def building(self) -> tuple[str, str] | None:
        """(model name, graph kind) the worker handles now, if any."""
        with self._lock:
            return self._current

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued or under way; False if ``timeout`` passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._queue and self._current is None, timeout)


def _child_failure(code: int, log: str) -> str:
    """Why a child gave no result: killed (by whom, probably), or its exit code and last line."""
    last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"the build process was killed by {name}"
        if -code == getattr(signal, "SIGKILL", 9):
            why += " (out of memory, or killed by hand)"
        return why
    return f"the build process exited with code {code}" + (f": {last[:300]}" if last else "")


def compile_model(model: LoadedModel, plan: Plan, kinds: Sequence[str] = KINDS, build_missing: bool = True,
                  folder: Path | None = None) -> bool:
    """``Compiler(plan, folder).run(model, kinds, build_missing)``: for scripts and the CLI."""
    return Compiler(plan, folder).run(model, kinds, build_missing)
