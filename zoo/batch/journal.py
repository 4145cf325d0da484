"""A resumable run: JSON lines written as results arrive, read back by ``--resume``.

``--out FILE.jsonl`` (``zoo batch``, ``zoo robustness``, either engine) keeps a journal:

* line 1, the header: what run wrote it (command, models, precision, top-k kept, a digest
  of every image's label, each model's weights sha256 and commit), so that ``--resume``
  refuses to mix in results of another run, and says what differs;
* one line per (sample key, model) as each ``Scored`` arrives, flushed: the key (``[file]``
  for batch, ``[file, corruption, severity]`` for robustness), the file, the model, the
  label, the top-k with probabilities, the probability of the label, forward seconds;
* one line per item that could not be used (``"skipped": reason``).

``Journaled`` wraps any ``Executor``: it gives back the journal's results for the items
already done (rebuilt from the file), passes only the items not fully done to the
executor it wraps, and writes a line for each (key, model) not in the file yet, so a
line is never written twice. A line torn by a crash (the process killed mid-write) is cut
off when the journal is reopened. What comes downstream (the summary, the tally) sees
every item exactly once, whichever run did it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ZooError
from .executor import Progress

VERSION = 2  # 2: the header records the labels' digest and the weights (a file of version 1 cannot be checked)
# What must match for --resume to go on with a file: a different model list, precision or
# top-k would give a summary that mixes two runs.
MATCH = ("command", "models", "precision", "keep_k")
# ... and whatever the plan adds (``Plan.journal_fields``: robustness's seed, say); the labels'
# digest and the weights are compared apart (``_differences``), with messages of their own.
CHECKED = ("labels", "weights")


class JournalError(ZooError):
    """The journal file cannot be used: another run's, unreadable, or not a journal."""


def key_text(key: Sequence[Any]) -> str:
    return json.dumps(list(key), separators=(",", ":"))


@dataclass
class Journal:
    """An open journal file. ``done``: key text -> bitmask of the models written for it."""

    path: Path
    header: dict[str, Any]
    names: tuple[str, ...]
    labels: tuple[str, ...]
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # file name -> reason
    lines: list[dict[str, Any]] = field(default_factory=list, repr=False)  # records read at open
    _file: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike, *, command: str, names: Sequence[str], labels: Sequence[str],
             precision: str, keep_k: int, resume: bool, extra: dict[str, Any] | None = None,
             targets: str | None = None, weights: dict[str, dict[str, str | None]] | None = None) -> Journal:
        """Start ``path`` afresh, or (``resume``) read it and append to it.

        Resuming a file that does not exist yet starts it: the same command line works for
        the first run and every rerun. ``targets``: a digest of every item's label
        (``labels_digest``); ``weights``: each model's ``hub.weights_identity``.
        """
        p = Path(path)
        header = {"journal": VERSION, "command": command, "models": list(names), "precision": precision,
                  "keep_k": int(keep_k), **(extra or {}), "labels": targets, "weights": weights or {}}
        j = cls(p, header, tuple(names), tuple(labels))
        if resume and p.exists() and p.stat().st_size:
            j._read(header)
            j._file = open(p, "a", encoding="utf-8")
        else:
            try:
                j._file = open(p, "w", encoding="utf-8")
            except OSError as e:
                raise JournalError(f"Cannot write {p} ({e.strerror}).") from None
            j._write([header])
        return j

    def _read(self, want: dict[str, Any]) -> None:
        good_end = 0
        with open(self.path, "rb") as f:
            raw = f.read()
        pos = 0
        first = True
        while pos < len(raw):
            nl = raw.find(b"\n", pos)
            if nl < 0:
                break  # a torn last line: dropped below
            line = raw[pos:nl]
            pos = nl + 1
            try:
                rec = json.loads(line)
            except ValueError:
                if pos >= len(raw):
                    break  # torn, then a newline from a later write: drop it too
                lineno = raw.count(b"\n", 0, nl) + 1
                raise JournalError(f"{self.path}, line {lineno}: not JSON. Is it a journal written by "
                                   "--out FILE.jsonl?") from None
            if first:
                first = False
                if not isinstance(rec, dict) or rec.get("journal") != VERSION:
                    raise JournalError(f"{self.path} is not a journal of this version (its first line should be "
                                       "the header). Pass a new --out file, or drop --resume to overwrite it.")
                differ = _differences(rec, want)
                if differ:
                    raise JournalError(f"{self.path} was written by another run ({'; '.join(differ)}). Resume "
                                       "with the same options, inputs and weights, or pass a new --out file.")
                self.header = rec
            else:
                self._take(rec, raw.count(b"\n", 0, nl) + 1)
            good_end = pos
        if first:
            raise JournalError(f"{self.path} holds no journal header. Pass a new --out file, or drop --resume.")
        if good_end < len(raw):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def _take(self, rec: Any, lineno: int) -> None:
        """One result or skip line read back; ``JournalError`` naming the line if it is not one."""
        try:
            if "skipped" in rec:
                self.failed[str(rec["file"])] = str(rec["skipped"])
                self.lines.append(rec)
                return
            if rec["model"] not in self.names:
                return
            bit = 1 << self.names.index(rec["model"])
            k = key_text(rec["key"])
            _check_result(rec)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            what = f"no {e}" if isinstance(e, KeyError) else str(e)
            raise JournalError(f"{self.path}, line {lineno}: not a result line of a journal ({what}). Was the file "
                               "edited? Remove that line (its image is then run again), or pass a new --out "
                               "file.") from None
        if self.done.get(k, 0) & bit:
            return  # never expected; a duplicate is read once
        self.done[k] = self.done.get(k, 0) | bit
        self.lines.append(rec)

    def _write(self, recs: list[dict[str, Any]]) -> None:
        # One write per event, then flush: a crash leaves whole lines and at most one torn one.
        self._file.write("".join(json.dumps(r) + "\n" for r in recs))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what is left to do ----------------------------------------------------------------

    def complete(self, index: int, item: Any, plan: Any) -> bool:
        """Every key of ``item`` written for every model, or the item recorded as unusable."""
        if item.name in self.failed:
            return True
        full = (1 << len(self.names)) - 1
        return all(self.done.get(key_text(k), 0) == full for k in plan.keys(index, item))

    # --- writing ----------------------------------------------------------------------------

    def record(self, event: Any) -> None:
        """Lines for a ``Scored`` (those of its (key, model) pairs not in the file) or a ``Failed``."""
        if hasattr(event, "reason"):  # Failed
            if event.item.name not in self.failed:
                self.failed[event.item.name] = event.reason
                self._write([{"key": None, "file": event.item.name, "index": event.index,
                              "skipped": event.reason}])
            return
        s = event.sample
        k = key_text(s.key)
        have = self.done.get(k, 0)
        recs = []
        for m, name in enumerate(self.names):
            if have & (1 << m):
                continue
            recs.append(self._line(event, m))
            have |= 1 << m
        if recs:
            self._write(recs)
            self.done[k] = have

    def _line(self, ev: Any, m: int) -> dict[str, Any]:
        s = ev.sample
        t = s.target
        top = [int(i) for i in ev.top_idx[m]]
        rec = {"key": list(s.key), "file": ev.item.name, "model": self.names[m], "index": s.index,
               "label": self.labels[t] if t is not None else None, "label_index": t,
               "correct": None if t is None else top[0] == t,
               "correct_top5": None if t is None else t in top[:5],
               "predictions": [{"index": i, "label": self.labels[i], "prob": float(p)}
                               for i, p in zip(top, ev.top_p[m])],
               "label_prob": None if ev.target_p is None else float(ev.target_p[m]),
               "seconds": float(ev.seconds[m])}
        meta = {k: v for k, v in (s.meta or {}).items() if _jsonable(v)}
        if meta:
            rec["meta"] = meta
        return rec

    # --- reading back -----------------------------------------------------------------------

    def replay(self, items: Sequence[tuple[int, Any]]) -> Iterator[Any]:
        """The file's results for ``items`` as ``Scored`` / ``Failed``, one per key with every
        model (keys not complete are left to the run). The items' current positions are used."""
        from .executor import Failed, Sample, Scored

        by_name = {it.name: (i, it) for i, it in items}
        full = (1 << len(self.names)) - 1
        pending: dict[str, list[dict[str, Any] | None]] = {}
        for rec in self.lines:
            if "skipped" in rec:
                if rec["file"] in by_name:
                    i, it = by_name[rec["file"]]
                    yield Failed(i, it, rec["skipped"])
                continue
            k = key_text(rec["key"])
            if self.done.get(k) != full or rec["file"] not in by_name:
                continue
            row = pending.setdefault(k, [None] * len(self.names))
            row[self.names.index(rec["model"])] = rec
            if all(r is not None for r in row):
                del pending[k]
                i, it = by_name[rec["file"]]
                recs: list[dict[str, Any]] = row  # type: ignore[assignment]
                target = recs[0]["label_index"]
                meta = dict(recs[0].get("meta") or {})
                sample = Sample(i, tuple(recs[0]["key"]), {}, target, meta)
                tp = None if recs[0]["label_prob"] is None else np.array([r["label_prob"] for r in recs], np.float32)
                yield Scored(sample, it,
                             np.array([[p["index"] for p in r["predictions"]] for r in recs], np.int32),
                             np.array([[p["prob"] for p in r["predictions"]] for r in recs], np.float32),
                             tp, np.array([r["seconds"] for r in recs], np.float64))


def _check_result(rec: dict[str, Any]) -> None:
    """Raise (KeyError, TypeError, ValueError) unless ``rec`` has what ``replay`` reads, typed as written."""
    if not isinstance(rec["key"], list) or not isinstance(rec["file"], str):
        raise ValueError("its key or file is not what a journal writes")
    label = rec["label_index"]
    if label is not None and not isinstance(label, int):
        raise ValueError(f"label_index {label!r} is not a class index")
    for p in rec["predictions"]:
        int(p["index"]), float(p["prob"])
    if rec["label_prob"] is not None:
        float(rec["label_prob"])
    float(rec["seconds"])


def _differences(rec: Any, want: dict[str, Any]) -> list[str]:
    """What a journal's header says that this run does not (empty: the same run)."""
    fields = (*MATCH, *(k for k in want if k not in MATCH and k not in CHECKED and k != "journal"))
    out = [f"{k}: {rec.get(k)!r} in the file, {want.get(k)!r} now" for k in fields if rec.get(k) != want.get(k)]
    if rec.get("labels") != want.get("labels"):
        out.append("the images' labels differ (another --labels file, other label folders, or other images)")
    mine, theirs = want.get("weights") or {}, rec.get("weights") or {}
    for name in want.get("models", []):
        a, b = theirs.get(name) or {}, mine.get(name) or {}
        for key, what in (("sha256", "weights sha256"), ("revision", "revision")):
            if a.get(key) and b.get(key) and a[key] != b[key]:  # what both sides know
                out.append(f"{name}'s {what}: {a[key][:12]} in the file, {b[key][:12]} now")
    return out


def labels_digest(targets: Sequence[tuple[str, int | None]]) -> str:
    """A digest of (file, label index) for every item of a run: the labels it is scored against."""
    return hashlib.sha256(json.dumps(sorted(targets, key=lambda t: t[0])).encode()).hexdigest()


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


class Journaled:
    """An ``Executor`` that keeps a journal at ``path``: results of items already in the file
    come from the file, the others from the wrapped executor, and each new (key, model) is
    written as it arrives. Both engines, both commands (``command``: "batch", "robustness").

    The file is opened when the run starts (the run's top-k is known then) and closed when
    it ends, however it ends. ``resume``: read the file and go on; otherwise start it afresh.
    A plan may add fields that must match on resume through ``journal_fields()`` (a seed,
    say)."""

    def __init__(self, inner: Any, path: str | os.PathLike, *, command: str, resume: bool):
        self.inner = inner
        self.path = Path(path)
        self.command = command
        self.resume = resume
        for attr in ("names", "depths", "preprocessings", "labels", "device", "precision", "weights"):
            setattr(self, attr, getattr(inner, attr))
        self.precision_note = getattr(inner, "precision_note", "")  # zoo.autotune's why, where the engine says
        self.resumed = 0  # items whose results came from the file, in the last run
        self.journal: Journal | None = None

    def default_batch_size(self) -> int:
        return self.inner.default_batch_size()

    def identity(self, items: Sequence[tuple[int, Any]], plan: Any) -> tuple[str, dict[str, dict[str, Any]]]:
        """(digest of the items' labels, each model's weights) of this run, for the journal's header."""
        from ..hub import weights_identity

        targets = plan.targets
        digest = labels_digest([(it.name, targets.get(i) if isinstance(targets, dict) else targets[i])
                                for i, it in items])
        models = getattr(self.inner, "models", None)  # loaded here: the files they were read from
        if models is not None:
            weights = {lm.spec.name: weights_identity(lm.spec, lm.weights_file) for lm in models}
        else:  # loaded elsewhere (Ray's actors): what this machine's cache or the pins say
            weights = {spec.name: weights_identity(spec) for spec in getattr(self.inner, "specs", [])}
        return digest, weights

    def run(self, items: Sequence[tuple[int, Any]], plan: Any, *, keep_k: int, batch_size: int) -> Iterator[Any]:
        extra = plan.journal_fields() if hasattr(plan, "journal_fields") else {}
        digest, weights = self.identity(items, plan)
        with Journal.open(self.path, command=self.command, names=self.names, labels=self.labels,
                          precision=self.precision, keep_k=keep_k, resume=self.resume, extra=extra,
                          targets=digest, weights=weights) as j:
            self.journal = j
            todo, done = [], []
            for i, it in items:
                (done if j.complete(i, it, plan) else todo).append((i, it))
            self.resumed = len(done)
            yield from j.replay(done)
            if not todo:
                return
            for event in self.inner.run(todo, plan, keep_k=keep_k, batch_size=batch_size):
                if not isinstance(event, Progress):
                    j.record(event)
                yield event
