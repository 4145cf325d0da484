"""Do the depths look at the same place? Agreement between maps of one class, pair by pair.

Each map is taken as it is drawn on the crop (``render.heat_on_crop``: bilinear, upsampled
to the crop size) and compared with every other:

* **Spearman's ρ** over all pixels: do the two maps rank the crop's pixels alike
  (1: the same order, 0: unrelated, -1: reversed)? Ranks ignore each map's scale and
  offset, so a 7x7 CAM and a 224x224 saliency map compare fairly. Ties get their mean
  rank, as ``scipy.stats.spearmanr`` gives them.
* **IoU of the top-20 % regions**: the pixels at or above each map's 80th percentile,
  less its floor (a map that is zero over 90 % of the crop has no top-20 % among its
  zeros: only pixels above the map's minimum can be "top"). 1: the same region.

A map with no order at all (constant, or not finite) agrees with nothing: None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .render import heat_on_crop

TOP_FRACTION = 0.2


@dataclass
class MapAgreement:
    """Pairwise agreement of several models' maps (symmetric matrices, NaN where undefined)."""

    models: list[str]
    spearman: np.ndarray  # (n, n)
    iou_top20: np.ndarray  # (n, n)
    size: int  # the side the maps were compared at (the largest crop)

    def pair(self, a: str, b: str) -> tuple[float, float]:
        i, j = self.models.index(a), self.models.index(b)
        return float(self.spearman[i, j]), float(self.iou_top20[i, j])

    def to_json(self) -> dict[str, Any]:
        def clean(m: np.ndarray) -> list[list[float | None]]:
            return [[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in m]

        return {"models": list(self.models), "spearman": clean(self.spearman), "iou_top20": clean(self.iou_top20),
                "size": self.size, "top_fraction": TOP_FRACTION}


def drawn(raw: np.ndarray, crop: int, size: int) -> np.ndarray:
    """The map as drawn over a ``crop`` px crop, sampled at ``size`` x ``size``."""
    return heat_on_crop(np.asarray(raw, dtype=np.float32), crop, size)


def ranks(values: np.ndarray) -> np.ndarray | None:
    """Ranks of ``values`` (ties: their mean rank), centred and scaled to unit norm; None without order."""
    from scipy.stats import rankdata

    v = values.ravel()
    if not np.isfinite(v).all() or v.max() == v.min():
        return None
    r = rankdata(v).astype(np.float64)
    r -= r.mean()
    return r / np.linalg.norm(r)


def top_region(values: np.ndarray, fraction: float = TOP_FRACTION) -> np.ndarray | None:
    """Pixels at or above the (1 - fraction) quantile and above the map's minimum; None without order."""
    v = values.ravel()
    if not np.isfinite(v).all() or v.max() == v.min():
        return None
    return (v >= np.quantile(v, 1.0 - fraction)) & (v > v.min())


def map_agreement(maps: Sequence[tuple[str, np.ndarray, int]]) -> MapAgreement:
    """Agreement of each pair of ``(model, raw map, crop size)``, compared at the largest crop."""
    size = max(crop for _, _, crop in maps)
    pictures = [drawn(raw, crop, size) for _, raw, crop in maps]
    r = [ranks(p) for p in pictures]
    top = [top_region(p) for p in pictures]
    n = len(maps)
    rho, iou = np.full((n, n), np.nan), np.full((n, n), np.nan)
    for i in range(n):
        for j in range(i, n):
            if r[i] is not None and r[j] is not None:
                rho[i, j] = rho[j, i] = float(np.clip(r[i] @ r[j], -1.0, 1.0))
            if top[i] is not None and top[j] is not None:
                union = np.count_nonzero(top[i] | top[j])
                iou[i, j] = iou[j, i] = np.count_nonzero(top[i] & top[j]) / union if union else np.nan
    return MapAgreement([name for name, _, _ in maps], rho, iou, size)
