"""Smooth and efficient MPRT: the sanity check repaired (Hedström et al. 2023).

"Sanity Checks Revisited: An Exploration to Repair the Model Parameter Randomisation Test"
(Hedström, Weber, Lapuschkin, Höhne; XAI in Action, NeurIPS 2023 workshop,
https://arxiv.org/abs/2401.06465) finds two faults in the MPRT of Adebayo et al. (``zoo.sanity``):
gradient-based maps are noisy ("shattered gradients"), so a low similarity can be noise rather
than a change of the evidence; and a similarity needs a choice of measure, with its own biases.
It proposes two repairs, computed here between the original model and the fully randomised one
(the last step of the check: every layer random, or every residual branch at ``residual-branches``):

* **sMPRT** (smooth MPRT): each map is first denoised, averaged over N copies of the input with
  Gaussian noise of standard deviation 0.1 x (max - min) of the normalised input (the last copy
  without noise, so N = 1 is plain MPRT), then the absolute averaged maps are compared by Spearman
  rank correlation. LOWER is better: near 0, the denoised evidence depends on the weights.
* **eMPRT** (efficient MPRT): the relative rise of the map's complexity, the Shannon entropy of
  a 100-bin histogram of its values, from the original to the fully randomised model:
  (H_random - H_original) / H_original. HIGHER is better: a map of a random network should be
  disordered; one whose complexity does not rise keeps a structure the weights do not decide.
  It needs no similarity measure and no extra pass: both maps are the check's own.

Both follow Quantus's ``SmoothMPRT`` and ``EfficientMPRT`` (quantus 0.6, their defaults:
``noise_magnitude=0.1``, ``abs=True`` after the average for sMPRT; raw maps and ``n_bins=100``
for eMPRT), which tests/test_mprt.py holds them to. Maps are the ones the check compares: each
method's map upsampled over the crop (``zoo.render.heat_on_crop``). The noise comes from a
``numpy.random.RandomState`` seeded with the check's seed (private to the run), drawn for the
original model first, then for the random one, as Quantus draws its global generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .cancel import check
from .explain import explain
from .images import LoadedImage
from .inference import Classification, Prepared, classify
from .models import LoadedModel
from .render import heat_on_crop

NOISE = 0.1  # Quantus's default noise magnitude, set by the paper's ImageNet experiments
BINS = 100  # Quantus's default n_bins for the histogram entropy


# --- the measures ---------------------------------------------------------------------------

def noisy_inputs(x: torch.Tensor, samples: int, rng: np.random.RandomState, magnitude: float = NOISE) -> list[torch.Tensor]:
    """The ``samples - 1`` noisy copies of the normalised input ``x`` (1, 3, H, W) that sMPRT averages
    over (the last of the N maps is the noiseless one), drawn as Quantus draws them."""
    xb = x.detach().float().cpu().numpy()
    dims = tuple(range(1, xb.ndim))
    std = magnitude * (xb.max(axis=dims, keepdims=True) - xb.min(axis=dims, keepdims=True))
    return [torch.from_numpy((xb + rng.randn(*xb.shape) * std).astype(np.float32)) for _ in range(samples - 1)]


def smoothed(noisy: Sequence[np.ndarray], plain: np.ndarray) -> np.ndarray:
    """|mean| of the noisy copies' maps and the plain map, summed in Quantus's order (plain last)."""
    n = len(noisy) + 1
    acc: np.ndarray | None = None
    for heat in [*noisy, plain]:
        acc = heat / n if acc is None else acc + heat / n
    return np.abs(acc)


def entropy(heat: np.ndarray, bins: int = BINS) -> float:
    """Shannon entropy (nats) of a ``bins``-bin histogram of the map's values: its complexity."""
    from scipy.stats import entropy as shannon

    hist, _ = np.histogram(np.asarray(heat), bins=bins)
    return float(shannon(hist))


def rise(before: float, after: float) -> float | None:
    """eMPRT: (after - before) / before; None when the original map has no complexity to compare."""
    if before == 0 or not (math.isfinite(before) and math.isfinite(after)):
        return None
    return (after - before) / before


def passes(per_copy: int, samples: int) -> int:
    """Forward-pass equivalents sMPRT adds: ``samples - 1`` noisy copies on each of the two models,
    each costing ``per_copy`` (a classification and one map per method). eMPRT adds none."""
    return 2 * (int(samples) - 1) * int(per_copy) if samples > 1 else 0


# --- the result -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Mprt:
    """One method's sMPRT and eMPRT, original against the last step's model."""

    against: str  # the step whose model counts as fully randomised ("stem", or "layer1.0" for branches)
    samples: int  # N for sMPRT (0: not computed)
    smooth: float | None  # sMPRT: Spearman of the |denoised| maps; None if not computed or a map is flat
    entropy_original: float
    entropy_random: float
    efficient: float | None  # eMPRT: relative rise of the entropy; None if the original's is 0
    # The |denoised| maps, original and random (empty without sMPRT): what the page can draw.
    denoised: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    def readings(self, label: str, below: float = 0.5) -> list[str]:
        """The paper's reading of each score, in words (``below``: the check's similarity threshold)."""
        out = []
        if self.samples:
            if self.smooth is None:
                out.append(f"sMPRT ({self.samples} samples): undefined, a denoised map is flat.")
            else:
                low = abs(self.smooth) < below
                out.append(f"sMPRT {self.smooth:.2f} (rank correlation of the maps averaged over {self.samples} "
                           f"noisy copies, original vs the last step ({self.against}); lower is better): "
                           + (f"with the noise averaged away, {label}'s evidence changes with the weights."
                              if low else f"with the noise averaged away, {label}'s map still ranks the pixels "
                                          "like the original's: it does not depend on the weights."))
        if self.efficient is None:
            out.append("eMPRT: undefined, the original map has no spread of values to compare.")
        else:
            verb = "rose" if self.efficient > 0 else "did not rise"
            out.append(f"eMPRT {self.efficient:+.2f} (the map's histogram entropy {verb} from "
                       f"{self.entropy_original:.2f} to {self.entropy_random:.2f} at the last step ({self.against}); "
                       "higher is better): "
                       + ("a random network gives a more disordered map, as a faithful method should."
                          if self.efficient > 0 else
                          "the map keeps its order without the learned weights, so that order is not "
                          "the network's."))
        return out

    def to_json(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        return {"against": self.against,
                "smooth": {"score": r(self.smooth), "samples": self.samples, "noise": NOISE} if self.samples else None,
                "efficient": {"score": r(self.efficient), "entropy_original": r(self.entropy_original),
                              "entropy_random": r(self.entropy_random), "bins": BINS}}


def measure(against: str, original: np.ndarray, random: np.ndarray, similarity: Callable[..., float | None],
            samples: int = 0, smooth_original: np.ndarray | None = None,
            smooth_random: np.ndarray | None = None) -> Mprt:
    """sMPRT (when ``samples``: ``similarity`` of the two denoised maps; the check passes its
    Spearman) and eMPRT (the two plain maps) of one method."""
    smooth, maps = None, ()
    if samples and smooth_original is not None and smooth_random is not None:
        smooth, maps = similarity(smooth_original, smooth_random), (smooth_original, smooth_random)
    h0, h1 = entropy(original), entropy(random)
    return Mprt(against, samples, smooth, h0, h1, rise(h0, h1), maps)


def denoised(model: LoadedModel, run: Classification, image: LoadedImage, params: Mapping[str, Mapping[str, Any]],
             target: int, crop: int, plain: Mapping[str, np.ndarray], samples: int,
             rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """Each method's |denoised| map on ``model``: the maps of ``samples - 1`` noisy copies of
    ``run.input`` (each copy classified once, then mapped by every method, as the check maps a
    step) and the plain map ``plain[method]``, averaged over the crop."""
    noisy: dict[str, list[np.ndarray]] = {name: [] for name in plain}
    for x in noisy_inputs(run.input, samples, rng):
        check()
        copy_run = classify(model, image, top_k=1, prepared=Prepared(run.crop, x))
        for name in plain:
            noisy[name].append(heat_on_crop(explain(model, copy_run, name, target, **params[name]).raw, crop))
    return {name: smoothed(noisy[name], plain[name]) for name in plain}
