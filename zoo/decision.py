"""Which depth should I ship? Statistics of a batch run's per-image records, and a recommendation.

Everything here is computed from the per-image records alone (each model's top-1
probability, whether its top-1 and top-5 were right, the probability it gave the label), in
input order, so a resumed run (``--resume``) and a Ray run give the same decision as a
local one. Nothing here runs a model: the cost figures are measured by the batch feature
(``zoo.features.batch``) and handed in.

- accuracy: top-1 and top-5 with 95 % percentile-bootstrap intervals (``BOOTSTRAP`` resamples
  of the images, seeded); one resample matrix for every model, so pairs are paired;
- pairs: McNemar's exact test (a two-sided binomial test on the discordant counts,
  ``scipy.stats.binomtest``) and the difference in top-1 with its paired-bootstrap interval;
- error consistency (Geirhos et al., NeurIPS 2020): kappa = (c_obs - c_exp) / (1 - c_exp) on the
  right/wrong vectors;
- calibration: ECE over ``BINS`` equal-width bins of the top-1 probability, NLL of the label,
  and the Brier score of the top-1 probability against whether it was right (top-label Brier:
  the records keep top-k, not all 1000 probabilities);
- the recommendation: the cheapest depth whose top-1 is not significantly below the best's
  (McNemar at ``level``), within the latency budget; under ``MIN_IMAGES`` labelled images,
  none ("sample too small").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

BOOTSTRAP = 2000  # resamples
BINS = 15  # ECE's equal-width bins of the top-1 probability
MIN_IMAGES = 30  # labelled images below which no depth is recommended
PROBE_IMAGES = 6  # batch-1 latency: forwards per model (the first is a warm-up)
EPS = 1e-12  # the smallest label probability NLL takes (float32 softmax can underflow to 0)
CHUNK = 2_000_000  # bootstrap: index elements drawn at a time (memory stays bounded on big runs)


def extra_forwards(images: int, corrupted_per_image: int) -> int:
    """The decision's forwards per model beyond the batch: latency probes, and with corruptions each
    corrupted image and the clean crop the robustness run compares them with."""
    return min(PROBE_IMAGES, images) + (images * (corrupted_per_image + 1) if corrupted_per_image else 0)


@dataclass
class Collector:
    """The per-image figures a decision needs, gathered as a batch's ``ImageResult``s pass,
    exactly as the records (``zoo.batch.prediction_records``) write them."""

    models: list[str]
    rows: dict[int, tuple] = field(default_factory=dict)  # image index -> its figures

    def add(self, img: Any) -> None:
        m = len(self.models)
        conf = [round(float(img.probs[i, 0]), 6) for i in range(m)]  # the record's top-1 "prob"
        if img.label is None:
            self.rows[img.index] = (img.top[:, 0].copy(), None, None, conf, None)
            return
        lp = [float(img.label_probs[i]) if img.label_probs is not None else math.nan for i in range(m)]
        self.rows[img.index] = (img.top[:, 0].copy(), [bool(img.correct(i, 1)) for i in range(m)],
                                [bool(img.correct(i, 5)) for i in range(m)], conf, lp)

    def records(self) -> Records:
        rows = [self.rows[i] for i in sorted(self.rows)]  # input order, whichever order they came in
        lab = [r for r in rows if r[1] is not None]
        m = len(self.models)
        arr = lambda xs, dtype: np.array(xs, dtype=dtype).reshape(-1, m)  # noqa: E731
        return Records(self.models, arr([r[0] for r in rows], np.int64), arr([r[1] for r in lab], bool),
                       arr([r[2] for r in lab], bool), arr([r[3] for r in lab], np.float64),
                       arr([r[4] for r in lab], np.float64))


@dataclass
class Records:
    """(images, models) arrays; the labelled images' rows only, except ``top1`` (every image)."""

    models: list[str]
    top1: np.ndarray
    correct1: np.ndarray
    correct5: np.ndarray
    conf: np.ndarray
    label_prob: np.ndarray

    @property
    def n(self) -> int:
        return len(self.correct1)


# --- statistics ------------------------------------------------------------------------------

def bootstrap_means(columns: np.ndarray, seed: int, resamples: int = BOOTSTRAP) -> np.ndarray:
    """(resamples, K) means of ``columns`` (n, K) over images drawn with replacement.

    The draws are ``numpy.random.default_rng(seed).integers(0, n, size=(resamples, n))``, made
    in chunks (the same numbers) so memory stays bounded.
    """
    n = len(columns)
    rng = np.random.default_rng(seed)
    step = max(1, CHUNK // max(n * columns.shape[1], 1))
    out = []
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))
        out.append(columns[idx].mean(axis=1))
    return np.concatenate(out)


def interval(samples: np.ndarray) -> list[float]:
    """The 95 % percentile interval of bootstrap ``samples``."""
    lo, hi = np.percentile(samples, [2.5, 97.5])
    return [float(lo), float(hi)]


def mcnemar(right_a: np.ndarray, right_b: np.ndarray) -> tuple[float, int, int]:
    """McNemar's exact test: (two-sided p, images only a gets right, images only b gets right)."""
    from scipy.stats import binomtest

    a_only, b_only = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    if a_only + b_only == 0:
        return 1.0, 0, 0
    return float(binomtest(a_only, a_only + b_only, 0.5).pvalue), a_only, b_only


def kappa(right_a: np.ndarray, right_b: np.ndarray) -> float | None:
    """Error consistency: Cohen's kappa of two right/wrong vectors (None where c_exp is 1)."""
    c_obs = float(np.mean(right_a == right_b))
    pa, pb = float(np.mean(right_a)), float(np.mean(right_b))
    c_exp = pa * pb + (1 - pa) * (1 - pb)
    return None if c_exp >= 1.0 else (c_obs - c_exp) / (1 - c_exp)


def calibration(conf: np.ndarray, right: np.ndarray, label_prob: np.ndarray) -> dict[str, Any]:
    """ECE (``BINS`` equal-width bins (lo, hi] of the top-1 probability), NLL, Brier, and the bins."""
    which = np.clip(np.ceil(conf * BINS).astype(int) - 1, 0, BINS - 1)
    ece, bins = 0.0, []
    for b in range(BINS):
        inside = which == b
        k = int(inside.sum())
        acc = float(right[inside].mean()) if k else None
        mean_conf = float(conf[inside].mean()) if k else None
        if k:
            ece += k / len(conf) * abs(acc - mean_conf)  # type: ignore[operator]
        bins.append({"lo": b / BINS, "hi": (b + 1) / BINS, "n": k, "accuracy": acc, "confidence": mean_conf})
    nll = float(np.mean(-np.log(np.clip(label_prob, EPS, 1.0)))) if not np.isnan(label_prob).any() else None
    return {"ece": ece, "nll": nll, "brier": float(np.mean((conf - right) ** 2)), "bins": bins}


# --- the decision ----------------------------------------------------------------------------

@dataclass
class Decision:
    """The JSON ``decision`` object (README "Which depth should I ship?"), and its sentences."""

    models: list[str]
    n: int  # labelled images it rests on
    accuracy: dict[str, dict[str, Any]]
    calibration: dict[str, dict[str, Any]]
    cost: dict[str, dict[str, Any]]
    pairs: list[dict[str, Any]]
    error_consistency: dict[str, Any]
    recommendation: dict[str, Any]
    seed: int
    robustness: dict[str, Any] | None = None  # accuracy under corruptions, when asked for
    published: dict[str, Any] = field(default_factory=dict)  # ImageNet figures of the registry: not the user's

    def to_json(self) -> dict[str, Any]:
        out = {"models": {m: {"accuracy": self.accuracy.get(m), "calibration": self.calibration.get(m),
                              "cost": self.cost.get(m), "published": self.published.get(m)}
                          for m in self.models},
               "pairs": self.pairs, "error_consistency": self.error_consistency,
               "recommendation": self.recommendation, "seed": self.seed, "n": self.n,
               "bootstrap": BOOTSTRAP}
        if self.robustness is not None:
            out["robustness"] = self.robustness
        return out

    def sentences(self) -> list[str]:
        """The decision in words: the recommendation, then each pair."""
        out = [self.recommendation["reason"]]
        for p in self.pairs:
            out.append(pair_sentence(p, self.n, self.recommendation["level"]))
        return out


def pair_sentence(p: dict[str, Any], n: int, level: float) -> str:
    """'On your 412 images ResNet-152 is 2.1 points more accurate than ResNet-50 (95 % interval ...)'."""
    a, b, diff, (lo, hi) = p["a"], p["b"], p["diff"], p["diff_ci"]
    if diff < 0:  # the more accurate one first
        a, b, diff, lo, hi = b, a, -diff, -hi, -lo
    verdict = "significant" if p["mcnemar_p"] < level else "not significant"
    return (f"On your {n} images {a} is {diff * 100:.1f} points more accurate than {b} (95 % interval "
            f"{lo * 100:.1f} to {hi * 100:.1f}); the difference is {verdict} (McNemar p = {p['mcnemar_p']:.2g}).")


def statistics(rec: Records, seed: int) -> tuple[dict, dict, list, dict]:
    """accuracy, calibration, pairs, error consistency of the labelled records."""
    names, m = rec.models, len(rec.models)
    boot = bootstrap_means(np.concatenate([rec.correct1, rec.correct5], axis=1).astype(np.float64), seed)
    acc1, acc5 = rec.correct1.mean(axis=0), rec.correct5.mean(axis=0)
    accuracy = {name: {"top1": float(acc1[i]), "top1_ci": interval(boot[:, i]), "top5": float(acc5[i]),
                       "top5_ci": interval(boot[:, m + i]), "n": rec.n} for i, name in enumerate(names)}
    cal = {name: calibration(rec.conf[:, i], rec.correct1[:, i].astype(np.float64), rec.label_prob[:, i])
           for i, name in enumerate(names)}
    pairs = []
    for i in range(m):
        for j in range(i + 1, m):
            p, a_only, b_only = mcnemar(rec.correct1[:, i], rec.correct1[:, j])
            pairs.append({"a": names[i], "b": names[j], "diff": float(acc1[i] - acc1[j]),
                          "diff_ci": interval(boot[:, i] - boot[:, j]), "mcnemar_p": p,
                          "a_only": a_only, "b_only": b_only})
    ec = {"models": names, "kappa": [[kappa(rec.correct1[:, i], rec.correct1[:, j]) for j in range(m)]
                                     for i in range(m)]}
    return accuracy, cal, pairs, ec


def top1_agreement(rec: Records) -> list[list[float]]:
    """Share of images (labelled or not) on which two models give the same top-1."""
    t = rec.top1
    return [[float(np.mean(t[:, i] == t[:, j])) if len(t) else 1.0 for j in range(t.shape[1])]
            for i in range(t.shape[1])]


def _cost_key(cost: dict[str, Any]) -> tuple[float, float]:
    ms = cost.get("ms_batch1")
    return (math.inf if ms is None else ms, cost.get("macs") or 0)


def dominated(models: Sequence[str], top1: dict[str, float], cost: dict[str, dict[str, Any]]) -> list[str]:
    """Depths another is at least as accurate as and at least as cheap as (strictly in one)."""
    out = []
    for m in models:
        for o in models:
            if o == m:
                continue
            better = top1[o] >= top1[m] and _cost_key(cost[o]) <= _cost_key(cost[m])
            if better and (top1[o] > top1[m] or _cost_key(cost[o]) < _cost_key(cost[m])):
                out.append(m)
                break
    return out


def recommend(models: Sequence[str], n: int, top1: dict[str, float], pairs: Sequence[dict[str, Any]],
              cost: dict[str, dict[str, Any]], level: float, budget_ms: float | None) -> dict[str, Any]:
    """The cheapest depth not significantly below the best (McNemar at ``level``) within ``budget_ms``."""
    out: dict[str, Any] = {"model": None, "reason": "", "level": level, "budget_ms": budget_ms, "dominated": []}
    if n < MIN_IMAGES:
        out["reason"] = (f"The sample is too small: {n} labelled image(s); with fewer than {MIN_IMAGES} no depth "
                         "is recommended, since the intervals are too wide to tell the depths apart. Label more "
                         "images.")
        return out
    out["dominated"] = dominated(models, top1, cost)
    p_of = {frozenset((p["a"], p["b"])): p["mcnemar_p"] for p in pairs}
    best = max(models, key=lambda m: (top1[m], [-x for x in _cost_key(cost[m])]))

    def close(m: str) -> bool:  # not significantly below the best
        return m == best or top1[m] >= top1[best] or p_of[frozenset((m, best))] >= level

    ms = {m: cost[m].get("ms_batch1") for m in models}
    within = [m for m in models if budget_ms is None or (ms[m] is not None and ms[m] <= budget_ms)]
    if not within:
        fastest = min(models, key=lambda m: _cost_key(cost[m]))
        out["reason"] = (f"No depth runs within {budget_ms:g} ms per image at batch 1 here; the fastest is {fastest} "
                         f"({_ms(ms[fastest])}). Raise the budget or use faster hardware.")
        return out
    ok = [m for m in within if close(m)]
    budget = "" if budget_ms is None else f" within {budget_ms:g} ms"
    if ok:
        pick = min(ok, key=lambda m: _cost_key(cost[m]))
        if pick == best:
            cheaper = [m for m in within if _cost_key(cost[m]) < _cost_key(cost[best])]
            why = (f"{best} is the most accurate depth on your {n} labelled images ({top1[best] * 100:.1f} %)"
                   + (f" and runs{budget}" if budget else "")
                   + (f"; every cheaper depth is significantly less accurate (McNemar p < {level:g})."
                      if cheaper else "; it is also the cheapest."))
        else:
            why = (f"{pick} is the cheapest depth{budget} whose top-1 is not significantly below the best, {best} "
                   f"({top1[pick] * 100:.1f} % against {top1[best] * 100:.1f} % on your {n} labelled images, "
                   f"McNemar p = {p_of[frozenset((pick, best))]:.2g} ≥ {level:g}); it takes {_ms(ms[pick])} per "
                   f"image at batch 1 here, against {_ms(ms[best])}.")
    else:
        pick = max(within, key=lambda m: (top1[m], [-x for x in _cost_key(cost[m])]))
        why = (f"{best}, the most accurate, takes {_ms(ms[best])}, over the {budget_ms:g} ms budget; {pick} is the "
               f"most accurate depth within it ({top1[pick] * 100:.1f} % against {top1[best] * 100:.1f} %), though "
               f"significantly below {best} (McNemar p = {p_of[frozenset((pick, best))]:.2g} < {level:g}).")
    out.update(model=pick, reason=why)
    return out


def _ms(v: float | None) -> str:
    return "unmeasured" if v is None else f"{v:.1f} ms"


def build(rec: Records, cost: dict[str, dict[str, Any]], *, seed: int, level: float, budget_ms: float | None,
          published: dict[str, Any] | None = None, robustness: dict[str, Any] | None = None) -> Decision:
    """The decision of a run from its records and each model's measured cost."""
    names = rec.models
    if rec.n == 0:  # unlabelled: agreement of the answers instead of error consistency
        reason = ("No labels: accuracy, its intervals, the paired tests, error consistency, calibration and a "
                  "recommendation need labelled images (folders named after classes, a labels CSV, or "
                  "WordNet ids). Shown: the agreement of the depths' top-1 answers and their cost.")
        rec_ = {"model": None, "reason": reason, "level": level, "budget_ms": budget_ms, "dominated": []}
        return Decision(names, 0, {}, {}, cost, [], {"models": names, "kappa": None,
                                                     "top1_agreement": top1_agreement(rec)},
                        rec_, seed, robustness, published or {})
    accuracy, cal, pairs, ec = statistics(rec, seed)
    ec["top1_agreement"] = top1_agreement(rec)
    top1 = {m: accuracy[m]["top1"] for m in names}
    return Decision(names, rec.n, accuracy, cal, cost, pairs, ec,
                    recommend(names, rec.n, top1, pairs, cost, level, budget_ms), seed, robustness, published or {})


def corrupted_accuracy(right: dict[tuple[str, int], np.ndarray], models: Sequence[str], seed: int) -> dict[str, Any]:
    """Per (corruption, severity): each model's top-1 on the corrupted images with its bootstrap interval.

    ``right[(corruption, severity)]``: (labelled images, models) right/wrong, in input order.
    """
    out = []
    for (c, s), r in right.items():
        if not len(r):
            continue
        boot = bootstrap_means(r.astype(np.float64), seed)
        out.append({"corruption": c, "severity": s, "n": len(r),
                    "top1": {m: float(r[:, i].mean()) for i, m in enumerate(models)},
                    "top1_ci": {m: interval(boot[:, i]) for i, m in enumerate(models)}})
    return {"seed": seed, "results": out}
