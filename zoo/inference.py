"""Classify an image; keep what the explanations need from the same forward pass."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import UnknownClassError, ZooError
from .images import CropGeometry, LoadedImage, crop_geometry, load_image, model_crop, to_tensor
from .models import LoadedModel
from .registry import Preprocessing


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float


@dataclass
class Classification:
    """One forward pass: predictions plus the last stage's features (for CAM)."""

    model: str
    predictions: list[Prediction]  # top-k, most probable first
    probs: np.ndarray  # (num_classes,) softmax
    logits: np.ndarray  # (num_classes,)
    features: np.ndarray  # (C, h, w) output of the CAM layer, float32
    image: Image.Image  # the upright RGB original
    crop: Image.Image  # exactly what the model saw (before normalisation)
    geometry: CropGeometry
    input: torch.Tensor = field(repr=False)  # normalised 1x3xHxW on CPU, for attributions
    device: str = "cpu"
    precision: str = "fp32"  # what the trunk ran in; pooling and fc are always fp32
    precision_note: str = ""  # why (zoo.autotune: measured here, or asked for)
    # Which trunk produced it: "eager" or "compiled" (zoo.compiled). Not named "path": gradio
    # takes a dict with a "path" key in a JSON answer for a file.
    trunk: str = "eager"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    labels: tuple[str, ...] = ()

    def prediction(self, index: int) -> Prediction:
        return Prediction(index, self.labels[index], float(self.probs[index]))

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "device": self.device, "precision": self.precision,
                "precision_note": self.precision_note, "trunk": self.trunk,
                "predictions": [{"index": p.index, "label": p.label, "prob": p.prob} for p in self.predictions]}


@dataclass(frozen=True)
class Prepared:
    """One image resized, cropped and normalised for one preprocessing recipe."""

    crop: Image.Image
    batch: torch.Tensor  # (1, 3, H, W), normalised, on the CPU


def prepare(image: LoadedImage, pre: Preprocessing) -> Prepared:
    crop = model_crop(image.image, pre)
    return Prepared(crop, to_tensor(crop, pre))


def classify(model: LoadedModel, image: Any, top_k: int = 5, prepared: Prepared | None = None) -> Classification:
    """Classify ``image`` (a ``LoadedImage``, or anything ``load_image`` takes) with ``model``.

    ``prepared``: the image already cropped for ``model.spec.preprocessing`` (compare
    shares it between models with the same recipe).
    """
    loaded = image if isinstance(image, LoadedImage) else load_image(image)
    pre = model.spec.preprocessing
    prepared = prepared or prepare(loaded, pre)
    crop, batch = prepared.crop, prepared.batch
    t0 = time.perf_counter()
    precision, why = model.precision_name, model.precision_note  # read before: a measurement may end meanwhile
    with torch.inference_mode():
        feats, logits, trunk = model.run(model.to_input(batch))
    logits = logits[0]
    probs = torch.softmax(logits, dim=0)
    k = max(1, min(int(top_k), probs.numel()))
    top = torch.topk(probs, k)
    features = feats[0].cpu().numpy()
    probs_np, logits_np = probs.cpu().numpy(), logits.cpu().numpy()
    seconds = time.perf_counter() - t0
    labels = model.labels
    preds = [Prediction(int(i), labels[int(i)], float(p)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
    return Classification(
        model=model.spec.name, predictions=preds, probs=probs_np, logits=logits_np, features=features,
        image=loaded.image, crop=crop, geometry=crop_geometry(loaded.image.size, pre), input=batch,
        device=str(model.device), precision=precision, precision_note=why, trunk=trunk, seconds=seconds, notes=list(loaded.notes),
        labels=labels,
    )


def top_k_param(top_k: Any, most: int = 1000) -> int:
    """``top_k`` as a whole number in 1..``most``; a raw API call may send 2.5, "5" or a list."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float, np.integer)) or (
            isinstance(top_k, float) and not top_k.is_integer()) or not 1 <= top_k <= most:
        raise ZooError(f"top_k must be a whole number from 1 to {most}, got {top_k!r}.")
    return int(top_k)


MAX_TARGET_CHARS = 200  # the longest ImageNet class name has 98; a zoo file's labels, far fewer


def resolve_target(labels: tuple[str, ...], target: int | str | None, default: int) -> int:
    """A class index from an index, a digit string, a (case-insensitive) name, or None."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return default
    if isinstance(target, bool) or not isinstance(target, (int, np.integer, str)):
        raise UnknownClassError(f"The target class must be a class name or an index 0..{len(labels) - 1}, not "
                                f"{type(target).__name__}.")
    if isinstance(target, str) and len(target) > MAX_TARGET_CHARS:
        # Before int() (over 4,300 digits it raises ValueError) and the close-match search.
        raise UnknownClassError(f"The target class is {len(target)} characters long; give a class name (at most "
                                f"{MAX_TARGET_CHARS} characters) or an index 0..{len(labels) - 1}.")
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.strip().isdigit()):
        idx = int(target)
        if not 0 <= idx < len(labels):
            raise UnknownClassError(f"Class index {idx} is out of range; this model has classes 0..{len(labels) - 1}.")
        return idx
    name = target.strip()
    lowered = [lab.lower() for lab in labels]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    # "123: tabby" as shown in the app's class picker
    head, sep, tail = name.partition(":")
    if sep and head.strip().isdigit():
        idx = int(head)
        if idx < len(labels) and tail.strip().lower() == lowered[idx]:
            return idx
    close = difflib.get_close_matches(name.lower(), lowered, n=5, cutoff=0.6)
    close += [lab for lab in lowered if name.lower() in lab and lab not in close][: 5 - len(close)]
    hint = f" Close matches: {', '.join(labels[lowered.index(c)] for c in close)}." if close else ""
    raise UnknownClassError(f"Unknown class {name!r}.{hint} Give a class name or an index 0..{len(labels) - 1}.")
