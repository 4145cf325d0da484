"""Does a map point at what the model used? Deletion and insertion scores (Petsiuk et al. 2018, RISE).

Rank the pixels of the map (upsampled to the crop) from most to least relevant. Deletion
replaces the top-ranked pixels with a baseline in 20 steps and follows the target's
softmax probability as they go: a faithful map makes it fall fast (a LOW area is good).
Insertion starts from the baseline and restores the top-ranked pixels first: a faithful
map makes it rise fast (a HIGH area is good). Areas are trapezoids over the fraction of
pixels changed, so both lie in [0, 1].

This computes exactly what ``torchcam.metrics.DeletionInsertionMetric(extractor,
softmax, steps=20)`` computes for one image (the tests check it):

* the map is min-max scaled as TorchCAM's extractors return it, upsampled bilinearly
  (``align_corners=False``) to the input, and ranked with a stable descending sort, so
  ties go to the earlier pixel in row-major order;
* a removed pixel becomes 0 in every channel of the *normalised* input, i.e. the dataset
  mean colour (TorchCAM's default baseline);
* step ``k`` changes ``k * ceil(HW / steps)`` pixels, the last step all ``HW``: 21 points;
* the first deletion point and the last insertion point are the unperturbed probability,
  the all-baseline image serves as both the last deletion and the first insertion point.

Unlike TorchCAM, which runs the plain module in fp32, the 39 perturbed images go through
``lm.forward`` in batches: inference mode, at the model's precision (bf16/fp16 where the
hardware runs it natively), and the unperturbed probability is the classification's own.
Scores only compare maps, and a few 1e-3 of probability do not change a ranking.

ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
Methods") asks the same question without grey patches, whose out-of-distribution look
alone moves the probability: removed pixels are filled by noisy linear imputation (each
one the weighted mean of its 8 neighbours, solved as one sparse system, plus N(0, 0.01)
noise), so the image stays plausible and the hole's shape leaks less. At percentile p,
MoRF imputes the (100 - p) % most relevant pixels (a faithful map makes the class
probability fall), LeRF the (100 - p) % least relevant (it should barely move). The
combined score is ``(mean LeRF - mean MoRF) / 2`` over the percentiles: HIGHER is better.
The imputation is ``pytorch_grad_cam.metrics.road``'s own; only its noise comes from a
private seeded generator (the library draws from torch's global one, shared by every
thread), so a score is reproducible. The imputed images go through ``lm.forward`` in one
batch, like the deletion curve's.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cancel import check
from .errors import ZooError
from .inference import Classification
from .models import LoadedModel

STEPS = 20
BATCH = 16  # perturbed images per forward: bounds memory on the deepest model
# Measured time of one scored image (2 * STEPS - 1 per map, batched) in batch-1 forwards of
# the model: 34 / 36 / 29 forwards' time for 39 images on ResNet-18 / 50 / 152
# (benchmarks/methods.py, README). ``zoo.features.classify.map_estimate`` uses it until scoring ran here.
PASS_COST = 0.85

# ROAD's percentiles. The paper (and pytorch-grad-cam's ROADCombined) uses 10, 20, ..., 90:
# 18 sparse solves, about 4 s on a 2-core CPU (the solves for low percentiles, which
# impute 80-90 % of the pixels, cost most). Four percentiles spread over the same range
# keep it near 2 s (benchmarks/methods.py measures it); any others can be asked for.
ROAD_PERCENTILES = (20, 40, 60, 80)
ROAD_NOISE = 0.01  # the library's default noise std, in normalised input units
ROAD_SEED = 0


@dataclass
class Road:
    """ROAD scores of one map: the target's probability after imputing, per percentile."""

    percentiles: tuple[int, ...]
    morf: np.ndarray  # (P,) probability after imputing the (100 - p) % MOST relevant pixels: low is good
    lerf: np.ndarray  # (P,) probability after imputing the (100 - p) % LEAST relevant pixels: high is good
    combined: float  # (mean lerf - mean morf) / 2, as ROADCombined computes it: higher is better
    forwards: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"percentiles": list(self.percentiles), "morf": [float(v) for v in self.morf],
                "lerf": [float(v) for v in self.lerf], "combined": self.combined, "forwards": self.forwards,
                "seconds": round(self.seconds, 4)}


@dataclass
class Faithfulness:
    """Deletion and insertion curves of one map, and their areas."""

    deletion_auc: float  # lower is better
    insertion_auc: float  # higher is better
    fractions: np.ndarray  # (steps + 1,) fraction of pixels removed / restored
    deletion_curve: np.ndarray  # (steps + 1,) target probability as pixels are removed
    insertion_curve: np.ndarray  # (steps + 1,) target probability as pixels are restored
    steps: int
    forwards: int  # images sent through the network (the unperturbed one is the classification's)
    seconds: float
    road: Road | None = None  # ROAD scores (None when not asked for)

    def to_json(self) -> dict[str, Any]:
        return {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "deletion_curve": [float(v) for v in self.deletion_curve],
                "insertion_curve": [float(v) for v in self.insertion_curve],
                "fractions": [float(v) for v in self.fractions], "steps": self.steps,
                "forwards": self.forwards, "seconds": round(self.seconds, 4),
                "road": None if self.road is None else self.road.to_json()}


def pixel_ranks(raw: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Rank of each input pixel (0 = most relevant), as TorchCAM's metric ranks them: (H*W,)."""
    cam = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))[None]
    if not torch.isfinite(cam).all():
        raise ZooError("This map has non-finite values (NaN or inf), so its pixels cannot be ranked.")
    # TorchCAM's extractors min-max scale their maps (eps 1e-8) before the metric sees them.
    cam = cam - cam.amin(dim=(1, 2), keepdim=True)
    cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + 1e-8)
    cam = F.interpolate(cam[:, None], size, mode="bilinear", align_corners=False)[0, 0]
    order = torch.argsort(cam.flatten(), descending=True, stable=True)
    return torch.argsort(order)


def step_counts(positions: int, steps: int = STEPS) -> list[int]:
    """Pixels changed at each point: 0, s, 2s, ..., and finally all (s = ceil(positions / steps))."""
    step = (positions + steps - 1) // steps
    return [*range(0, positions, step), positions]


def faithfulness(model: LoadedModel, run: Classification, raw: np.ndarray, target: int, steps: int = STEPS,
                 batch: int = BATCH, progress: Callable[[float | None, str], None] | None = None,
                 road_percentiles: Sequence[int] | None = ROAD_PERCENTILES) -> Faithfulness:
    """Deletion and insertion curves of ``raw`` (any (h, w) map over the crop) for class ``target``,
    and its ROAD scores at ``road_percentiles`` (None or empty: no ROAD)."""
    percentiles = road_checked(road_percentiles)
    if not 1 <= int(steps) <= 100:
        raise ZooError(f"Faithfulness needs between 1 and 100 steps, got {steps}.")
    t0 = time.perf_counter()
    x = run.input  # (1, 3, H, W), normalised
    H, W = x.shape[-2:]
    counts = step_counts(H * W, int(steps))
    n = len(counts)
    original = float(run.probs[target])
    deletion, insertion = np.empty(n), np.empty(n)
    deletion[0] = insertion[-1] = original
    # (curve, point, pixels changed); curve 2, the all-baseline image, ends deletion and starts insertion.
    jobs = [(2, n - 1, H * W)] + [(c, i, counts[i]) for i in range(1, n - 1) for c in (0, 1)]
    device = model.device
    ranks = pixel_ranks(raw, (H, W)).to(device)
    image = model.to_input(x)
    baseline = torch.zeros_like(image)
    with torch.inference_mode():
        for start in range(0, len(jobs), batch):
            check()
            chunk = jobs[start:start + batch]
            if progress:
                progress(start / len(jobs), f"{run.model}: scoring the map, image {start + 1} of {len(jobs)}")
            changed = ranks[None] < torch.tensor([j[2] for j in chunk], device=device)[:, None]
            # deletion keeps the pixels not yet removed; insertion keeps those already restored
            keep = torch.where(torch.tensor([j[0] == 1 for j in chunk], device=device)[:, None], changed, ~changed)
            images = torch.where(keep.view(-1, 1, H, W), image, baseline)
            _, logits = model.forward(images.contiguous(memory_format=torch.channels_last))
            probs = torch.softmax(logits.float(), dim=1)[:, target].cpu().numpy()
            for (curve, point, _), p in zip(chunk, probs):
                if curve != 1:
                    deletion[point] = p
                if curve != 0:
                    insertion[0 if curve == 2 else point] = p
    fractions = torch.tensor(counts, dtype=torch.float32) / (H * W)
    dc, ic = torch.from_numpy(deletion).float(), torch.from_numpy(insertion).float()
    seconds = time.perf_counter() - t0
    road_scores = None
    if percentiles:
        road_scores = road(model, run, raw, target, percentiles, batch=batch, progress=progress)
    return Faithfulness(
        deletion_auc=float(torch.trapezoid(dc, fractions)), insertion_auc=float(torch.trapezoid(ic, fractions)),
        fractions=fractions.numpy(), deletion_curve=dc.numpy(), insertion_curve=ic.numpy(), steps=int(steps),
        forwards=len(jobs), seconds=seconds, road=road_scores)


# --- ROAD -------------------------------------------------------------------------------

def road_checked(percentiles: Sequence[int] | None) -> tuple[int, ...]:
    """Validated ROAD percentiles: whole numbers in 1..99, at most 9 (each costs a sparse solve per order)."""
    if not percentiles:
        return ()
    out = []
    for p in percentiles:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or float(p) != int(p) or not 1 <= p <= 99:
            raise ZooError(f"ROAD percentiles are whole numbers from 1 to 99, got {p!r}.")
        out.append(int(p))
    if len(set(out)) > 9:
        raise ZooError(f"ROAD takes at most 9 percentiles (each is two sparse solves and two forwards), got "
                       f"{len(set(out))}; the default is {', '.join(map(str, ROAD_PERCENTILES))}.")
    return tuple(sorted(set(out)))


def road_forwards(percentiles: Sequence[int] | None = ROAD_PERCENTILES) -> int:
    """Images ROAD sends through the network: one per percentile and order."""
    return 2 * len(road_checked(percentiles))


# Recent seconds of ROAD's imputation per percentile (both orders), for estimates: it runs on
# the CPU whatever the device, so it does not scale with the model's forward.
_IMPUTE_S: deque[float] = deque(maxlen=8)
_IMPUTE_LOCK = threading.Lock()
IMPUTE_S_DEFAULT = 0.6  # measured on the 2-core CPU of the README, before any run here


def road_impute_seconds(percentiles: Sequence[int] | None = ROAD_PERCENTILES) -> float:
    """Expected seconds of ROAD's imputation (recent runs here, else the default)."""
    with _IMPUTE_LOCK:
        per = statistics.median(_IMPUTE_S) if _IMPUTE_S else IMPUTE_S_DEFAULT
    return per * len(road_checked(percentiles))


class _SeededImputer:
    """pytorch-grad-cam's ``NoisyLinearImputer`` with its noise drawn from a private generator.

    The library adds ``noise * torch.randn_like(...)`` from torch's global generator, which
    every thread shares: scores would change from call to call. Here the library imputes
    with noise 0 and the same N(0, noise) is added to the same (imputed) pixels.
    """

    def __init__(self, noise: float, generator: torch.Generator):
        from pytorch_grad_cam.metrics.road import NoisyLinearImputer

        self.imputer = NoisyLinearImputer(noise=0.0)
        self.noise = noise
        self.generator = generator

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.imputer(img, mask)
        missing = mask.reshape(-1) == 0  # the pixels the library imputes
        flat = out.reshape(img.shape[0], -1)
        flat[:, missing] += self.noise * torch.randn((img.shape[0], int(missing.sum())), generator=self.generator)
        return out


def road_cam(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map as ROAD ranks it: min-max scaled to [0, 1] and upsampled bilinearly to the crop."""
    cam = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32))[None, None]
    if not torch.isfinite(cam).all():
        raise ZooError("This map has non-finite values (NaN or inf), so its pixels cannot be ranked.")
    cam = F.interpolate(cam, size, mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / (cam.max() + 1e-7)).numpy()


def road(model: LoadedModel, run: Classification, raw: np.ndarray, target: int,
         percentiles: Sequence[int] = ROAD_PERCENTILES, batch: int = BATCH, noise: float = ROAD_NOISE,
         seed: int = ROAD_SEED, progress: Callable[[float | None, str], None] | None = None) -> Road:
    """ROAD's MoRF and LeRF probabilities of class ``target`` and the combined score of ``raw``.

    Each percentile's images are made by ``ROADMostRelevantFirst(p)`` and
    ``ROADLeastRelevantFirst(p)``'s own perturbation (the library's threshold and sparse
    solve), then all go through the network in batches.
    """
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirst, ROADMostRelevantFirst

    percentiles = road_checked(percentiles)
    t0 = time.perf_counter()
    x = run.input[0].detach().float().cpu()  # (3, H, W), normalised: what the library imputes
    cam = torch.from_numpy(road_cam(raw, tuple(x.shape[-2:])))
    generator = torch.Generator().manual_seed(int(seed))
    images = []
    for i, p in enumerate(percentiles):
        check()  # each percentile is two sparse solves: the place to stop
        if progress:
            progress(i / len(percentiles), f"{run.model}: ROAD, imputing at percentile {p} "
                                           f"({i + 1} of {len(percentiles)})")
        t1 = time.perf_counter()
        for metric in (ROADMostRelevantFirst(p), ROADLeastRelevantFirst(p)):
            metric.perturbation.imputer = _SeededImputer(float(noise), generator)
            images.append(metric.perturbation(x, cam))
        with _IMPUTE_LOCK:
            _IMPUTE_S.append(time.perf_counter() - t1)
    stack = model.to_input(torch.stack(images))
    probs = []
    with torch.inference_mode():
        for start in range(0, len(stack), batch):
            check()
            _, logits = model.forward(stack[start:start + batch].contiguous(memory_format=torch.channels_last))
            probs.append(torch.softmax(logits.float(), dim=1)[:, target].cpu())
    p_all = torch.cat(probs).numpy().astype(np.float64)
    morf, lerf = p_all[0::2], p_all[1::2]
    return Road(percentiles, morf, lerf, float((lerf.mean() - morf.mean()) / 2), len(images),
                time.perf_counter() - t0)
