"""Do the deployed weights give real answers? A self-check for a deployment (``python -m zoo selfcheck``).

Every test of this project runs on generated weights, so nothing in them proves that the
real Hub files load into the right keys, with the right preprocessing and class order.
This module checks exactly that, for each model:

1. **Pin and sha256.** Whether the entry pins a commit (a revision that can follow
   ``main`` is reported, not failed: see README, "Pins, and where they come from"), then the
   cached file is hashed afresh and compared with the pinned sha256 (or, unpinned, with the
   Hub's ETag for it). A file that does not match fails the model.
2. **The example photos** (``PHOTOS``): each is classified by the app's own pipeline
   (``zoo.inference.prepare`` and the loaded model, as every request is), and its top-5
   must contain one of the photo's accepted ImageNet classes, by index *and* by name.

How a fault is named, rather than guessed from wrong answers:

* **The input is measured directly.** Beside the pipeline's tensor, the same 224 px crop is
  normalised here independently (numpy, ImageNet's constants written out below, not read
  from the registry). Per channel, the pipeline's tensor is fitted as ``a * reference + b``
  (least squares), once with the channels in order and once reversed. The correct recipe
  gives ``a = 1, b = 0`` in order, to rounding. Channels that fit only when reversed mean a
  **BGR** input; a fit in order with ``a != 1`` or ``b != 0`` means a **wrong mean/std**, and
  the fit says which: the pipeline divides by ``S / a`` and subtracts ``M - b S / a`` (``M``,
  ``S`` ImageNet's). A poor fit either way means another difference (resize, crop, scale).
  Any of these fails the model even if the top-5 happens to be right: real ResNets often
  still find the cat in a BGR photo, so answers alone would hide the fault.
* **The class list is checked against ImageNet's by index**: the accepted classes carry their
  ImageNet index, so "the model puts class 281 first but calls it 'goldfish'" is a **class
  list out of order**, not a wrong model.
* **What is left is the weights.** When the input is right (or, if it was not, on the
  reference input: one more forward) and the names are right, yet no photo's top-5 holds an
  accepted class, the network itself does not compute ImageNet answers: with a verified
  file, its **weights are loaded under the wrong keys** (or are not ImageNet weights for
  this architecture). Keys that do not fit the architecture at all fail at loading, with
  that message.

The photos and their accepted classes (``PHOTOS``): the three examples whose subject is one
ImageNet class, each with the neighbouring classes a correctly loaded ResNet of any depth
may rank first (a tabby is often called a tiger cat or an Egyptian cat; the skimage coffee
cup an espresso, a cup or a coffee mug; the Falcon 9 launch a missile, a projectile or a
space shuttle). The astronaut portrait is left out: its ImageNet answers (uniforms, suits,
ties) vary too much between depths to prove anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .cancel import check
from .errors import ChecksumError, ZooError
from .hub import ProgressFn

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# ImageNet's normalisation, written out: the reference must not read the registry it checks.
REFERENCE_MEAN = (0.485, 0.456, 0.406)
REFERENCE_STD = (0.229, 0.224, 0.225)
FIT_TOLERANCE = 0.01  # |a - 1| and |b| (in units of std) beyond this: a different normalisation
RESIDUAL_TOLERANCE = 0.02  # relative residual of the best fit beyond this: not a normalisation at all
FORWARDS_PER_PHOTO = 2  # the pipeline's forward, and the reference input's when the input is off


@dataclass(frozen=True)
class Photo:
    """A bundled example and the ImageNet classes (index, name) a correct ResNet puts in its top-5."""

    file: str
    shows: str
    accepted: tuple[tuple[int, str], ...]


PHOTOS: tuple[Photo, ...] = (
    Photo("chelsea.png", "a tabby cat", ((281, "tabby"), (282, "tiger cat"), (285, "Egyptian cat"))),
    Photo("coffee.png", "a cup of coffee", ((967, "espresso"), (968, "cup"), (504, "coffee mug"))),
    Photo("rocket.jpg", "a rocket launch", ((657, "missile"), (744, "projectile"), (812, "space shuttle"))),
)


@dataclass
class InputFit:
    """How the pipeline's input tensor relates to the reference one (see the module's docstring)."""

    kind: str  # "ok" | "bgr" | "normalisation" | "other"
    mean: tuple[float, ...] = ()  # the mean and std the pipeline behaves as if it used (RGB order)
    std: tuple[float, ...] = ()
    residual: float = 0.0

    def text(self) -> str:
        if self.kind == "ok":
            return "the input matches torchvision's recipe"
        if self.kind == "bgr":
            return "the input's colour channels are swapped (BGR instead of RGB)"
        if self.kind == "normalisation":
            return (f"the input is normalised as if with mean {_fmt(self.mean)} and std {_fmt(self.std)}, "
                    f"not ImageNet's {_fmt(REFERENCE_MEAN)} and {_fmt(REFERENCE_STD)}")
        return f"the input differs from torchvision's recipe (relative residual {self.residual:.2f} of the best fit)"


@dataclass
class PhotoCheck:
    file: str
    shows: str
    accepted: list[str]
    top5: list[dict[str, Any]]  # {"index", "label", "prob"}: what the pipeline answered
    input: InputFit
    by_index: bool  # an accepted class index is in the top-5
    passed: bool
    reference_top5: list[dict[str, Any]] | None = None  # on the reference input, when the pipeline's differed

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "shows": self.shows, "accepted": self.accepted, "top5": self.top5,
                "input": self.input.kind, "input_detail": self.input.text(), "passed": self.passed,
                **({"reference_top5": self.reference_top5} if self.reference_top5 is not None else {})}


@dataclass
class ModelCheck:
    model: str
    pin: str  # what the entry pins
    pin_ok: bool | None  # None: a local file, nothing to pin
    sha: str  # what the sha256 check found
    sha_ok: bool | None  # None: nothing to compare with (a local file without a sha256)
    photos: list[PhotoCheck] = field(default_factory=list)
    passed: bool = False
    diagnosis: str = ""
    seconds: float = 0.0

    @property
    def status(self) -> str:
        """"pass", "warn" (passes, but the revision can change), or "fail"."""
        if not self.passed:
            return "fail"
        return "warn" if self.pin_ok is False else "pass"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "status": self.status, "passed": self.passed, "pin": self.pin,
                "pin_ok": self.pin_ok, "sha256": self.sha, "sha256_ok": self.sha_ok,
                "photos": [p.to_json() for p in self.photos], "diagnosis": self.diagnosis,
                "seconds": round(self.seconds, 3)}


@dataclass
class SelfCheck:
    models: list[ModelCheck]
    device: str = ""
    precision: str = ""

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.models)

    def health_line(self) -> str:
        """One line for a page header: how many models pass, and the first failure's diagnosis."""
        failed = [m for m in self.models if not m.passed]
        warned = [m.model for m in self.models if m.status == "warn"]
        n = len(self.models)
        if not failed:
            who = "the model passes" if n == 1 else f"all {n} models pass"
            line = f"Self-check: {who} (sha256 verified, example photos answered as ImageNet expects)"
            return line + (f"; not pinned: {', '.join(warned)}." if warned else ".")
        first = failed[0]
        return (f"Self-check: {n - len(failed)} of {n} models pass; {', '.join(m.model for m in failed)} "
                f"{'fails' if len(failed) == 1 else 'fail'}. {first.model}: {first.diagnosis}")

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "device": self.device, "precision": self.precision,
                "health": self.health_line(), "models": [m.to_json() for m in self.models]}


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def reference_tensor(crop: Any):
    """The crop as torchvision's recipe normalises it, computed independently of ``zoo.images``."""
    import numpy as np
    import torch

    pixels = np.asarray(crop.convert("RGB"), dtype=np.float64) / 255.0  # H, W, 3 in RGB order
    normalised = (pixels - np.array(REFERENCE_MEAN)) / np.array(REFERENCE_STD)
    return torch.from_numpy(normalised.transpose(2, 0, 1).copy()).float().unsqueeze(0)


def fit_input(pipeline: Any, reference: Any) -> InputFit:
    """Which normalisation and channel order turn ``reference`` into ``pipeline`` (both 1x3xHxW)."""
    import numpy as np

    if tuple(pipeline.shape) != tuple(reference.shape):
        return InputFit("other", residual=float("inf"))
    x = pipeline[0].detach().double().cpu().numpy().reshape(3, -1)
    r = reference[0].detach().double().cpu().numpy().reshape(3, -1)
    best = None
    for order in ((0, 1, 2), (2, 1, 0)):
        coef, res = [], 0.0
        for c in range(3):
            src = r[order[c]]
            design = np.stack([src, np.ones_like(src)], axis=1)
            (a, b), *_ = np.linalg.lstsq(design, x[c], rcond=None)
            res += float(np.sum((design @ np.array([a, b]) - x[c]) ** 2))
            coef.append((float(a), float(b)))
        residual = (res / max(float(np.sum(x ** 2)), 1e-12)) ** 0.5
        if best is None or residual < best[2] - 1e-9:
            best = (order, coef, residual)
    order, coef, residual = best  # type: ignore[misc]
    if residual > RESIDUAL_TOLERANCE:
        return InputFit("other", residual=residual)
    # x[c] = (p[order c] - m_c) / s_c = a r + b, with r = (p[order c] - M) / S: s = S / a, m = M - b s.
    std = tuple(REFERENCE_STD[order[c]] / coef[c][0] if coef[c][0] else float("inf") for c in range(3))
    mean = tuple(REFERENCE_MEAN[order[c]] - coef[c][1] * std[c] for c in range(3))
    if order != (0, 1, 2):
        return InputFit("bgr", mean, std, residual)
    if any(abs(a - 1) > FIT_TOLERANCE or abs(b) > FIT_TOLERANCE for a, b in coef):
        return InputFit("normalisation", mean, std, residual)
    return InputFit("ok", mean, std, residual)


def _top5(probs: Any, labels: Sequence[str]) -> list[dict[str, Any]]:
    import torch

    top = torch.topk(torch.as_tensor(probs), 5)
    return [{"index": int(i), "label": labels[int(i)], "prob": round(float(p), 4)}
            for p, i in zip(top.values.tolist(), top.indices.tolist())]


def _pin(spec: Any) -> tuple[str, bool | None]:
    if spec.path is not None:
        return f"a local file ({Path(spec.path).name}): nothing to pin", None
    if spec.pinned:
        return f"commit {spec.revision[:12]} of {spec.repo}", True
    return f"follows '{spec.revision}' of {spec.repo} (not pinned: the file can change; python -m zoo pin)", False


def _sha(spec: Any, progress: ProgressFn | None) -> tuple[str, bool | None]:
    """Fetch (verified as every load is), then hash the file afresh and compare once more."""
    from .hub import expected_sha256, fetch_weights, sha256_file

    path = fetch_weights(spec, progress=progress)
    expected = expected_sha256(spec, Path(path))
    if not expected:
        return "no sha256 to check against (a local file without one)", None
    actual = sha256_file(Path(path))
    source = "pinned" if spec.sha256 else "the Hub's ETag"
    if actual == expected[0]:
        return f"{actual[:16]}… matches the {source} sha256", True
    return f"{actual[:16]}… differs from the {source} sha256 {expected[0][:16]}…", False


def check_model(cache: Any, spec: Any, progress: ProgressFn | None = None,
                photos: Sequence[Photo] = PHOTOS) -> ModelCheck:
    """The self-check of one model (see the module's docstring); never raises ``ZooError``."""
    import torch

    from .images import load_image
    from .inference import classify, prepare

    t0 = time.perf_counter()
    pin, pin_ok = _pin(spec)
    out = ModelCheck(spec.name, pin, pin_ok, "not checked", None)
    try:
        out.sha, out.sha_ok = _sha(spec, progress)
        if out.sha_ok is False:
            out.diagnosis = (f"The weights file is not the one pinned ({out.sha}). Run python -m zoo download "
                             f"--force {spec.name}, or check the sha256 in the zoo file.")
            return out
        lm = cache.get(spec, progress)
    except ChecksumError as e:
        out.sha, out.sha_ok = "the file's sha256 differs from the expected one", False
        out.diagnosis = f"The weights file is not the pinned one: {e}"
        out.seconds = time.perf_counter() - t0
        return out
    except ZooError as e:
        out.diagnosis = f"Could not load the weights: {e}"
        out.seconds = time.perf_counter() - t0
        return out
    wrong_names = [(i, name, lm.labels[i] if i < len(lm.labels) else None)
                   for p in photos for i, name in p.accepted if i >= len(lm.labels) or lm.labels[i] != name]
    for photo in photos:
        check()
        if progress:
            progress(None, f"Self-check: {spec.name} on {photo.file}")
        loaded = load_image(EXAMPLES / photo.file)
        prepared = prepare(loaded, spec.preprocessing)
        fit = fit_input(prepared.batch, reference_tensor(prepared.crop))
        run = classify(lm, loaded, 5, prepared)
        top5 = [{"index": p.index, "label": p.label, "prob": round(p.prob, 4)} for p in run.predictions]
        accepted_idx = {i for i, _ in photo.accepted}
        by_index = any(p["index"] in accepted_idx for p in top5)
        reference_top5 = None
        if fit.kind != "ok":  # what the model answers when given the right input
            with torch.inference_mode():
                _, logits = lm.forward(lm.to_input(reference_tensor(prepared.crop)))
            reference_top5 = _top5(torch.softmax(logits[0].float(), 0).cpu(), lm.labels)
        passed = fit.kind == "ok" and by_index and not wrong_names
        out.photos.append(PhotoCheck(photo.file, photo.shows, [n for _, n in photo.accepted], top5, fit, by_index,
                                     passed, reference_top5))
    out.passed = all(p.passed for p in out.photos)
    out.diagnosis = diagnose(out, wrong_names)
    out.seconds = time.perf_counter() - t0
    return out


def diagnose(result: ModelCheck, wrong_names: Sequence[tuple[int, str, str | None]] = ()) -> str:
    """What looks wrong with one model, from its photos' checks (the first fault that fits, in pipeline order)."""
    photos = result.photos
    if result.passed:
        return f"All {len(photos)} photos have an accepted class in the top-5, with the right input and class names."
    kinds = [p.input.kind for p in photos if p.input.kind != "ok"]
    if kinds:
        kind = max(set(kinds), key=kinds.count)
        fit = next(p.input for p in photos if p.input.kind == kind)
        fixed = [p for p in photos if p.reference_top5 is not None and any(
            e["index"] in {i for i, _ in _accepted(p)} for e in p.reference_top5)]
        then = (f"With torchvision's input, {len(fixed)} of {len(photos)} photos would pass."
                if photos else "")
        advice = {"bgr": "Feed the image in RGB order (PIL's), not BGR (OpenCV's).",
                  "normalisation": "Check 'mean' and 'std' of this model's entry (ImageNet's: "
                                   f"{_fmt(REFERENCE_MEAN)}, {_fmt(REFERENCE_STD)}).",
                  "other": "Check 'resize', 'crop' and 'interpolation' of this model's entry, and how pixels are "
                           "scaled to 0..1."}[kind]
        return f"{fit.text()[0].upper()}{fit.text()[1:]}. {advice} {then}".strip()
    if wrong_names:
        i, name, got = wrong_names[0]
        right = [p for p in photos if p.by_index]
        return (f"The class list is not in ImageNet's order: class {i} is called {got!r} here, ImageNet's {name!r} "
                f"({len(wrong_names)} of the checked classes differ; by index the model answers {len(right)} of "
                f"{len(photos)} photos right). Check 'labels' of this model's entry.")
    wrong = [p for p in photos if not p.by_index]
    p = wrong[0]
    answered = ", ".join(f"{e['label']} ({e['prob']:.2f})" for e in p.top5[:3])
    return (f"With the right input and class names, {len(wrong)} of {len(photos)} photos get no accepted class in "
            f"the top-5 ({p.file}, {p.shows}: {answered}). "
            + ("The file is the verified one, so its weights are loaded" if result.sha_ok else "The weights are loaded")
            + " under the wrong keys (or are not ImageNet weights for this architecture).")


def _accepted(photo: PhotoCheck) -> list[tuple[int, str]]:
    return next(p.accepted for p in PHOTOS if p.file == photo.file)


def report(result: SelfCheck) -> str:
    """The self-check as text, one block per model (the command line prints it)."""
    lines = [f"Self-check on {result.device}, {result.precision}:"]
    for m in result.models:
        lines.append(f"{m.model}: {m.status.upper()}")
        # An unpinned file's text says "not pinned" itself (it was printed twice on one line).
        lines.append(f"  pin:    {m.pin}" if m.pin_ok is False else f"  pin:    {'ok' if m.pin_ok else '-'}: {m.pin}")
        lines.append(f"  sha256: {'ok' if m.sha_ok else 'FAILED' if m.sha_ok is False else '-'}: {m.sha}")
        for p in m.photos:
            top = ", ".join(f"{e['label']} {e['prob']:.2f}" for e in p.top5)
            lines.append(f"  {'pass' if p.passed else 'FAIL'} {p.file} ({p.shows}; accepted: "
                         f"{' / '.join(p.accepted)}): {top}")
            if p.input.kind != "ok":
                lines.append(f"       input: {p.input.text()}")
        lines.append(f"  diagnosis: {m.diagnosis}")
    lines.append(result.health_line())
    return "\n".join(lines)
