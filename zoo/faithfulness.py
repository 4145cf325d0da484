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
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ZooError
from .inference import Classification
from .models import LoadedModel

STEPS = 20
BATCH = 16  # perturbed images per forward: bounds memory on the deepest model
# Measured time of one scored image (2 * STEPS - 1 per map, batched) in batch-1 forwards of
# the model: 34 / 36 / 29 forwards' time for 39 images on ResNet-18 / 50 / 152
# (benchmarks/methods.py, README). ``Explorer.estimate`` uses it until scoring ran here.
PASS_COST = 0.85


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

    def to_json(self) -> dict[str, Any]:
        return {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc,
                "deletion_curve": [float(v) for v in self.deletion_curve],
                "insertion_curve": [float(v) for v in self.insertion_curve],
                "fractions": [float(v) for v in self.fractions], "steps": self.steps,
                "forwards": self.forwards, "seconds": round(self.seconds, 4)}


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
                 batch: int = BATCH, progress: Callable[[float | None, str], None] | None = None) -> Faithfulness:
    """Deletion and insertion curves of ``raw`` (any (h, w) map over the crop) for class ``target``."""
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
    return Faithfulness(
        deletion_auc=float(torch.trapezoid(dc, fractions)), insertion_auc=float(torch.trapezoid(ic, fractions)),
        fractions=fractions.numpy(), deletion_curve=dc.numpy(), insertion_curve=ic.numpy(), steps=int(steps),
        forwards=len(jobs), seconds=time.perf_counter() - t0)
