"""Issue 34, item 4: evidence transfer between depths (zoo.transfer). Two cells recomputed with
zoo.faithfulness called directly; the diagonal reused from the comparison's own scores; the price.

Kept small: ResNet-18 and ResNet-34, Grad-CAM, fp32; ROAD once.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import EXAMPLES
from zoo.explain import explain
from zoo.faithfulness import STEPS, faithfulness, road_forwards
from zoo.images import load_image
from zoo.inference import classify
from zoo.models import load_model
from zoo.runtime import Runtime
from zoo.transfer import Depth, evidence_transfer, scorings, with_transfer

MODELS = ("resnet18", "resnet34")
PCT = (50,)  # one ROAD percentile: its sparse solves dominate a CPU's time


@pytest.fixture(scope="module")
def depths(zoo, hosted):
    """What a comparison holds per depth: its model, its classification and its Grad-CAM map, one class."""
    image = load_image(EXAMPLES / "chelsea.png")
    out, target = [], None
    for name in MODELS:
        lm = load_model(zoo.get(name), "cpu", precision="fp32")
        run = classify(lm, image)
        target = run.predictions[0].index if target is None else target
        out.append(Depth(name, lm, run, explain(lm, run, "gradcam", target).raw))
    return out, target


@pytest.fixture(scope="module")
def transfer(depths):
    ds, target = depths
    return evidence_transfer(ds, target)


def test_two_cells_equal_faithfulness_called_directly(depths, transfer):
    ds, target = depths
    for i, j in ((0, 1), (1, 0)):
        own = faithfulness(ds[j].model, ds[j].run, ds[j].raw, target, road_percentiles=None).deletion_auc
        theirs = faithfulness(ds[j].model, ds[j].run, ds[i].raw, target, road_percentiles=None).deletion_auc
        assert transfer.deletion_auc[i, j] == pytest.approx(theirs, abs=1e-6)
        assert transfer.deletion[i, j] == pytest.approx(theirs / own, abs=1e-6)
    assert np.allclose(np.diag(transfer.deletion), 1.0)
    assert transfer.forwards == 4 * (2 * STEPS - 1) and transfer.road is None


def test_json_and_reading(transfer):
    out = transfer.to_json()
    assert out["models"] == list(MODELS) and out["road"] is None
    assert out["deletion"][0][0] == 1.0 and out["deletion"][0][1] == round(float(transfer.deletion[0, 1]), 4)
    r = float(transfer.deletion[0, 1]) if abs(np.log(transfer.deletion[0, 1])) >= abs(np.log(transfer.deletion[1, 0])) \
        else float(transfer.deletion[1, 0])
    assert f"({r:.2f})" in out["reading"] and ("more slowly" in out["reading"] or "faster" in out["reading"])


def test_road_reuses_the_comparisons_own_scores(depths):
    ds, target = depths
    own = [faithfulness(d.model, d.run, d.raw, target, road_percentiles=PCT) for d in ds]  # compare's own scores
    t = evidence_transfer(ds, target, road=True, own=own, road_percentiles=PCT)
    assert t.forwards == 2 * (2 * STEPS - 1 + road_forwards(PCT))  # only the two off-diagonal cells ran
    direct = faithfulness(ds[0].model, ds[0].run, ds[1].raw, target, road_percentiles=PCT)
    assert t.road_morf[1, 0] == pytest.approx(float(np.mean(direct.road.morf)), abs=1e-6)
    assert t.road[1, 0] == pytest.approx(float(np.mean(direct.road.morf) / np.mean(own[0].road.morf)), abs=1e-6)
    assert t.to_json()["road"][0][0] == 1.0


def test_price_adds_every_scoring(zoo):
    rt = Runtime(zoo, "cpu", precision="fp32")
    from zoo.features import compare

    base = compare.estimate(rt, compare.Request.create(rt, None, list(MODELS), "gradcam"))  # a comparison's
    est = with_transfer(rt, base, list(MODELS))
    assert est.forwards == base.forwards + 2 * scorings(2) * (2 * STEPS - 1) and scorings(2) == 2
    scored = with_transfer(rt, base, list(MODELS), road=True, own_scored=True)
    assert scored.forwards == base.forwards + 2 * 1 * (2 * STEPS - 1 + road_forwards())


def test_compare_transfer_json_equals_evidence_transfer_called_directly(depths, transfer, zoo_file):
    """``zoo compare --transfer --json``: ``map_agreement.transfer`` is the matrix ``evidence_transfer``
    gives on the same models, maps and class (the comparison builds it from the models it holds)."""
    import json

    from conftest import run_cli
    from zoo.commands.compare import transfer_text

    ds, target = depths
    r = run_cli("compare", str(EXAMPLES / "chelsea.png"), "--models", *MODELS, "--method", "gradcam", "--target",
                str(target), "--transfer", "--json", "--device", "cpu", "--precision", "fp32", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["map_agreement"]["transfer"]
    want = transfer.to_json()
    assert got["models"] == list(MODELS) and got["target"] == target and got["road"] is None
    assert got["deletion_auc"][0][1] == pytest.approx(want["deletion_auc"][0][1], abs=2e-4)
    assert got["deletion"][0][1] == pytest.approx(want["deletion"][0][1], abs=2e-3)
    assert got["deletion"][0][0] == 1.0 and got["reading"].startswith("Across the 2 ordered pairs")
    text = transfer_text(transfer)
    assert transfer.sentence() in text and f"{transfer.deletion[0, 1]:.2f}" in text


def test_compare_prices_the_transfer_and_refuses_one_depth(zoo, hub):
    from zoo.errors import ZooError
    from zoo.features import compare

    rt = Runtime(zoo, "cpu")
    plain = compare.Request.create(rt, None, list(MODELS), "gradcam")
    moved = compare.Request.create(rt, None, list(MODELS), "gradcam", transfer=True)
    base = compare.estimate(rt, plain)
    assert compare.estimate(rt, moved).forwards == with_transfer(rt, base, list(MODELS)).forwards
    scored = compare.Request.create(rt, None, list(MODELS), "gradcam", faithfulness=True, transfer=True)
    assert compare.estimate(rt, scored).forwards == with_transfer(
        rt, compare.estimate(rt, compare.Request.create(rt, None, list(MODELS), "gradcam", faithfulness=True)),
        list(MODELS), road=True, own_scored=True).forwards
    with pytest.raises(ZooError, match="at least two"):
        compare.Request.create(rt, None, ["resnet18"], "gradcam", transfer=True)
    assert not hub.requests
