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
import io
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
# ``get_ce_alexnet``). Seconds: benchmarks/robustness.py on this project's 2-core CPU.
CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("gaussian_noise", "Gaussian noise", "noise", True, 0.006, 0.886428),
    Corruption("shot_noise", "Shot noise", "noise", True, 0.012, 0.894468),
    Corruption("impulse_noise", "Impulse noise", "noise", True, 0.004, 0.922640),
    Corruption("defocus_blur", "Defocus blur", "blur", False, 0.004, 0.819880),
    Corruption("glass_blur", "Glass blur", "blur", True, 0.5, 0.826268),
    Corruption("motion_blur", "Motion blur", "blur", True, 0.003, 0.785948),
    Corruption("zoom_blur", "Zoom blur", "blur", False, 0.2, 0.798360),
    Corruption("snow", "Snow", "weather", True, 0.02, 0.866816),
    Corruption("frost", "Frost", "weather", True, 0.01, 0.826572),
    Corruption("fog", "Fog", "weather", True, 0.01, 0.819324),
    Corruption("brightness", "Brightness", "digital", False, 0.002, 0.564592),
    Corruption("contrast", "Contrast", "digital", False, 0.002, 0.853204),
    Corruption("elastic_transform", "Elastic", "digital", True, 0.02, 0.646056),
    Corruption("pixelate", "Pixelate", "digital", False, 0.001, 0.717840),
    Corruption("jpeg_compression", "JPEG", "digital", False, 0.002, 0.606500),
    Corruption("speckle_noise", "Speckle noise", "extra", True, 0.006),
    Corruption("gaussian_blur", "Gaussian blur", "extra", False, 0.01),
    Corruption("spatter", "Spatter", "extra", True, 0.01),
    Corruption("saturate", "Saturate", "extra", False, 0.003),
)
BY_NAME = {c.name: c for c in CORRUPTIONS}


def get_corruption(name: str) -> Corruption:
    """A corruption by its name ("fog", "jpeg_compression") or label ("JPEG"), case-insensitive."""
    raise NotImplementedError


def corruption_names(names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The corruptions a run uses, checked, in table order, once each (None: all 19)."""
    raise NotImplementedError


def severity_list(severities: Sequence[int] | None = None) -> tuple[int, ...]:
    """Severities 1-5 of a run, checked, sorted, once each (None: all five)."""
    raise NotImplementedError


def sample_seed(base_seed: int, image: str, corruption: str, severity: int) -> int:
    """The seed of one corrupted crop: a hash of (base seed, image name, corruption, severity), 0..2**32-1."""
    raise NotImplementedError


def corrupt_array(crop: np.ndarray, corruption: str, severity: int, seed: int) -> np.ndarray:
    """``corrupt_tta``'s corruption of a uint8 (H, W, 3) crop with its own seeded generator,
    rounded down to uint8 as ImageNet-C stores its images. Severity 0: the crop itself."""
    raise NotImplementedError


def corrupt_crop(crop: Image.Image, corruption: str, severity: int, seed: int) -> Image.Image:
    """``corrupt_array`` on a PIL crop (what the model sees, before normalisation)."""
    raise NotImplementedError


def corruption_seconds(names: Sequence[str], severities: Sequence[int], crop: int = 224) -> float:
    """Measured seconds to make one crop of each (corruption, severity), scaled by the crop's pixels."""
    raise NotImplementedError


# --- the plan: what the executor makes of each image ------------------------------------------

@dataclass
class RobustnessPlan:
    """The executor's ``Plan`` for robustness: per image, the clean crop and one ``Sample`` per
    (corruption, severity) for each distinct preprocessing. Picklable.

    Sample keys: ``(name, "clean", 0)`` and ``(name, corruption, severity)``; ``meta`` holds
    ``corruption``, ``severity``, ``seed`` and ``corrupt_s`` (seconds spent corrupting).
    ``image`` (optional) is an already decoded image used instead of the item's bytes (the
    one-image sweep). ``save_dir`` writes each crop the first model saw as a lossless PNG.
    """

    pres: tuple[Preprocessing, ...]
    corruptions: tuple[str, ...]
    severities: tuple[int, ...] = SEVERITIES
    seed: int = DEFAULT_SEED
    targets: dict[int, int | None] = field(default_factory=dict)  # item index -> label class
    image: Image.Image | None = None
    save_dir: Path | None = None

    def keys(self, index: int, item: Item) -> list[tuple]:
        raise NotImplementedError

    def samples(self, index: int, item: Item, data: Path | bytes) -> list[Any]:
        raise NotImplementedError


def crop_path(save_dir: Path, name: str, corruption: str, severity: int) -> Path:
    """Where ``--save-dir`` puts one crop: ``DIR/<image name>/<corruption>-<severity>.png`` (clean: ``clean-0.png``)."""
    raise NotImplementedError


# --- one image: the sweep ---------------------------------------------------------------------

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
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


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

    @property
    def partial(self) -> bool:
        return self.done < self.total

    @property
    def target_label(self) -> str:
        return self.labels[self.target]

    def breaking_point(self, model: int | str, corruption: int | str) -> int | None:
        """The lowest severity at which this depth's top-1 differs from its clean top-1 (None: it
        never changes among the severities scored so far)."""
        raise NotImplementedError

    def breaking_points(self) -> np.ndarray:
        """(M, C) int: ``breaking_point`` of every depth and corruption, 0 where it never breaks."""
        raise NotImplementedError

    def verdict(self, corruption: str | None = None) -> Verdict | None:
        """The sentence's data for ``corruption`` (default: the one where the depths' breaking
        points differ most); None before any corrupted crop of it is scored."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


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

    ``results[i]`` is a ``zoo.service.Result`` (classification + explanation) when a map method
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

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


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
        raise NotImplementedError

    def records(self, models: Sequence[str], labels: tuple[str, ...], top_k: int = 5) -> Iterator[dict[str, Any]]:
        """The JSON lines: one object per model, with the top-k and, when labelled, correct/correct_top5."""
        raise NotImplementedError


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

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


def summarize(results: Sequence[SampleResult], models: Sequence[str], depths: Sequence[int],
              corruptions: Sequence[str], severities: Sequence[int], seed: int, imagenet: bool) -> FolderSummary:
    """The ``FolderSummary`` of scored samples (also used to check a run from its JSON lines)."""
    raise NotImplementedError


# --- the runs -----------------------------------------------------------------------------------

def sweep_stream(executor: Any, image: Image.Image, *, name: str = "image", corruptions: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, seed: int = DEFAULT_SEED, target: int | str | None = None,
                 batch_size: int | None = None, progress: ProgressFn | None = None,
                 ) -> Iterator[SweepProgress | Sweep]:
    """Every corruption x severity of one image through ``executor``'s models (a
    ``zoo.batch.LocalExecutor``): yields ``SweepProgress`` and a partial ``Sweep`` after each
    batch, then the finished ``Sweep``. ``zoo.cancel.check()`` runs between batches (and the
    executor checks before each forward), so a Stop ends it there."""
    raise NotImplementedError


def stream(executor: Any, inp: Any, *, corruptions: Sequence[str] | None = None,
           severities: Sequence[int] | None = None, seed: int = DEFAULT_SEED, save_dir: str | Path | None = None,
           top_k: int = 5, batch_size: int | None = None, progress: ProgressFn | None = None,
           partial_every_s: float | None = None,
           ) -> Iterator[SampleResult | Any]:
    """A folder (``zoo.batch.BatchInput``) through ``executor``: yields ``zoo.batch.Skipped`` files,
    one ``SampleResult`` per (image, corruption or clean, severity) as it is scored,
    ``zoo.batch.Progress``, partial ``FolderSummary``s with ``partial_every_s``, then the final
    ``FolderSummary``."""
    raise NotImplementedError
