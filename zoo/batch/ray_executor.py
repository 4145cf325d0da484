"""The Ray executor: the batch seam's ``Executor`` on a Ray cluster (``--engine ray``).

A Ray Data pipeline, built per run:

1. ``from_items``: one row per item: its position, the ``Item`` (pickled) and its bytes
   when it is a zip member (the driver reads zips; workers get bytes), else its path.
2. ``flat_map`` in CPU tasks: ``plan.load`` decodes each item once and ``plan.sample``
   makes each of its ``Sample``s (one for ``zoo batch``; the clean crop and every
   corruption for ``zoo robustness``); a file that cannot be used becomes one error row.
3. One ``map_batches`` per model with a callable class: an actor pool per model, each
   actor loading its model once through ``zoo.models.load_model`` (the verified Hub
   download, sha256 checked on that node) at the run's device and precision, then running
   batched forwards and adding that model's top-k columns.
4. The driver iterates the output as blocks finish and turns rows back into ``Scored`` /
   ``Failed``; the order is the order of completion.

Retries: Ray Data's actor pools restart a dead actor (``max_restarts=-1``) and resubmit
the batch it held (``max_task_retries=-1``); its CPU tasks are run again when their
worker or node is lost (``max_retries=-1`` on system errors). Those defaults are kept on
purpose (``max_restarts=0`` turns actor restarts off, for a test). A lost worker therefore
costs time, never a result. What does fail the run (a Python error in a model, Ctrl-C, a
driver crash) is what ``--out FILE.jsonl`` / ``--resume`` are for (``zoo.batch.journal``).

Ray is imported only here, and this module only with ``--engine ray``.
"""

from __future__ import annotations

import math
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ZooError

# Environment the workers need to find the same weights as the driver: the Hub endpoint
# and cache, offline mode, the zoo file, the precision. Forwarded when set on the driver.
FORWARDED_ENV = ("HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_ETAG_TIMEOUT",
                 "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_PROGRESS_BARS", "ZOO_FILE", "ZOO_PRECISION")
# Read at each run (not only when Ray starts), so that a test can lose a worker on purpose.
FAULT_ENV = ("ZOO_RAY_FAULT", "ZOO_RAY_FAULT_MARKER")
# CPU reserved for each decode task: decoding is real work, but on a small machine the
# actors must still fit beside it.
DECODE_CPUS = 0.5


class RayUnavailableError(ZooError):
    """``--engine ray`` without Ray installed, or no cluster at the address."""


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayUnavailableError("--engine ray needs Ray: pip install -r requirements-ray.txt "
                                  "(or use --engine local).") from None
    return ray


def worker_env() -> dict[str, str]:
    """Variables every worker gets: the Hub's and the zoo's, and where this package lives."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    root = str(Path(__file__).resolve().parents[2])  # the folder holding the zoo package
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def connect(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
            object_store_mb: int | None = None):
    """Join the cluster at ``address`` (``auto``: this machine's), or start a local instance.

    A process that is already connected stays connected (tests share one instance). The
    workers of a local instance find this package through PYTHONPATH; on a cluster the
    package (and its requirements) must be installed on every node, or shipped with the
    job (``ray job submit --working-dir``).
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                                  runtime_env={"env_vars": worker_env()})
    if address is None:
        # A local instance on a small machine: no dashboard, a modest object store (the
        # pipeline holds a few batches of tensors, never the dataset).
        # address="local": a new instance even where `ray start` left one running (which
        # --ray-address auto joins) or RAY_ADDRESS is set.
        kwargs.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                      object_store_memory=(object_store_mb or 512) << 20)
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"at {address}" if address else "locally"
        detail = " ".join(str(e).split())[:300]
        raise RayUnavailableError(f"Could not start or reach a Ray cluster {where} ({detail}). Start one with "
                                  "`ray start --head`, or drop --ray-address to start a local instance.") from None
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # a line per pipeline start and end otherwise
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the command line reports progress itself
    ctx.verbose_stats_logs = False
    return ray


# --- what runs on the workers -------------------------------------------------------------

def _samples(row: dict[str, Any], plan: Any) -> list[dict[str, Any]]:
    """One item -> its samples' rows (a CPU task): ``plan.load`` once, ``plan.sample`` per key.

    Tensors travel as one pickled list in ``plan.pres`` order, so that rows of every
    shape share one schema. An item whose load or any sample fails is one error row (the
    local executor keeps the samples it scored before the failing one; here none are made)."""
    from ..errors import ZooError

    index = int(row["index"])
    item = pickle.loads(row["item"])
    data = row["data"] if row["data"] is not None and len(row["data"]) else Path(row["path"])
    try:
        loaded = plan.load(index, item, data)
        samples = [plan.sample(loaded, index, key) for key in plan.keys(index, item)]
    except ZooError as e:
        return [{"index": index, "key": "", "target": -1, "meta": b"", "x": b"",
                 "error": _reason(str(e), item.name)}]
    out = []
    for s in samples:
        xs = [s.tensors[pre].numpy() for pre in plan.pres]
        out.append({"index": index, "key": _key_text(s.key), "target": -1 if s.target is None else int(s.target),
                    "meta": pickle.dumps(s.meta), "x": pickle.dumps(xs, protocol=5), "error": ""})
    return out


def _reason(message: str, name: str) -> str:
    if message.startswith(name + " "):
        message = message[len(name) + 1:].removeprefix("is ")
    return message


def _key_text(key: tuple) -> str:
    import json

    return json.dumps(list(key))


class ModelWorker:
    """One model in one actor: loaded once (verified weights), then batched forwards."""

    def __init__(self, spec: Any, m: int, pre_index: int, device: str, precision: str, keep_k: int,
                 threads: int | None, last: bool):
        import torch

        from ..models import load_model

        if threads:
            torch.set_num_threads(threads)
        self.lm = load_model(spec, device, precision=precision)
        self.m, self.pre_index, self.keep_k, self.last = m, pre_index, keep_k, last
        self.calls = 0

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from .executor import classify_batch

        self.calls += 1
        _maybe_fault(self.m, self.calls)
        n = len(batch["index"])
        top = np.zeros((n, self.keep_k), np.int32)
        prob = np.zeros((n, self.keep_k), np.float32)
        tp = np.full(n, np.nan, np.float32)
        sec = np.zeros(n, np.float64)
        ok = [i for i in range(n) if not batch["error"][i]]
        if ok:
            x = torch.from_numpy(np.stack([pickle.loads(batch["x"][i])[self.pre_index] for i in ok]))
            targets = batch["target"][ok]
            tgt = torch.from_numpy(targets.astype(np.int64)) if (targets >= 0).any() else None
            t0 = time.perf_counter()
            idx, p, target_p = classify_batch(self.lm, x, self.keep_k, tgt)
            dt = time.perf_counter() - t0
            top[ok], prob[ok], sec[ok] = idx, p, dt / len(ok)
            if target_p is not None:
                tp[ok] = np.where(targets >= 0, target_p, np.nan)
        out = {k: v for k, v in batch.items() if not (self.last and k == "x")}
        out[f"top{self.m}"], out[f"prob{self.m}"], out[f"tp{self.m}"], out[f"sec{self.m}"] = top, prob, tp, sec
        return out


def _maybe_fault(m: int, calls: int) -> None:
    """``ZOO_RAY_FAULT=M:N``: model M's actor dies (its process exits) on its N-th batch: how
    the tests lose a worker mid-run, as a lost node would. With ``ZOO_RAY_FAULT_MARKER=FILE``
    only once (the restarted actor lives), else in every incarnation."""
    spec = os.environ.get("ZOO_RAY_FAULT")
    if not spec:
        return
    fm, fn = (int(v) for v in spec.split(":"))
    if (fm, fn) != (m, calls):
        return
    marker = os.environ.get("ZOO_RAY_FAULT_MARKER")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
    sys.stderr.flush()
    os._exit(17)


# --- the executor ---------------------------------------------------------------------------

class RayExecutor:
    """``Executor`` on Ray: same samples, same forwards, same records as ``LocalExecutor``.

    ``specs``: the models (their ``ModelSpec``s travel to the actors, which fetch and verify
    the weights themselves). ``workers``: actors per model (default: from the cluster's
    GPUs, or one per CPU shared out between the models). ``threads``: torch threads per CPU
    actor (default: the CPUs of a node over the actors on it).
    """

    def __init__(self, specs: Sequence[Any], *, device: str = "auto", precision: str | None = None,
                 address: str | None = None, workers: int | None = None, threads: int | None = None,
                 num_cpus: int | None = None, max_restarts: int = -1):
        if not specs:
            raise ZooError("Pick at least one model.")
        from ..models import imagenet_labels, precision_plan
        from .executor import same_labels

        self.ray = connect(address, num_cpus=num_cpus)
        self.specs = list(specs)
        self.names = tuple(s.name for s in self.specs)
        self.labels = same_labels(self.names, [s.labels if s.labels is not None else imagenet_labels()
                                               for s in self.specs])
        self.depths = tuple(s.depth for s in self.specs)
        self.preprocessings = tuple(s.preprocessing for s in self.specs)
        self.weights = tuple(s.arch.paper_flops for s in self.specs)
        res = self.ray.cluster_resources()
        self.gpus = int(res.get("GPU", 0))
        self.cpus = float(res.get("CPU", 1))
        if device in ("mps",):
            raise ZooError("--engine ray runs on CUDA GPUs or CPUs; use --engine local for Apple MPS.")
        if device == "cuda" and not self.gpus:
            raise ZooError("--device cuda: the Ray cluster has no GPUs. Drop --device, or add GPU nodes.")
        self.device = "cuda" if self.gpus and device in ("auto", "cuda") else "cpu"
        import torch

        # Resolved here, once: every actor runs the same precision (a worker whose hardware
        # lacks it fails, as a local run would, rather than silently differing). ``auto`` is
        # fp32 here: zoo.autotune measures one machine, and the actors' nodes may differ.
        candidates, why = precision_plan(precision, torch.device(self.device))
        self.precision = candidates[0]  # fp32 for auto, whose note then says why it is not measured
        self.precision_note = why or ("fp32: Ray runs auto at fp32 (nodes may differ; measured only on one "
                                      "machine)")
        self.workers = workers
        self.threads = threads
        self.max_restarts = max_restarts

    def default_batch_size(self) -> int:
        import torch

        from .executor import default_batch_size

        return default_batch_size(torch.device(self.device))

    def plan_resources(self) -> dict[str, Any]:
        """Actors per model, CPUs/GPUs per actor, torch threads per actor."""
        n_models = len(self.specs)
        if self.device == "cuda":
            size = self.workers or self.gpus
            # Every GPU holds one actor of each model: a sample visits all depths on one GPU.
            gpu = min(1.0, self.gpus / (size * n_models))
            return {"size": size, "num_gpus": gpu, "num_cpus": min(1.0, self.cpus / (size * n_models + 1)),
                    "threads": self.threads or 1, "decode_cpus": 1.0}
        decode = DECODE_CPUS if self.cpus <= 8 else 1.0
        # One single-threaded actor per core beats fewer actors with more torch threads: on
        # 2 cores, two 1-thread actors ran 1.9x the images/s of one 2-thread actor
        # (benchmarks/scale.py, README "Scaling out").
        size = self.workers or max(1, int(self.cpus // n_models))
        per_actor = min(1.0, max(0.05, (self.cpus - decode) / (size * n_models)))
        threads = self.threads or max(1, int((os.cpu_count() or 1) // (size * n_models)))
        return {"size": size, "num_gpus": 0, "num_cpus": per_actor, "threads": threads, "decode_cpus": decode}

    def run(self, items: Sequence[tuple[int, Any]], plan: Any, *, keep_k: int, batch_size: int
            ) -> Iterator[Any]:
        from ..cancel import check
        from .executor import Failed, Progress, eta_text

        ray = self.ray
        if not items:
            return
        by_index = {i: it for i, it in items}
        rows: list[dict[str, Any]] = []
        yield from _read_rows(items, rows)
        if not rows:
            return
        n_keys = {r["index"]: len(plan.keys(r["index"], by_index[r["index"]])) for r in rows}
        total = sum(n_keys.values()) or 1
        res = self.plan_resources()
        # About a batch of samples per block (an item's samples stay in its block): decode
        # tasks and actors get work in batch-sized pieces, and results come back as they do.
        blocks = max(1, min(len(rows), math.ceil(total / batch_size)))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        ds = ds.flat_map(_samples, fn_args=(plan,), num_cpus=res["decode_cpus"])
        pres = list(plan.pres)
        fault = {k: os.environ[k] for k in FAULT_ENV if k in os.environ}
        for m, spec in enumerate(self.specs):
            ds = ds.map_batches(
                ModelWorker, batch_size=batch_size, batch_format="numpy",
                fn_constructor_kwargs=dict(spec=spec, m=m, pre_index=pres.index(spec.preprocessing),
                                           device=self.device, precision=self.precision, keep_k=keep_k,
                                           threads=res["threads"], last=m == len(self.specs) - 1),
                compute=ray.data.ActorPoolStrategy(size=res["size"]),
                num_cpus=res["num_cpus"], num_gpus=res["num_gpus"] or None,
                udf_modifying_row_count=False, runtime_env={"env_vars": fault} if fault else None,
                **({} if self.max_restarts == -1 else {"max_restarts": self.max_restarts,
                                                         "max_task_retries": 0}))
        done = 0
        t0 = time.perf_counter()
        n_models = len(self.specs)
        it_batches = ds.iter_batches(batch_size=None, batch_format="numpy")
        try:
            for batch in it_batches:
                check()
                for r in range(len(batch["index"])):
                    i = int(batch["index"][r])
                    item = by_index[i]
                    if batch["error"][r]:
                        done += n_keys[i]
                        yield Failed(i, item, str(batch["error"][r]))
                        continue
                    yield _scored(batch, r, item, n_models)
                    done += 1
                elapsed = time.perf_counter() - t0
                frac = min(1.0, done / total)
                eta = elapsed * (1 - frac) / frac if frac else None
                yield Progress(frac, f"ray: {done} of {total} {getattr(plan, 'noun', 'items')} done · "
                                     f"{eta_text(eta)}")
        except Exception as e:
            if isinstance(e, ZooError):
                raise
            cause = _zoo_cause(e)
            if cause is not None:  # our own error on a worker (weights that fail their check...): as is
                raise cause from None
            raise ZooError(f"The Ray run failed: {_ray_error(e)} Rerun with --resume to go on from the journal "
                           "(--out FILE.jsonl).") from e
        finally:
            close = getattr(it_batches, "close", None)
            if close:
                close()


def _json_key(text: str) -> list:
    import json

    return json.loads(text)


def _zoo_cause(e: BaseException) -> ZooError | None:
    """The ``ZooError`` a worker raised, inside Ray's wrapping of it, if that is what failed."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, ZooError):
            return e
        e = getattr(e, "cause", None) or e.__cause__
        seen += 1
    return None


def _ray_error(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:400] + ("…" if len(text) > 400 else "")


def _read_rows(items: Sequence[tuple[int, Any]], rows: list[dict[str, Any]]) -> Iterator[Any]:
    """``RayExecutor.run``'s input rows, appended to ``rows``: a file by its path, a zip member read
    here and passed as bytes; yields a ``Failed`` for each member that cannot be read."""
    from ..cancel import check
    from .executor import Failed
    from .inputs import Reader

    with Reader() as reader:
        for i, it in items:
            check()
            path, data = "", None
            if isinstance(it.source, Path):
                path = str(it.source.resolve())
            else:
                try:
                    data = reader.read(it)
                except ZooError as e:
                    yield Failed(i, it, _reason(str(e), it.name))
                    continue
            rows.append({"index": i, "item": pickle.dumps(it), "path": path, "data": data})


def _scored(batch: dict[str, Any], r: int, item: Any, n_models: int) -> Any:
    """Row ``r`` of a result batch (every model's columns) as the executor's ``Scored``."""
    from .executor import Sample, Scored

    target = int(batch["target"][r])
    sample = Sample(int(batch["index"][r]), tuple(_json_key(batch["key"][r])), {}, None if target < 0 else target,
                    pickle.loads(batch["meta"][r]))
    tp = None
    if sample.target is not None:
        tp = np.array([batch[f"tp{m}"][r] for m in range(n_models)], np.float32)
    return Scored(sample, item, np.stack([batch[f"top{m}"][r] for m in range(n_models)]).astype(np.int32),
                  np.stack([batch[f"prob{m}"][r] for m in range(n_models)]).astype(np.float32),
                  tp, np.array([batch[f"sec{m}"][r] for m in range(n_models)], np.float64))
