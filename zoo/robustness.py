"""Which depth still sees the cat through fog, noise and JPEG: ImageNet-C corruptions, live and measured.

The corruptions are ``corrupt-tta``'s (a maintained modernisation of Hendrycks and
Dietterich's ImageNet-C code: OpenCV/scikit-image, no ImageMagick): the 15 benchmark
corruptions and the 4 extra ones, severities 1-5. As ImageNet-C does, each is applied to
the uint8 crop the model sees (its preprocessing's resize + centre crop), rounded down to
uint8 as ImageNet-C stores its images, then normalised.

Randomness: ``corrupt-tta`` draws from NumPy's global generator (and, for impulse noise,
from an unseeded scikit-image generator). Here every call runs with its own
``RandomState`` seeded from (base seed, image name, corruption, severity)
(``sample_seed``), in a thread-local stand-in for the library's ``np``, so crops can be
made in a thread pool and a run reproduces exactly.

The work goes through the batch executor seam (``zoo.batch``): ``RobustnessPlan`` turns an
image into its clean crop plus one ``Sample`` per (corruption, severity); the executor
batches the samples per depth, so one image's 95 corrupted crops are a few batched forwards
per model. ``sweep`` (one image) and ``stream`` (a folder) consume the executor's ``Scored``
results and build ``Sweep`` / ``FolderSummary``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from .errors import ZooError
from .registry import Preprocessing

if TYPE_CHECKING:  # torch and the batch package stay out of import time
    from .batch import Item

ProgressFn = Callable[[float | None, str], None]

SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEED = 0
CLEAN = "clean"  # the corruption name of the clean crop (severity 0) in sample keys and records


class UnknownCorruptionError(ZooError):
    """A corruption name or severity that is not one of the library's."""


@dataclass(frozen=True)
class Corruption:
    """One corruption, as data."""

    name: str  # corrupt_tta's function name, e.g. "gaussian_noise"
    label: str  # as shown: "Gaussian noise"
    family: str  # "noise", "blur", "weather", "digital" (the paper's groups), or "extra"
    seeded: bool  # draws random numbers: the seed matters
    seconds: float  # measured seconds per 224 x 224 crop, mean over severities 1-5 (benchmarks/robustness.py)
    # AlexNet's top-1 error on ImageNet-C, averaged over severities 1-5: the paper's normaliser
    # (None for the 4 extra corruptions, which are not in the mCE).
    alexnet_error: float | None = None

    @property
    def imagenet_c(self) -> bool:
        """One of the 15 benchmark corruptions (part of the paper's mCE)."""
        return self.alexnet_error is not None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "family": self.family, "seeded": self.seeded,
                "seconds": self.seconds, "imagenet_c": self.imagenet_c, "alexnet_error": self.alexnet_error}


# AlexNet's errors: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common
# Corruptions and Perturbations", ICLR 2019 (arXiv:1903.12261), the AlexNet row behind its
# Table 1 / Figure 3 normalisation (mean top-1 error over severities 1-5, as fractions); the
# same figures are used by the published mCE evaluations (e.g. open-mmlab's mCE metric,
# ``get_ce_alexnet``). Seconds: the median per crop measured by benchmarks/robustness.py (mean over
# severities 1-5) on this project's 2-core CPU while shared by other work (load ~10): an upper
# figure for a busy server; a quiet core makes them in about half the time (glass blur 0.14 s).
CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("gaussian_noise", "Gaussian noise", "noise", True, 0.01, 0.886428),
    Corruption("shot_noise", "Shot noise", "noise", True, 0.04, 0.894468),
    Corruption("impulse_noise", "Impulse noise", "noise", True, 0.013, 0.922640),
    Corruption("defocus_blur", "Defocus blur", "blur", False, 0.007, 0.819880),
    Corruption("glass_blur", "Glass blur", "blur", True, 0.33, 0.826268),
    Corruption("motion_blur", "Motion blur", "blur", True, 0.008, 0.785948),
    Corruption("zoom_blur", "Zoom blur", "blur", False, 0.2, 0.798360),
    Corruption("snow", "Snow", "weather", True, 0.03, 0.866816),
    Corruption("frost", "Frost", "weather", True, 0.017, 0.826572),
    Corruption("fog", "Fog", "weather", True, 0.007, 0.819324),
    Corruption("brightness", "Brightness", "digital", False, 0.0013, 0.564592),
    Corruption("contrast", "Contrast", "digital", False, 0.0043, 0.853204),
    Corruption("elastic_transform", "Elastic", "digital", True, 0.071, 0.646056),
    Corruption("pixelate", "Pixelate", "digital", False, 0.0023, 0.717840),
    Corruption("jpeg_compression", "JPEG", "digital", False, 0.0022, 0.606500),
    Corruption("speckle_noise", "Speckle noise", "extra", True, 0.008),
    Corruption("gaussian_blur", "Gaussian blur", "extra", False, 0.0072),
    Corruption("spatter", "Spatter", "extra", True, 0.0068),
    Corruption("saturate", "Saturate", "extra", False, 0.001),
)
BY_NAME = {c.name: c for c in CORRUPTIONS}


def _key(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


_ALIASES = {**{_key(c.name): c for c in CORRUPTIONS}, **{_key(c.label): c for c in CORRUPTIONS},
            "jpeg": BY_NAME["jpeg_compression"], "elastic": BY_NAME["elastic_transform"]}


def get_corruption(name: str) -> Corruption:
    """A corruption by its name ("fog", "jpeg_compression") or label ("JPEG"), case-insensitive."""
    found = _ALIASES.get(_key(str(name))) if isinstance(name, str) else None
    if found is None:
        raise UnknownCorruptionError(f"Unknown corruption {name!r}; choose from "
                                     f"{', '.join(c.name for c in CORRUPTIONS)}.")
    return found


def corruption_names(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The corruptions a run uses, checked, in table order, once each (None or empty: all 19)."""
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split()]
    if not names:
        return tuple(c.name for c in CORRUPTIONS)
    chosen = {get_corruption(n).name for n in names}
    return tuple(c.name for c in CORRUPTIONS if c.name in chosen)


def check_severity(severity: Any, allow_clean: bool = True) -> int:
    """One severity as an int: 1-5, or 0 (the clean crop) where ``allow_clean``."""
    lo = 0 if allow_clean else 1
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer, float, str)):
        raise UnknownCorruptionError(f"A severity is a whole number from {lo} to 5, not {severity!r}.")
    try:
        value = float(severity)
    except ValueError:
        raise UnknownCorruptionError(f"A severity is a whole number from {lo} to 5, not {severity!r}.") from None
    if not value.is_integer() or not lo <= value <= 5:
        raise UnknownCorruptionError(f"A severity is a whole number from {lo} to 5, not {severity!r}.")
    return int(value)


def severity_list(severities: Sequence[int] | None = None) -> tuple[int, ...]:
    """Severities 1-5 of a run, checked, sorted, once each (None or empty: all five)."""
    if not severities:
        return SEVERITIES
    return tuple(sorted({check_severity(s, allow_clean=False) for s in severities}))


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 63:
        if isinstance(seed, float) and seed.is_integer() and 0 <= seed < 2 ** 63:
            return int(seed)
        raise ZooError(f"The seed must be a whole number from 0 to 2**63-1, not {seed!r}.")
    return int(seed)


def sample_seed(base_seed: int, image: str, corruption: str, severity: int) -> int:
    """The seed of one corrupted crop: a hash of (base seed, image name, corruption, severity), 0..2**32-1."""
    text = f"{int(base_seed)}\x1f{image}\x1f{corruption}\x1f{int(severity)}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "little")


# --- corrupt-tta, seeded per call ---------------------------------------------------------------

_rng = threading.local()  # the RandomState of the call running in this thread, if any
_setup_lock = threading.Lock()


class _SeededNumpy:
    """Stands in for ``np`` inside ``corrupt_tta.corruptions``: ``np.random`` is the current
    thread's seeded ``RandomState`` during ``corrupt_array`` (NumPy's global one otherwise,
    as before); everything else is NumPy itself."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @property
    def random(self) -> Any:
        state = getattr(_rng, "state", None)
        return np.random if state is None else state


def _random_noise(image: Any, mode: str = "gaussian", rng: Any = None, clip: bool = True, **kwargs: Any) -> Any:
    """scikit-image's ``random_noise`` (impulse noise), seeded from the same generator: the
    library calls it without ``rng``, which would draw fresh entropy every time."""
    from skimage.util import random_noise

    if rng is None:
        rng = int(_SeededNumpy().random.randint(0, 2 ** 31 - 1))
    return random_noise(image, mode=mode, rng=rng, clip=clip, **kwargs)


def library() -> Any:
    """``corrupt_tta`` with its corruptions seeded per call (imported on first use)."""
    import corrupt_tta
    import corrupt_tta.corruptions as module

    if not isinstance(module.np, _SeededNumpy):
        with _setup_lock:
            if not isinstance(module.np, _SeededNumpy):
                module.random_noise = _random_noise
                module.np = _SeededNumpy()
    return corrupt_tta


def corrupt_array(crop: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """``corrupt_tta``'s corruption of a uint8 (H, W, 3) crop with its own seeded generator,
    rounded down to uint8 as ImageNet-C stores its images. Severity 0: the crop itself."""
    c = get_corruption(corruption)
    severity = check_severity(severity)
    crop = np.asarray(crop)
    if severity == 0:
        return crop.copy()
    lib = library()
    _rng.state = np.random.RandomState(int(seed) % 2 ** 32)
    try:
        out = lib.corrupt(crop, severity=severity, corruption_name=c.name)
    finally:
        _rng.state = None
    return np.uint8(np.clip(out, 0, 255))


def corrupt_crop(crop: Image.Image, corruption: str, severity: int, seed: int) -> Image.Image:
    """``corrupt_array`` on a PIL crop (what the model sees, before normalisation)."""
    return Image.fromarray(corrupt_array(np.asarray(crop.convert("RGB")), corruption, severity, seed))


def corruption_seconds(names: Sequence[str], severities: Sequence[int], crop: int = 224) -> float:
    """Measured seconds to make one crop of each (corruption, severity), scaled by the crop's pixels."""
    per_crop = sum(get_corruption(n).seconds for n in names) * len(list(severities))
    return per_crop * (crop / 224) ** 2


# --- the plan: what the executor makes of each image ------------------------------------------

def _pre_tag(pre: Preprocessing) -> str:
    return f"{pre.interpolation}{pre.resize}-{pre.crop}"


def crop_path(save_dir: Path, name: str, corruption: str, severity: int, tag: str = "") -> Path:
    """Where ``--save-dir`` puts one crop: ``DIR/<image name>/<corruption>-<severity>.png`` (clean:
    ``clean-0.png``); ``tag`` names the preprocessing when the run's models use several."""
    parts = [p for p in Path(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    folder = Path(save_dir).joinpath(*parts) if parts else Path(save_dir) / "image"
    return folder / f"{corruption}-{int(severity)}{'-' + tag if tag else ''}.png"


@dataclass
class RobustnessPlan:
    """The executor's ``Plan`` (``zoo.batch.Plan``) for robustness: per image, the clean crop
    and one ``Sample`` per (corruption, severity), each with a tensor per distinct
    preprocessing. Picklable (a Ray executor makes samples in CPU tasks).

    ``load`` decodes the image once and crops it once per preprocessing; ``sample`` corrupts
    one crop (in the executor's pool, while the forwards of earlier samples run). Sample keys:
    ``(name, "clean", 0)`` and ``(name, corruption, severity)``, corruption by corruption;
    ``meta`` holds ``corruption``, ``severity``, ``seed`` and ``corrupt_s`` (seconds spent
    corrupting). ``image`` (optional): an already decoded image used instead of the item's
    bytes (the one-image sweep). ``save_dir``: each crop a model saw, as a lossless PNG
    (``crop_path``).
    """

    pres: tuple[Preprocessing, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...] = SEVERITIES
    seed: int = DEFAULT_SEED
    targets: dict[int, int | None] = field(default_factory=dict)  # item index -> label class
    image: Image.Image | None = None
    save_dir: Path | None = None
    noun: str = "crops"

    def keys(self, index: int, item: Item) -> list[tuple]:
        return [(item.name, CLEAN, 0)] + [(item.name, c, s) for c in self.corruptions for s in self.severities]

    def load(self, index: int, item: Item, data: Path | bytes) -> dict[Preprocessing, np.ndarray]:
        from .images import load_image, model_crop

        image = self.image if self.image is not None else load_image(data, name=item.name).image
        return {pre: np.asarray(model_crop(image, pre)) for pre in self.pres}

    def sample(self, loaded: dict[Preprocessing, np.ndarray], index: int, key: tuple) -> Any:
        from .batch import Sample
        from .images import to_tensor

        name, corruption, severity = key
        seed = 0 if severity == 0 else sample_seed(self.seed, name, corruption, severity)
        tensors, spent = {}, 0.0
        for pre in self.pres:
            t0 = time.perf_counter()
            arr = loaded[pre] if severity == 0 else corrupt_array(loaded[pre], corruption, severity, seed)
            spent += time.perf_counter() - t0
            pil = Image.fromarray(arr)
            tensors[pre] = to_tensor(pil, pre)[0]
            if self.save_dir is not None:
                tag = "" if len(self.pres) == 1 else _pre_tag(pre)
                path = crop_path(self.save_dir, name, corruption, severity, tag)
                path.parent.mkdir(parents=True, exist_ok=True)
                pil.save(path, format="PNG")
        return Sample(index, tuple(key), tensors, self.targets.get(index),
                      {"corruption": corruption, "severity": severity, "seed": seed, "corrupt_s": spent,
                       "pres": len(self.pres)})

    def describe(self, sample: Any) -> str:
        c, s = sample.meta["corruption"], sample.meta["severity"]
        return "clean" if c == CLEAN else f"{_label(c)}, severity {s}"

    def journal_fields(self) -> dict[str, Any]:
        """What a resumed run (``--out FILE.jsonl --resume``) must share with the file's: the
        keys name corruption and severity, but the crops also depend on the seed."""
        return {"corruptions": list(self.corruptions), "severities": list(self.severities), "seed": self.seed}


# --- one image: the sweep ---------------------------------------------------------------------

def _label(corruption: str) -> str:
    return get_corruption(corruption).label if corruption != CLEAN else "clean"


@dataclass(frozen=True)
class Verdict:
    """The sweep in one sentence, as data: the most and the least robust depth on one corruption.

    "ResNet-152 kept tabby through fog 4; ResNet-18 lost it at fog 2": ``best`` kept its clean
    top-1 (``best_label``) through severity ``best_kept_through`` (the highest severity before its
    top-1 first changes; the highest tested when it never does, then ``best_lost_at`` is None);
    ``worst`` lost its own at ``worst_lost_at``. ``same``: every depth broke at the same severity
    (or none broke), so depth made no difference here.
    """

    corruption: str
    corruption_label: str
    best: str
    best_label: str
    best_kept_through: int
    best_lost_at: int | None
    worst: str
    worst_label: str
    worst_kept_through: int
    worst_lost_at: int | None
    same: bool

    def sentence(self) -> str:
        """Plain English (the CLI's wording; a front end may format the fields its own way)."""
        c = self.corruption_label.lower() if self.corruption_label != "JPEG" else "JPEG"

        def part(model: str, label: str, kept: int, lost: int | None, again: bool = False) -> str:
            what = "it" if again else label
            if lost is None:
                return f"{model} kept {what} through {c} {kept}"
            if kept == 0:
                return f"{model} lost {what} at {c} {lost}"
            return f"{model} kept {what} through {c} {kept} and lost it at {lost}"

        if self.same:
            who = "every depth"
            if self.best_lost_at is None:
                return f"Every depth kept its answer through {c} {self.best_kept_through}."
            return f"Every depth lost its answer at {c} {self.best_lost_at}: {who} broke at the same severity."
        same_label = self.best_label == self.worst_label
        best = part(self.best, self.best_label, self.best_kept_through, self.best_lost_at)
        if self.worst_lost_at is not None:
            worst = f"{self.worst} lost {'it' if same_label else self.worst_label} at {c} {self.worst_lost_at}"
        else:
            worst = part(self.worst, self.worst_label, self.worst_kept_through, None, same_label)
        return f"{best}; {worst}."

    def to_json(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__}, "sentence": self.sentence()}


def _consensus(top1: np.ndarray, top1_p: np.ndarray) -> int:
    """The class most depths rank first; ties go to the higher mean probability of their top-1."""
    classes = [int(c) for c in top1]
    votes = {c: classes.count(c) for c in classes}
    return max(votes, key=lambda c: (votes[c], float(np.mean([p for k, p in zip(classes, top1_p) if k == c]))))


@dataclass
class Sweep:
    """Every depth x corruption x severity on one image. Partial while the sweep runs
    (``done`` < ``total``): cells not yet scored are NaN (``target_p``, ``top1_p``) and -1 (``top1``).

    Arrays are indexed [model, corruption, severity index] in the order of ``models``,
    ``corruptions`` and ``severities``. ``target`` is the class whose probability the heatmap
    and the line chart show: given, or the class most depths pick on the clean crop.
    """

    models: tuple[str, ...]
    depths: tuple[int, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    labels: tuple[str, ...]
    seed: int
    target: int
    chosen: str  # "given" or "consensus"
    clean_top1: np.ndarray  # (M,) int: each depth's top-1 on the clean crop
    clean_top1_p: np.ndarray  # (M,) its probability
    clean_target_p: np.ndarray  # (M,) the target's probability on the clean crop
    top1: np.ndarray  # (M, C, S) int, -1 where not done
    top1_p: np.ndarray  # (M, C, S) float, NaN where not done
    target_p: np.ndarray  # (M, C, S) float, NaN where not done
    done: int = 0  # corrupted crops scored by every model
    total: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    # Measured on this sweep, for the estimates: each model's batched forward seconds per crop,
    # and the seconds spent corrupting over what the table (``Corruption.seconds``) predicts.
    forward_s: np.ndarray | None = None  # (M,)
    corrupt_ratio: float | None = None

    @property
    def partial(self) -> bool:
        return self.done < self.total

    @property
    def target_label(self) -> str:
        return self.labels[self.target]

    def _m(self, model: int | str) -> int:
        return self.models.index(model) if isinstance(model, str) else int(model)

    def _c(self, corruption: int | str) -> int:
        return self.corruptions.index(get_corruption(corruption).name) if isinstance(corruption, str) \
            else int(corruption)

    def breaking_point(self, model: int | str, corruption: int | str) -> int | None:
        """The lowest severity at which this depth's top-1 differs from its clean top-1 (None: it
        never changes among the severities scored so far)."""
        m, c = self._m(model), self._c(corruption)
        clean = int(self.clean_top1[m])
        if clean < 0:
            return None
        for si, s in enumerate(self.severities):
            got = int(self.top1[m, c, si])
            if got >= 0 and got != clean:
                return s
        return None

    def breaking_points(self) -> np.ndarray:
        """(M, C) int: ``breaking_point`` of every depth and corruption, 0 where it never breaks."""
        out = np.zeros((len(self.models), len(self.corruptions)), dtype=np.int64)
        for m in range(len(self.models)):
            for c in range(len(self.corruptions)):
                out[m, c] = self.breaking_point(m, c) or 0
        return out

    def kept_through(self, model: int | str, corruption: int | str) -> int:
        """The highest severity this depth reached with its clean top-1 intact (0: lost at the first tested)."""
        m, c = self._m(model), self._c(corruption)
        bp = self.breaking_point(m, c)
        scored = [s for si, s in enumerate(self.severities) if self.top1[m, c, si] >= 0]
        if bp is None:
            return max(scored, default=0)
        return max((s for s in scored if s < bp), default=0)

    def verdict(self, corruption: str | None = None) -> Verdict | None:
        """The sentence's data for ``corruption`` (default: the one where the depths' breaking
        points differ most); None before any corrupted crop of it is scored."""
        if int(self.clean_top1.min(initial=0)) < 0 or not len(self.models):
            return None

        def complete(c: int) -> bool:
            return bool((self.top1[:, c, :] >= 0).all())

        if corruption is None:
            ready = [c for c in range(len(self.corruptions)) if complete(c)]
            if not ready:
                return None
            spread = {c: (max(k := [self.kept_through(m, c) for m in range(len(self.models))]) - min(k))
                      for c in ready}
            c = max(ready, key=lambda i: (spread[i], -i))
        else:
            c = self._c(corruption)
            if not (self.top1[:, c, :] >= 0).any():
                return None
        kept = [self.kept_through(m, c) for m in range(len(self.models))]
        lost = [self.breaking_point(m, c) for m in range(len(self.models))]
        # The most robust: kept longest (ties: the deeper); the least: kept shortest (ties: the shallower).
        order = sorted(range(len(self.models)), key=lambda m: (kept[m], lost[m] is None, self.depths[m]))
        worst, best = order[0], order[-1]
        name = self.corruptions[c]
        return Verdict(name, _label(name), self.models[best], self.labels[int(self.clean_top1[best])], kept[best],
                       lost[best], self.models[worst], self.labels[int(self.clean_top1[worst])], kept[worst],
                       lost[worst], kept[best] == kept[worst] and (lost[best] is None) == (lost[worst] is None))

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if not math.isfinite(float(x)) else round(float(x), 6)

        bps = self.breaking_points()
        verdict = self.verdict()
        return {
            "models": list(self.models), "depths": list(self.depths),
            "corruptions": [{"name": c, "label": _label(c)} for c in self.corruptions],
            "severities": list(self.severities), "seed": self.seed,
            "target": {"index": self.target, "label": self.target_label, "chosen": self.chosen},
            "clean": {m: {"top1": int(self.clean_top1[i]),
                          "top1_label": self.labels[int(self.clean_top1[i])] if self.clean_top1[i] >= 0 else None,
                          "top1_prob": num(self.clean_top1_p[i]), "target_prob": num(self.clean_target_p[i])}
                      for i, m in enumerate(self.models)},
            "target_prob": {m: {c: [num(v) for v in self.target_p[i, j]] for j, c in enumerate(self.corruptions)}
                            for i, m in enumerate(self.models)},
            "top1": {m: {c: [int(v) if v >= 0 else None for v in self.top1[i, j]]
                         for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "breaking_point": {m: {c: (int(bps[i, j]) or None) for j, c in enumerate(self.corruptions)}
                               for i, m in enumerate(self.models)},
            "verdict": verdict.to_json() if verdict else None,
            "done": self.done, "total": self.total, "partial": self.partial,
            "seconds": round(self.seconds, 3), "device": self.device, "precision": self.precision,
        }


@dataclass
class SweepProgress:
    """Yielded between batches: how far the sweep is and which corruption is running."""

    fraction: float
    message: str
    corruption: str | None = None


# --- one image, one corruption: live ------------------------------------------------------------

@dataclass
class Live:
    """Every selected depth on one corrupted crop (and, when asked, each depth's map of it).

    ``results[i]`` is a ``zoo.features.classify.Result`` (classification + explanation) when a map method
    was given, else a ``zoo.inference.Classification``. ``crop`` is the corrupted crop the
    first model saw; ``clean`` the clean one.
    """

    corruption: str
    severity: int
    seed: int
    crop: Image.Image
    clean: Image.Image
    target: int
    target_label: str
    results: list[Any]
    method: str | None = None

    def classifications(self) -> list[Any]:
        return [getattr(r, "run", r) for r in self.results]

    def to_json(self) -> dict[str, Any]:
        runs = self.classifications()
        return {"corruption": self.corruption, "label": _label(self.corruption), "severity": self.severity,
                "seed": self.seed, "method": self.method,
                "target": {"index": self.target, "label": self.target_label},
                "models": [{**(r.to_json() if hasattr(r, "explanation") else run.to_json()),
                            "target_prob": float(run.probs[self.target])}
                           for r, run in zip(self.results, runs)]}


# --- a folder ----------------------------------------------------------------------------------

@dataclass
class SampleResult:
    """One image's clean or corrupted crop through every model (one executor ``Scored``)."""

    index: int
    name: str
    corruption: str  # CLEAN for the clean crop
    severity: int  # 0 for the clean crop
    seed: int
    label: int | None
    top_idx: np.ndarray  # (M, k) int32, models in the run's order
    top_p: np.ndarray  # (M, k) float32

    def correct(self, m: int, k: int = 1) -> bool | None:
        return None if self.label is None else bool(self.label in self.top_idx[m, :k])

    def records(self, models: Sequence[str], labels: tuple[str, ...], top_k: int = 5) -> Iterator[dict[str, Any]]:
        """The JSON lines: one object per model, with the top-k and, when labelled, correct/correct_top5."""
        for m, name in enumerate(models):
            yield {"file": self.name, "model": name, "corruption": self.corruption, "severity": self.severity,
                   "seed": self.seed, "label": labels[self.label] if self.label is not None else None,
                   "label_index": self.label, "correct": self.correct(m, 1), "correct_top5": self.correct(m, 5),
                   "predictions": [{"index": int(i), "label": labels[int(i)], "prob": round(float(p), 6)}
                                   for i, p in zip(self.top_idx[m, :top_k], self.top_p[m, :top_k])]}


@dataclass
class FolderSummary:
    """A folder's accuracy under each corruption, its corruption errors, and mCE per model.

    ``accuracy[m, c, s]``: top-1 accuracy of model m on corruption c at severity s (labelled images
    only). CE (Hendrycks & Dietterich): CE[m, c] = sum_s error[m, c, s] / sum_s error[ref, c, s],
    ``reference`` being the shallowest model of the run; mCE[m] = mean_c CE[m, c] over the
    corruptions of the run. ``ce_alexnet``/``mce_alexnet``: the same normalised by AlexNet's
    published errors (15 benchmark corruptions only; None unless the labels are ImageNet classes
    and all five severities ran).
    """

    models: tuple[str, ...]
    depths: tuple[int, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    seed: int
    images: int  # images scored
    labelled: int
    clean_accuracy: np.ndarray  # (M,)
    accuracy: np.ndarray  # (M, C, S)
    top5_accuracy: np.ndarray  # (M, C, S)
    reference: str
    ce: np.ndarray  # (M, C), NaN where the reference made no error
    mce: np.ndarray  # (M,)
    ce_alexnet: np.ndarray | None = None  # (M, C'), C' = the run's benchmark corruptions
    mce_alexnet: np.ndarray | None = None  # (M,)
    alexnet_corruptions: tuple[str, ...] = ()
    skipped: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    partial: bool = False
    forward_s: np.ndarray | None = None  # (M,) batched forward seconds per crop, measured (as Sweep's)
    corrupt_ratio: float | None = None  # seconds spent corrupting / the table's prediction
    # (M, C, S): the share of images whose top-1 under the corruption differs from their clean
    # top-1 (labels not needed; the folder version of the sweep's breaking points).
    changed: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        def num(x: Any) -> float | None:
            return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)

        out: dict[str, Any] = {
            "models": list(self.models), "depths": list(self.depths),
            "corruptions": list(self.corruptions), "severities": list(self.severities), "seed": self.seed,
            "images": self.images, "labelled": self.labelled, "reference": self.reference,
            "clean_accuracy": {m: num(self.clean_accuracy[i]) for i, m in enumerate(self.models)},
            "accuracy": {m: {c: {str(s): num(self.accuracy[i, j, k]) for k, s in enumerate(self.severities)}
                             for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "top5_accuracy": {m: {c: {str(s): num(self.top5_accuracy[i, j, k])
                                      for k, s in enumerate(self.severities)}
                                  for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "ce": {m: {c: num(self.ce[i, j]) for j, c in enumerate(self.corruptions)}
                   for i, m in enumerate(self.models)},
            "mce": {m: num(self.mce[i]) for i, m in enumerate(self.models)},
            "top1_changed": None if self.changed is None else {
                m: {c: {str(s): num(self.changed[i, j, k]) for k, s in enumerate(self.severities)}
                    for j, c in enumerate(self.corruptions)} for i, m in enumerate(self.models)},
            "ce_alexnet": None, "mce_alexnet": None,
            "skipped": [{"file": s.name, "reason": s.reason} for s in self.skipped],
            "notes": self.notes, "seconds": round(self.seconds, 3), "device": self.device,
            "precision": self.precision, "partial": self.partial,
        }
        if self.ce_alexnet is not None and self.mce_alexnet is not None:
            out["ce_alexnet"] = {m: {c: num(self.ce_alexnet[i, j]) for j, c in enumerate(self.alexnet_corruptions)}
                                 for i, m in enumerate(self.models)}
            out["mce_alexnet"] = {m: num(self.mce_alexnet[i]) for i, m in enumerate(self.models)}
        return out


class _FolderTally:
    """Running counts of a folder run: correct top-1/top-5 per (model, corruption, severity)."""

    def __init__(self, m: int, c: int, s: int):
        self.correct = np.zeros((m, c, s), dtype=np.int64)
        self.correct5 = np.zeros((m, c, s), dtype=np.int64)
        self.count = np.zeros((c, s), dtype=np.int64)
        self.clean_correct = np.zeros(m, dtype=np.int64)
        self.clean_count = 0
        self.names: set[int] = set()
        self.labelled: set[int] = set()
        self.changed = np.zeros((m, c, s), dtype=np.int64)
        self.changed_n = np.zeros((c, s), dtype=np.int64)
        self.clean_top1: dict[int, np.ndarray] = {}
        self.waiting: dict[int, list[tuple[int, int, np.ndarray]]] = {}  # corrupted crops scored before the clean one

    def add(self, r: SampleResult, corruptions: Sequence[str], severities: Sequence[int]) -> None:
        self.names.add(r.index)
        top1 = r.top_idx[:, 0]
        if r.corruption == CLEAN:
            self.clean_top1[r.index] = top1
            for c, s, t in self.waiting.pop(r.index, []):
                self._changed(c, s, t, top1)
        else:
            c, s = corruptions.index(r.corruption), severities.index(r.severity)
            if r.index in self.clean_top1:
                self._changed(c, s, top1, self.clean_top1[r.index])
            else:
                self.waiting.setdefault(r.index, []).append((c, s, top1))
        if r.label is None:
            return
        self.labelled.add(r.index)
        hit1 = (r.top_idx[:, :1] == r.label).any(axis=1)
        hit5 = (r.top_idx[:, :5] == r.label).any(axis=1)
        if r.corruption == CLEAN:
            self.clean_correct += hit1
            self.clean_count += 1
            return
        c, s = corruptions.index(r.corruption), severities.index(r.severity)
        self.correct[:, c, s] += hit1
        self.correct5[:, c, s] += hit5
        self.count[c, s] += 1

    def _changed(self, c: int, s: int, top1: np.ndarray, clean: np.ndarray) -> None:
        self.changed[:, c, s] += top1 != clean
        self.changed_n[c, s] += 1


def _summary(tally: _FolderTally, models: Sequence[str], depths: Sequence[int], corruptions: Sequence[str],
             severities: Sequence[int], seed: int, imagenet: bool) -> FolderSummary:
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = tally.correct / tally.count[None]
        acc5 = tally.correct5 / tally.count[None]
        clean = tally.clean_correct / tally.clean_count if tally.clean_count else np.full(len(models), np.nan)
        err = 1.0 - acc
        ref = min(range(len(models)), key=lambda m: depths[m]) if models else 0
        err_sum = err.sum(axis=2)  # (M, C)
        ce = err_sum / err_sum[ref][None]
        ce[:, err_sum[ref] == 0] = np.nan
        mce = np.nanmean(ce, axis=1) if ce.size and np.isfinite(ce).any() else np.full(len(models), np.nan)
        ce_a = mce_a = None
        bench = tuple(c for c in corruptions if get_corruption(c).imagenet_c)
        if imagenet and bench and tuple(severities) == SEVERITIES:
            idx = [corruptions.index(c) for c in bench]
            alex = np.array([get_corruption(c).alexnet_error for c in bench])
            ce_a = err[:, idx].mean(axis=2) / alex[None]
            mce_a = ce_a.mean(axis=1)
    notes = []
    if imagenet and bench and tuple(severities) != SEVERITIES:
        notes.append("CE normalised by AlexNet needs all five severities (its published errors are their mean).")
    with np.errstate(invalid="ignore", divide="ignore"):
        changed = tally.changed / tally.changed_n[None]
    return FolderSummary(tuple(models), tuple(depths), tuple(corruptions), tuple(severities), seed,
                         len(tally.names), len(tally.labelled), clean, acc, acc5, models[ref] if models else "",
                         ce, mce, ce_a, mce_a, bench if ce_a is not None else (), notes=notes, changed=changed)


def summarize(results: Sequence[SampleResult], models: Sequence[str], depths: Sequence[int],
              corruptions: Sequence[str], severities: Sequence[int], seed: int, imagenet: bool) -> FolderSummary:
    """The ``FolderSummary`` of scored samples (also used to check a run from its JSON lines)."""
    tally = _FolderTally(len(models), len(corruptions), len(severities))
    for r in results:
        tally.add(r, corruptions, severities)
    return _summary(tally, models, depths, corruptions, severities, seed, imagenet)


# --- the runs -----------------------------------------------------------------------------------

class _Meter:
    """What a run measured of itself, for the estimates: forward seconds per crop and model,
    and corruption seconds against the table."""

    def __init__(self, m: int):
        self.forward = np.zeros(m)
        self.crops = 0
        self.corrupt = self.table = 0.0

    def add(self, scored: Any) -> None:
        self.forward += scored.seconds
        self.crops += 1
        meta = scored.sample.meta
        if meta.get("severity"):
            self.corrupt += meta.get("corrupt_s", 0.0)
            self.table += get_corruption(meta["corruption"]).seconds * meta.get("pres", 1)

    def forward_s(self) -> np.ndarray | None:
        return self.forward / self.crops if self.crops else None

    def ratio(self) -> float | None:
        return self.corrupt / self.table if self.table > 0 and self.corrupt > 0 else None


def _dense(top_idx: np.ndarray, top_p: np.ndarray, n: int) -> np.ndarray:
    """(M, n) probabilities from a full top-n ranking."""
    out = np.zeros((top_idx.shape[0], n), dtype=np.float32)
    np.put_along_axis(out, top_idx.astype(np.int64), top_p, axis=1)
    return out


def sweep_stream(executor: Any, image: Image.Image, *, name: str = "image", corruptions: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, seed: int = DEFAULT_SEED, target: int | str | None = None,
                 batch_size: int | None = None, progress: ProgressFn | None = None,
                 ) -> Iterator[SweepProgress | Sweep]:
    """Every corruption x severity of one image through ``executor``'s models (a
    ``zoo.batch.LocalExecutor``): yields ``SweepProgress`` before each forward, a partial
    ``Sweep`` after each batch (as the next one starts), then the finished ``Sweep``. ``zoo.cancel.check()`` runs between batches (and the
    executor checks before each forward), so a Stop ends it there."""
    from .batch import Failed, Item, Progress, Scored
    from .cancel import check
    from .inference import resolve_target

    names = corruption_names(corruptions)
    sevs = severity_list(severities)
    seed = check_seed(seed)
    labels = tuple(executor.labels)
    given = None if target is None or (isinstance(target, str) and not target.strip()) \
        else resolve_target(labels, target, 0)
    models, depths = tuple(executor.names), tuple(executor.depths)
    M, C, S = len(models), len(names), len(sevs)
    plan = RobustnessPlan(tuple(dict.fromkeys(executor.preprocessings)), names, sevs, seed, image=image.convert("RGB"))
    # The plan holds the decoded image and never reads the item's bytes; the executor only
    # checks that its source exists, so any existing file serves.
    item = Item(name, Path(__file__))
    probs: dict[tuple[str, int], np.ndarray] = {}
    meter = _Meter(M)
    total = C * S
    t0 = time.perf_counter()

    def state() -> Sweep:
        clean = probs.get((CLEAN, 0))
        ct1 = clean.argmax(axis=1) if clean is not None else np.full(M, -1)
        ct1p = clean.max(axis=1) if clean is not None else np.full(M, np.nan)
        tgt = given if given is not None else (_consensus(ct1, ct1p) if clean is not None else 0)
        top1 = np.full((M, C, S), -1, dtype=np.int64)
        top1_p = np.full((M, C, S), np.nan)
        target_p = np.full((M, C, S), np.nan)
        done = 0
        for (c, s), p in probs.items():
            if c == CLEAN:
                continue
            i, j = names.index(c), sevs.index(s)
            top1[:, i, j] = p.argmax(axis=1)
            top1_p[:, i, j] = p.max(axis=1)
            target_p[:, i, j] = p[:, tgt]
            done += 1
        return Sweep(models, depths, names, sevs, labels, seed, tgt, "given" if given is not None else "consensus",
                     ct1, ct1p, clean[:, tgt] if clean is not None else np.full(M, np.nan), top1, top1_p, target_p,
                     done, total, time.perf_counter() - t0, executor.device, executor.precision,
                     meter.forward_s(), meter.ratio())

    running: str | None = CLEAN
    fresh = False  # scored crops not yet shown in a partial Sweep
    for event in executor.run([(0, item)], plan, keep_k=len(labels),
                              batch_size=batch_size or executor.default_batch_size()):
        if isinstance(event, Progress):  # before a forward; its message names the crops in the batch
            if fresh:  # the previous batch is scored: show it before the next one runs
                fresh = False
                yield state()
            if progress:
                progress(event.fraction, event.message)
            yield SweepProgress(event.fraction, event.message, running)
            continue
        if isinstance(event, Failed):
            raise ZooError(f"{name}: {event.reason}")
        assert isinstance(event, Scored)
        c, s = event.sample.meta["corruption"], event.sample.meta["severity"]
        probs[(c, s)] = _dense(event.top_idx, event.top_p, len(labels))
        meter.add(event)
        running = next((x for x in names if any((x, v) not in probs for v in sevs)), None)
        fresh = True
        check()
    if progress:
        progress(1.0, "done")
    yield state()


def stream(executor: Any, inp: Any, *, corruptions: Sequence[str] | None = None,
           severities: Sequence[int] | None = None, seed: int = DEFAULT_SEED, save_dir: str | Path | None = None,
           top_k: int = 5, batch_size: int | None = None, progress: ProgressFn | None = None,
           partial_every_s: float | None = None,
           ) -> Iterator[SampleResult | Any]:
    """A folder (``zoo.batch.BatchInput``) through ``executor``: yields ``zoo.batch.Skipped`` files,
    one ``SampleResult`` per (image, corruption or clean, severity) as it is scored,
    ``zoo.batch.Progress``, partial ``FolderSummary``s with ``partial_every_s``, then the final
    ``FolderSummary``."""
    from .batch import Scored, resolve_labels
    from .batch.executor import no_images, reported
    from .cancel import check
    from .models import imagenet_labels

    names = corruption_names(corruptions)
    sevs = severity_list(severities)
    seed = check_seed(seed)
    labels = tuple(executor.labels)
    models, depths = tuple(executor.names), tuple(executor.depths)
    targets, label_notes = resolve_labels(inp.items, labels)
    keep = max(1, min(max(int(top_k), 5), len(labels)))
    plan = RobustnessPlan(tuple(dict.fromkeys(executor.preprocessings)), names, sevs, seed, dict(enumerate(targets)),
                          save_dir=Path(save_dir) if save_dir is not None else None)
    imagenet = labels == imagenet_labels()
    tally = _FolderTally(len(models), len(names), len(sevs))
    meter = _Meter(len(models))
    skipped = list(inp.skipped)
    yield from inp.skipped
    t0 = last = time.perf_counter()

    def summary(partial: bool) -> FolderSummary:
        s = _summary(tally, models, depths, names, sevs, seed, imagenet)
        s.skipped, s.notes = list(skipped), [*inp.notes, *label_notes, *s.notes]
        s.seconds, s.device, s.precision, s.partial = time.perf_counter() - t0, executor.device, \
            executor.precision, partial
        s.forward_s, s.corrupt_ratio = meter.forward_s(), meter.ratio()
        return s

    for event in reported(executor.run(list(enumerate(inp.items)), plan, keep_k=keep,
                                       batch_size=batch_size or executor.default_batch_size()), skipped, progress):
        if not isinstance(event, Scored):
            yield event
            continue
        meta = event.sample.meta
        r = SampleResult(event.sample.index, event.item.name, meta["corruption"], meta["severity"], meta["seed"],
                         event.sample.target, event.top_idx, event.top_p)
        tally.add(r, names, sevs)
        meter.add(event)
        yield r
        check()
        if partial_every_s is not None and time.perf_counter() - last >= partial_every_s:
            last = time.perf_counter()
            yield summary(True)
    if not tally.names:
        raise no_images(len(inp.items), skipped, "used")
    if progress:
        progress(1.0, f"done: {len(tally.names)} images")
    yield summary(False)
