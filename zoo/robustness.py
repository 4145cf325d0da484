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
per model. ``zoo.robustness_sweep`` (one image) and ``zoo.robustness_folder`` (a folder)
consume the executor's ``Scored`` results and build ``Sweep`` / ``FolderSummary``; this
module holds what both share: the corruptions, the plan and what a run measures of itself.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

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
        return "clean" if c == CLEAN else f"{corruption_label(c)}, severity {s}"

    def journal_fields(self) -> dict[str, Any]:
        """What a resumed run (``--out FILE.jsonl --resume``) must share with the file's: the
        keys name corruption and severity, but the crops also depend on the seed."""
        return {"corruptions": list(self.corruptions), "severities": list(self.severities), "seed": self.seed}


def corruption_label(corruption: str) -> str:
    """A corruption's label as shown ("Gaussian noise"); "clean" for the clean crop."""
    return get_corruption(corruption).label if corruption != CLEAN else "clean"


# --- what a run measures of itself -----------------------------------------------------------------------------------

class Meter:
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


def dense(top_idx: np.ndarray, top_p: np.ndarray, n: int) -> np.ndarray:
    """(M, n) probabilities from a full top-n ranking."""
    out = np.zeros((top_idx.shape[0], n), dtype=np.float32)
    np.put_along_axis(out, top_idx.astype(np.int64), top_p, axis=1)
    return out
