"""What a batch run gives back: per-image top-k, per-model totals, agreement, CSV/JSON."""

from __future__ import annotations

import csv
import dataclasses
import heapq
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from .inputs import Skipped, ZipMember

MAX_MATTERED = 12  # "where depth mattered": how many images to keep

@dataclass
class ImageResult:
    """One image through every model: top-k per model (rows in the batch's model order)."""

    index: int  # position among the items
    name: str
    label: int | None
    top: np.ndarray  # (models, k) class indices, most probable first
    probs: np.ndarray  # (models, k) float32
    label_probs: np.ndarray | None  # (models,) probability each model gives the label
    source: Path | ZipMember = field(repr=False)
    thumbnail: Image.Image | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    def top1(self, m: int) -> int:
        return int(self.top[m, 0])

    def correct(self, m: int, k: int = 1) -> bool | None:
        return None if self.label is None else bool(self.label in self.top[m, :k])

    @property
    def agree(self) -> bool:
        return len(set(self.top[:, 0].tolist())) == 1


@dataclass
class ModelSummary:
    name: str
    depth: int
    images: int = 0
    labelled: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    confidence_sum: float = 0.0
    seconds: float = 0.0  # forwards only: host-to-device copy, network, softmax, top-k

    @property
    def top1(self) -> float | None:
        return self.top1_correct / self.labelled if self.labelled else None

    @property
    def top5(self) -> float | None:
        return self.top5_correct / self.labelled if self.labelled else None

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.images if self.images else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.name, "depth": self.depth, "images": self.images, "labelled": self.labelled,
                "top1": self.top1, "top1_correct": self.top1_correct, "top5": self.top5,
                "top5_correct": self.top5_correct, "mean_confidence": round(self.mean_confidence, 6),
                "images_per_s": round(self.images_per_s, 2), "seconds": round(self.seconds, 4)}


@dataclass
class Mattered:
    """An image on which depth made a difference, and in what way."""

    image: ImageResult
    reason: str


@dataclass
class BatchResult:
    models: list[str]
    labels: tuple[str, ...] = field(repr=False)
    top_k: int
    per_model: list[ModelSummary]
    agreement: np.ndarray  # (models, models): share of images with the same top-1
    mattered: list[Mattered]
    images: list[ImageResult]  # empty when the run was asked not to keep them
    skipped: list[Skipped]
    notes: list[str]
    n_images: int
    n_labelled: int
    device: str
    precision: str
    batch_size: int
    seconds: float
    partial: bool = False  # the images done so far, while the run goes on (or after it was stopped)
    precision_note: str = ""  # why the models ran at ``precision`` (zoo.autotune)
    decision: Any = None  # zoo.decision.Decision, when the run was asked to decide

    def predictions(self) -> Iterator[dict[str, Any]]:
        """One record per image and model: what the CSV and JSON downloads hold."""
        for img in self.images:
            yield from prediction_records(img, self.models, self.labels, self.top_k)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(csv_header(self.top_k))
        for rec in self.predictions():
            w.writerow(csv_row(rec, self.top_k))
        return buf.getvalue()

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.n_images, "labelled": self.n_labelled, "device": self.device,
            "precision": self.precision, "precision_note": self.precision_note, "batch_size": self.batch_size, "seconds": round(self.seconds, 3),
            "models": [s.to_json() for s in self.per_model],
            "agreement": {"models": self.models, "matrix": np.round(self.agreement, 6).tolist()},
            "mattered": [{"file": m.image.name, "reason": m.reason,
                          "label": self.labels[m.image.label] if m.image.label is not None else None,
                          "top1": {name: self.labels[m.image.top1(i)] for i, name in enumerate(self.models)}}
                         for m in self.mattered],
            "skipped": [{"file": s.name, "reason": s.reason} for s in self.skipped],
            "notes": self.notes,
        }

    def to_json(self) -> dict[str, Any]:
        """The one JSON of a batch run: the CLI's last ``--json`` line, the ``/batch`` endpoint's."""
        return {"summary": self.summary(), **({"decision": self.decision.to_json()} if self.decision else {})}

    def export_json(self) -> dict[str, Any]:
        """The JSON download: ``to_json()`` and every prediction record."""
        return {**self.to_json(), "predictions": list(self.predictions())}


def prediction_records(img: ImageResult, models: Sequence[str], labels: tuple[str, ...],
                       top_k: int) -> Iterator[dict[str, Any]]:
    for m, name in enumerate(models):
        yield {
            "file": img.name, "model": name,
            "label": labels[img.label] if img.label is not None else None, "label_index": img.label,
            "correct": img.correct(m, 1), "correct_top5": img.correct(m, 5),
            # The probability given to the label (negative log-likelihood, zoo.decision); None unlabelled.
            "label_prob": None if img.label_probs is None or img.label is None else float(img.label_probs[m]),
            "predictions": [{"index": int(i), "label": labels[int(i)], "prob": round(float(p), 6)}
                    for i, p in zip(img.top[m, :top_k], img.probs[m, :top_k])],
        }


def csv_header(top_k: int) -> list[str]:
    ranks = [f"top{r}_{what}" for r in range(1, top_k + 1) for what in ("index", "label", "prob")]
    return ["file", "model", "label", "label_index", "correct", "correct_top5", *ranks]


def csv_row(rec: dict[str, Any], top_k: int) -> list[Any]:
    flag = lambda v: "" if v is None else int(v)  # noqa: E731
    row = [rec["file"], rec["model"], rec["label"] or "", "" if rec["label_index"] is None else rec["label_index"],
           flag(rec["correct"]), flag(rec["correct_top5"])]
    for p in rec["predictions"][:top_k]:
        row += [p["index"], p["label"], f"{p['prob']:.6f}"]
    return row


class Tally:
    """Running totals, so a run over a whole dataset keeps counts, not every image."""

    def __init__(self, names: Sequence[str], depths: Sequence[int], keep_images: bool):
        self.per_model = [ModelSummary(name, depth) for name, depth in zip(names, depths)]
        self.names = list(names)
        # "Deeper" follows depth, whatever order the models were picked in.
        self.by_depth = sorted(range(len(names)), key=lambda m: depths[m])
        self.same = np.zeros((len(names), len(names)), dtype=np.int64)
        self.heap: list[tuple[tuple, int, Mattered]] = []
        self.images: list[ImageResult] = []
        self.keep = keep_images
        self.n = self.n_labelled = 0

    def add(self, img: ImageResult, seconds: Sequence[float] | None = None) -> None:
        """Count ``img``; ``seconds``: each model's forward seconds spent on it."""
        self.n += 1
        self.n_labelled += img.label is not None
        top1 = img.top[:, 0]
        self.same += top1[:, None] == top1[None, :]
        for m, s in enumerate(self.per_model):
            s.images += 1
            if seconds is not None:
                s.seconds += float(seconds[m])
            s.confidence_sum += float(img.probs[m, 0])
            if img.label is not None:
                s.labelled += 1
                s.top1_correct += bool(img.correct(m, 1))
                s.top5_correct += bool(img.correct(m, 5))
        scored = self.depth_mattered(img)
        if scored is not None:
            entry = (scored[0], -img.index, Mattered(img, scored[1]))
            (heapq.heappush if len(self.heap) < MAX_MATTERED else heapq.heappushpop)(self.heap, entry)
        if self.keep:
            self.images.append(img)

    def depth_mattered(self, img: ImageResult) -> tuple[tuple, str] | None:
        """(score, reason) when depth made a difference on ``img``; higher scores first.

        Labelled: the right/wrong pattern along depth differs; "only the deeper ones are
        right" ranks first. Otherwise: how many different top-1 classes the depths give.
        """
        top1 = [img.top1(m) for m in self.by_depth]
        distinct = len(set(top1))
        majority = max(top1.count(c) for c in top1) / len(top1)
        spread = (distinct, 1 - majority)
        if img.label is not None:
            right = [bool(img.correct(m)) for m in self.by_depth]
            if any(right) and not all(right):
                first, first_wrong = right.index(True), right.index(False)
                if all(right[first:]):  # wrong up to some depth, right from there on
                    return (2, *spread), f"only {self.names[self.by_depth[first]]} and deeper are right"
                if not any(right[first_wrong:]):  # right, then wrong from some depth on
                    return (1, *spread), f"only {self.names[self.by_depth[first_wrong - 1]]} and shallower are right"
                return (1, *spread), "right: " + ", ".join(self.names[m] for m, r in zip(self.by_depth, right) if r)
        if distinct > 1:
            return (0, *spread), f"{distinct} different top-1 classes across {len(top1)} models"
        return None

    def result(self, labels: tuple[str, ...], top_k: int, skipped: list[Skipped], notes: list[str],
               device: str, precision: str, batch_size: int, seconds: float, partial: bool = False,
               precision_note: str = "") -> BatchResult:
        agreement = self.same / self.n if self.n else np.eye(len(self.names))
        mattered = [m for _, _, m in sorted(self.heap, reverse=True)]
        # A partial result shares nothing mutable with the tally that goes on counting.
        copy = (lambda xs: list(xs)) if partial else (lambda xs: xs)
        per_model = [dataclasses.replace(m) for m in self.per_model] if partial else self.per_model
        return BatchResult(self.names, labels, top_k, per_model, agreement.copy(), mattered, copy(self.images),
                           skipped, notes, self.n, self.n_labelled, device, precision, batch_size, seconds, partial,
                           precision_note)

