"""Do the depths use the same evidence? Evidence transfer between depths (issue 34, item 4).

Map agreement (``zoo.agreement``) says whether two depths' maps *look* alike. This asks the
causal question: delete the pixels in the order of depth i's map and watch depth j's confidence
fall (``zoo.faithfulness``: j's deletion curve of the target class, on j's own input), against
the order of j's own map:

    T[i][j] = deletion AUC of j, pixels deleted by i's map / deletion AUC of j by j's own map

1.0: i's evidence removes j's confidence as fast as j's own map does; 1.4: 40 % more slowly (i's
map misses part of what j uses); 0.8: faster (i's map finds j's evidence better than j's own).
The diagonal is 1 by definition. With ROAD, the same ratio of ROAD's MoRF mean (the class
probability after imputing the most relevant pixels, averaged over the percentiles; lower is
better, like deletion): ROAD's combined score is a difference that can be near 0 or negative,
so its ratio would not read as "faster" or "slower".

Each cell scores one map on one model exactly as Compare depths scores a depth's own map (the
same function, the same steps, batches and precision), so a cell can be recomputed by calling
``zoo.faithfulness.faithfulness`` directly (tests/test_transfer.py does). Cost: every ordered
pair is one scoring (39 images, plus 8 with ROAD), n x (n - 1) of them, plus each depth's own
unless the comparison already scored it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from .costs import FAITHFULNESS, Estimate
from .faithfulness import ROAD_PERCENTILES, STEPS, Faithfulness, faithfulness, road_forwards, road_impute_seconds
from .inference import Classification
from .models import LoadedModel


@dataclass(frozen=True)
class Depth:
    """What the transfer needs of one depth of a comparison: its model, its classification of the
    image (input and crop) and its map."""

    name: str
    model: LoadedModel
    run: Classification
    raw: np.ndarray  # the map as the method produced it, over the crop


@dataclass
class Transfer:
    """The evidence-transfer matrices of several depths for one class: row i's map, column j's model."""

    models: list[str]
    target: int
    deletion_auc: np.ndarray  # (n, n) j's deletion AUC with pixels deleted in the order of i's map
    deletion: np.ndarray  # (n, n) deletion_auc[i, j] / deletion_auc[j, j]; NaN where j's own AUC is 0
    road_morf: np.ndarray | None = None  # (n, n) mean ROAD MoRF probability of j under i's map
    road: np.ndarray | None = None  # (n, n) road_morf[i, j] / road_morf[j, j]
    notes: list[str] = field(default_factory=list)
    forwards: int = 0  # images sent through the networks
    seconds: float = 0.0

    def sentence(self) -> str:
        """One sentence reading the deletion matrix: the typical pair, and the pair furthest from 1."""
        n = len(self.models)
        cells = [(i, j, float(self.deletion[i, j])) for i in range(n) for j in range(n)
                 if i != j and np.isfinite(self.deletion[i, j]) and self.deletion[i, j] > 0]
        if not cells:
            return "No pair of depths could be compared (a depth's own map left it no deletion area to compare)."
        typical = math.exp(sum(math.log(r) for *_, r in cells) / len(cells))
        i, j, r = max(cells, key=lambda c: abs(math.log(c[2])))
        return (f"Across the {len(cells)} ordered pairs, another depth's map removes a depth's confidence "
                f"{_pace(typical)} than that depth's own map on average (geometric mean {typical:.2f}); furthest "
                f"from its own: {self.models[i]}'s map removes {self.models[j]}'s confidence {_pace(r)} than "
                f"{self.models[j]}'s own ({r:.2f}).")

    def to_json(self) -> dict[str, Any]:
        return {"models": list(self.models), "target": self.target, "deletion": _clean(self.deletion),
                "deletion_auc": _clean(self.deletion_auc),
                "road": None if self.road is None else _clean(self.road),
                "road_morf": None if self.road_morf is None else _clean(self.road_morf),
                "reading": self.sentence(), "notes": list(self.notes), "forwards": self.forwards,
                "seconds": round(self.seconds, 3)}


def _pace(ratio: float) -> str:
    if abs(ratio - 1.0) < 0.005:
        return "as fast"
    pct = abs(ratio - 1.0) * 100
    return f"{pct:.0f} % more slowly" if ratio > 1 else f"{pct:.0f} % faster"


def _clean(m: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else round(float(v), 4) for v in row] for row in m]


def _ratio(cells: np.ndarray) -> np.ndarray:
    own = np.diag(cells).copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = cells / own[None, :]
    out[:, own <= 0] = np.nan
    return out


def evidence_transfer(depths: Sequence[Depth], target: int, road: bool = False,
                      own: Sequence[Faithfulness | None] | None = None,
                      road_percentiles: Sequence[int] = ROAD_PERCENTILES,
                      progress: Callable[[float | None, str], None] | None = None) -> Transfer:
    """The transfer matrices of ``depths`` for class ``target`` (``zoo.faithfulness`` per cell).

    ``own``: each depth's scores of its own map, when the comparison already computed them
    (with ROAD at ``road_percentiles`` when ``road``); they are reused, not recomputed. Checks ``zoo.cancel`` between
    and within cells (``faithfulness`` does).
    """
    n = len(depths)
    if n < 2:
        from .errors import ZooError

        raise ZooError("Evidence transfer compares depths pairwise: choose at least two models.")
    t0 = time.perf_counter()
    percentiles = tuple(road_percentiles) if road else None
    auc = np.full((n, n), np.nan)
    morf = np.full((n, n), np.nan) if road else None
    forwards, done, todo = 0, 0, n * n
    for j, dj in enumerate(depths):
        for i, di in enumerate(depths):
            reuse = own[j] if (own is not None and i == j) else None
            if reuse is not None and (not road or (reuse.road is not None and reuse.road.percentiles == percentiles)):
                scores = reuse
            else:
                if progress:
                    progress(done / todo, f"evidence transfer: {di.name}'s map on {dj.name} "
                                          f"({done + 1} of {todo})")
                scores = faithfulness(dj.model, dj.run, di.raw, target, road_percentiles=percentiles)
                forwards += scores.forwards + (scores.road.forwards if scores.road else 0)
            auc[i, j] = scores.deletion_auc
            if morf is not None and scores.road is not None:
                morf[i, j] = float(np.mean(scores.road.morf))
            done += 1
    notes = []
    if len({d.run.geometry.crop for d in depths}) > 1 or len({d.run.geometry.resized for d in depths}) > 1:
        notes.append("The depths crop the image differently; each map is laid over the other depth's crop by its "
                     "position in its own crop, so a few pixels near the edges do not match.")
    return Transfer([d.name for d in depths], int(target), auc, _ratio(auc),
                    morf, None if morf is None else _ratio(morf), notes, forwards, time.perf_counter() - t0)


# --- cost -------------------------------------------------------------------------------------

def scorings(n: int, own_scored: bool = False) -> int:
    """Maps scored per depth: every other depth's, and its own unless the comparison scored it."""
    return n - 1 + (0 if own_scored else 1)


def with_transfer(rt: Any, est: Estimate, models: Sequence[str], road: bool = False,
                  own_scored: bool = False, road_percentiles: Sequence[int] = ROAD_PERCENTILES) -> Estimate:
    """``est`` (a comparison's) plus the transfer matrix: on each model j, ``scorings`` maps of
    39 images each (plus ROAD's 8 and its CPU imputation), at the scoring's measured pace."""
    per_map = 2 * STEPS - 1 + (road_forwards(road_percentiles) if road else 0)
    k = scorings(len(models), own_scored)
    seconds: float | None = est.seconds
    for name in models:
        timed = rt.costs.forward_seconds(name)
        if seconds is None or timed is None:
            seconds = None
            continue
        score_s, _ = rt.costs.pass_seconds(FAITHFULNESS, name, timed[0])
        seconds += k * (per_map * score_s + (road_impute_seconds(road_percentiles) if road else 0.0))
    added = len(models) * k * per_map
    return replace(est, forwards=est.forwards + added, passes=est.passes + added, seconds=seconds)
