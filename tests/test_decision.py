"""Which depth should I ship? (issue 33): every statistic recomputed independently from the
per-image records, the recommendation rule on constructed cases, and a real run whose
resumed run gives the same decision.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from test_batch import write_images
from zoo import cli, decision
from zoo.decision import Records

NAMES = ["resnet18", "resnet50", "resnet152"]
COST = {"resnet18": {"ms_batch1": 5.0, "macs": 1.8e9}, "resnet50": {"ms_batch1": 12.0, "macs": 4.1e9},
        "resnet152": {"ms_batch1": 30.0, "macs": 11.5e9}}


def records(correct1: np.ndarray, seed: int = 0, names: list[str] = NAMES) -> Records:
    """Records around given right/wrong vectors, with top-5 and probabilities drawn to match."""
    rng = np.random.default_rng(seed)
    n, m = correct1.shape
    correct5 = correct1 | (rng.random((n, m)) < 0.5)
    conf = np.round(np.where(correct1, rng.uniform(0.3, 1.0, (n, m)), rng.uniform(0.05, 0.9, (n, m))), 6)
    label_prob = np.where(correct1, conf, conf * rng.uniform(0.0, 1.0, (n, m)))
    return Records(names, rng.integers(0, 1000, (n, m)), correct1, correct5, conf, label_prob)


def correlated(n: int, accs: list[float], seed: int = 1) -> np.ndarray:
    """Right/wrong vectors sharing some difficulty (so kappa is not zero)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n)
    return np.stack([(0.5 * difficulty + 0.5 * rng.random(n)) < a for a in accs], axis=1)


# --- each statistic, by hand -------------------------------------------------------------------

def test_statistics_recomputed_from_the_records():
    rec = records(correlated(300, [0.6, 0.7, 0.75]))
    d = decision.build(rec, COST, seed=7, level=0.05, budget_ms=None)
    out = d.to_json()
    n = 300
    assert out["n"] == n and out["seed"] == 7 and out["bootstrap"] == 2000
    # the bootstrap: one resample matrix of image indices, the same seed, percentile intervals
    idx = np.random.default_rng(7).integers(0, n, size=(2000, n))
    for i, m in enumerate(NAMES):
        acc = out["models"][m]["accuracy"]
        boot1 = rec.correct1[:, i][idx].mean(axis=1)
        boot5 = rec.correct5[:, i][idx].mean(axis=1)
        assert acc["top1"] == pytest.approx(rec.correct1[:, i].mean()) and acc["n"] == n
        assert acc["top1_ci"] == pytest.approx(list(np.percentile(boot1, [2.5, 97.5])))
        assert acc["top5_ci"] == pytest.approx(list(np.percentile(boot5, [2.5, 97.5])))
    # pairs: McNemar exact on the discordant counts, the paired bootstrap of the difference
    for p in out["pairs"]:
        a, b = NAMES.index(p["a"]), NAMES.index(p["b"])
        ra, rb = rec.correct1[:, a], rec.correct1[:, b]
        a_only, b_only = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
        assert (p["a_only"], p["b_only"]) == (a_only, b_only)
        assert p["mcnemar_p"] == pytest.approx(binomtest(a_only, a_only + b_only, 0.5).pvalue)
        diffs = ra[idx].mean(axis=1) - rb[idx].mean(axis=1)
        assert p["diff"] == pytest.approx(ra.mean() - rb.mean())
        assert p["diff_ci"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])))
    assert len(out["pairs"]) == 3
    # error consistency (Geirhos et al. 2020), by hand
    kappa = out["error_consistency"]["kappa"]
    for i in range(3):
        for j in range(3):
            ri, rj = rec.correct1[:, i], rec.correct1[:, j]
            c_obs = sum(x == y for x, y in zip(ri, rj)) / n
            pi, pj = sum(ri) / n, sum(rj) / n
            c_exp = pi * pj + (1 - pi) * (1 - pj)
            assert kappa[i][j] == pytest.approx((c_obs - c_exp) / (1 - c_exp))
    assert kappa[0][1] > 0.1  # shared difficulty: the depths fail on some of the same images
    # calibration by hand: 15 equal-width bins (lo, hi], NLL of the label, top-label Brier
    for i, m in enumerate(NAMES):
        cal = out["models"][m]["calibration"]
        conf, right, lp = rec.conf[:, i], rec.correct1[:, i], rec.label_prob[:, i]
        ece = 0.0
        for b in range(15):
            inside = [k for k in range(n) if b / 15 < conf[k] <= (b + 1) / 15 or (b == 0 and conf[k] == 0)]
            if inside:
                ece += len(inside) / n * abs(np.mean(right[inside]) - np.mean(conf[inside]))
            assert cal["bins"][b]["n"] == len(inside)
        assert cal["ece"] == pytest.approx(ece)
        assert cal["nll"] == pytest.approx(sum(-math.log(max(p, 1e-12)) for p in lp) / n)
        assert cal["brier"] == pytest.approx(sum((c - r) ** 2 for c, r in zip(conf, right)) / n)
    json.dumps(out)  # JSON as it is


def test_bootstrap_in_chunks_draws_the_same_resamples(monkeypatch):
    cols = np.random.default_rng(3).random((101, 2))
    whole = decision.bootstrap_means(cols, seed=5)
    monkeypatch.setattr(decision, "CHUNK", 1000)  # a few resamples at a time
    assert np.array_equal(decision.bootstrap_means(cols, seed=5), whole)


# --- the recommendation rule -------------------------------------------------------------------

def _case(n: int, rights: dict[str, int], both: int = 0) -> Records:
    """Constructed right/wrong vectors: ``rights[m]`` images right, the first ``both`` shared by all."""
    c = np.zeros((n, len(NAMES)), dtype=bool)
    c[:both] = True
    for i, m in enumerate(NAMES):
        c[both:rights[m], i] = True
    return records(c)


def test_a_significantly_better_deep_net_is_recommended():
    rec = _case(200, {"resnet18": 100, "resnet50": 110, "resnet152": 170}, both=60)
    r = decision.build(rec, COST, seed=0, level=0.05, budget_ms=None).recommendation
    assert r["model"] == "resnet152" and "most accurate" in r["reason"]
    assert "every cheaper depth is significantly less accurate" in r["reason"]
    assert set(r["dominated"]) == set()  # each cheaper depth is less accurate: none dominated


def test_the_best_that_is_also_the_cheapest():
    rec = _case(200, {"resnet18": 170, "resnet50": 100, "resnet152": 110}, both=60)
    r = decision.build(rec, COST, seed=0, level=0.05, budget_ms=None).recommendation
    assert r["model"] == "resnet18" and r["reason"].endswith("it is also the cheapest.")
    assert set(r["dominated"]) == {"resnet50", "resnet152"}


def test_an_insignificant_difference_gives_the_cheaper_depth():
    rec = _case(200, {"resnet18": 150, "resnet50": 152, "resnet152": 154}, both=140)
    d = decision.build(rec, COST, seed=0, level=0.05, budget_ms=None)
    r = d.recommendation
    assert r["model"] == "resnet18"
    p = next(p for p in d.pairs if {p["a"], p["b"]} == {"resnet18", "resnet152"})
    assert p["mcnemar_p"] >= 0.05 and "not significantly below the best, resnet152" in r["reason"]
    assert "not significant" in decision.pair_sentence(p, d.n, 0.05)
    assert decision.pair_sentence(p, d.n, 0.05).startswith("On your 200 images resnet152 is 2.0 points more accurate "
                                                            "than resnet18")


def test_a_budget_that_excludes_the_best():
    rec = _case(200, {"resnet18": 100, "resnet50": 130, "resnet152": 170}, both=60)
    r = decision.build(rec, COST, seed=0, level=0.05, budget_ms=15).recommendation
    assert r["model"] == "resnet50" and r["budget_ms"] == 15
    assert "over the 15 ms budget" in r["reason"] and "significantly below resnet152" in r["reason"]
    r = decision.build(rec, COST, seed=0, level=0.05, budget_ms=1).recommendation
    assert r["model"] is None and "No depth runs within 1 ms" in r["reason"]


def test_under_30_images_the_sample_is_too_small():
    rec = _case(29, {"resnet18": 5, "resnet50": 10, "resnet152": 29})
    d = decision.build(rec, COST, seed=0, level=0.05, budget_ms=None)
    assert d.recommendation["model"] is None and "too small" in d.recommendation["reason"]
    assert d.accuracy["resnet152"]["n"] == 29  # the figures are still shown


def test_an_unlabelled_run_shows_agreement_and_says_what_labels_add():
    rec = records(np.zeros((0, 3), dtype=bool))
    rec.top1 = np.array([[1, 1, 2], [3, 3, 3]])
    d = decision.build(rec, COST, seed=0, level=0.05, budget_ms=None)
    out = d.to_json()
    assert out["recommendation"]["model"] is None and "No labels" in out["recommendation"]["reason"]
    assert out["error_consistency"]["kappa"] is None
    assert out["error_consistency"]["top1_agreement"][0] == [1.0, 1.0, 0.5]


# --- a real run: the CLI's decision, from its own records; a resumed run gives the same -----------

MODELS = ["resnet18", "resnet34"]


def _cli_json(capsys, *args: str) -> tuple[dict, list[dict]]:
    capsys.readouterr()
    assert cli.main(["batch", *args, "--json", "--precision", "fp32", "--batch-size", "16", "--device", "cpu"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    return lines[-1], lines[:-1]


@pytest.fixture(scope="module")
def labelled(zoo_file, tmp_path_factory) -> tuple[Path, Path]:
    """30 generated images; labels: resnet18's top-1 on 20 of them, resnet34's on the other 10."""
    root = tmp_path_factory.mktemp("decide")
    paths = write_images(root / "imgs", 30, seed=33)
    from zoo.features import batch as feature
    from zoo.features import last
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    rt = Runtime(Zoo.load(str(zoo_file)), "cpu", precision="fp32")
    res = last(feature.run(rt, feature.Request.create(rt, [root / "imgs"], MODELS)))
    by_name = {Path(img.name).name: img for img in res.images}
    csv = root / "labels.csv"
    csv.write_text("".join(f"{p.name},{by_name[p.name].top1(0 if i < 20 else 1)}\n" for i, p in enumerate(paths)))
    return root / "imgs", csv


def test_the_cli_decision_recomputes_from_its_records_and_a_resumed_run_agrees(labelled, zoo_file, tmp_path, capsys):
    folder, labels = labelled
    journal = tmp_path / "run.jsonl"
    args = [str(folder), "--labels", str(labels), "--zoo", str(zoo_file), "--models", *MODELS, "--decide",
            "--seed", "3", "--corruptions", "fog", "--severities", "1", "--out", str(journal)]
    first, recs = _cli_json(capsys, *args)
    d = first["decision"]
    assert d["n"] == 30 and set(d["models"]) == set(MODELS)
    # every figure from the per-image records alone
    rows = {m: sorted((r for r in recs if r["model"] == m), key=lambda r: r["file"]) for m in MODELS}
    right = np.array([[r["correct"] for r in rows[m]] for m in MODELS]).T
    assert right[:, 0].mean() == pytest.approx(d["models"]["resnet18"]["accuracy"]["top1"])
    assert right[:20, 0].all()  # resnet18 is right where its own answers are the labels
    a_only, b_only = int(np.sum(right[:, 0] & ~right[:, 1])), int(np.sum(~right[:, 0] & right[:, 1]))
    (pair,) = d["pairs"]
    assert (pair["a_only"], pair["b_only"]) == (a_only, b_only)
    assert pair["mcnemar_p"] == pytest.approx(binomtest(a_only, a_only + b_only, 0.5).pvalue)
    for i, m in enumerate(MODELS):
        conf = np.array([r["predictions"][0]["prob"] for r in rows[m]])
        lp = np.array([r["label_prob"] for r in rows[m]])
        cal = d["models"][m]["calibration"]
        assert cal["brier"] == pytest.approx(np.mean((conf - right[:, i]) ** 2))
        assert cal["nll"] == pytest.approx(np.mean(-np.log(np.clip(lp, 1e-12, 1))))
        cost = d["models"][m]["cost"]
        assert cost["ms_batch1"] > 0 and cost["params"] > 1e6 and cost["mode"] in ("eager", "compiled")
    assert d["recommendation"]["model"] in MODELS
    (fog,) = d["robustness"]["results"]
    assert fog["corruption"] == "fog" and fog["severity"] == 1 and fog["n"] == 30
    # --resume on the finished journal: every result from the file, the same decision
    again, _ = _cli_json(capsys, *args, "--resume")
    assert same_decision(again["decision"], d)


def same_decision(a: dict, b: dict) -> bool:
    """Two decisions equal in everything but the cost measured on the machine (and the recommendation
    that rests on it); probabilities to float32 rounding (another engine's forwards)."""
    strip = lambda d: {**d, "models": {m: {**v, "cost": None} for m, v in d["models"].items()},  # noqa: E731
                       "recommendation": {**d["recommendation"], "reason": None, "model": None, "dominated": None}}
    differences = list(_differences(strip(a), strip(b), "decision"))
    assert not differences, differences[:5]
    return True


def _differences(x, y, path: str):
    if isinstance(x, dict) and isinstance(y, dict):
        if set(x) != set(y):
            yield f"{path}: keys {sorted(set(x) ^ set(y))}"
        for k in set(x) & set(y):
            yield from _differences(x[k], y[k], f"{path}.{k}")
    elif isinstance(x, list) and isinstance(y, list):
        if len(x) != len(y):
            yield f"{path}: {len(x)} != {len(y)} items"
        for i, (u, v) in enumerate(zip(x, y)):
            yield from _differences(u, v, f"{path}[{i}]")
    elif isinstance(x, float) and isinstance(y, float):
        if not math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-5):
            yield f"{path}: {x} != {y}"
    elif x != y:
        yield f"{path}: {x!r} != {y!r}"


def test_the_estimate_prices_the_decision(zoo_file, tmp_path):
    """The decision's batch-1 timing forwards and its corrupted images are in the run's estimate."""
    from zoo.features import batch as feature
    from zoo.registry import Zoo
    from zoo.runtime import Runtime
    from zoo.robustness import corruption_seconds

    rt = Runtime(Zoo.load(str(zoo_file)), "cpu", precision="fp32")
    write_images(tmp_path / "p", 10, seed=1)
    req = lambda **kw: feature.Request.create(rt, [tmp_path / "p"], MODELS, **kw)  # noqa: E731
    assert feature.estimate(rt, req()).forwards == 10 * 2
    assert feature.estimate(rt, req(decide=True)).forwards == (10 + 6) * 2  # six timed at batch 1
    decided = feature.estimate(rt, req(decide=True, corruptions=["fog", "jpeg"], severities=[1, 3]))
    assert decided.forwards == (10 + 6 + 10 * (4 + 1)) * 2  # and the clean crops they are compared with
    from types import SimpleNamespace

    from zoo.batch import decode_seconds, gather

    for m in MODELS:
        rt.costs.timed(SimpleNamespace(model=m, seconds=0.01))
    priced = feature.estimate(rt, req(decide=True, corruptions=["fog", "jpeg"], severities=[1, 3]))
    decode_s = decode_seconds(gather([tmp_path / "p"]).items)
    assert priced.seconds == pytest.approx((10 + 6 + 50) * 2 * 0.01 + decode_s
                                           + 10 * corruption_seconds(("fog", "jpeg_compression"), (1, 3)))
    assert "corrupting the crops" in priced.basis
