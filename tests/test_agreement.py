"""Do the depths look at the same place? Map agreement, checked against scipy; ``zoo compare``; the page.

Spearman's ρ is compared with ``scipy.stats.spearmanr`` on the maps as drawn on the crop
(``render.heat_on_crop``), the top-20 % IoU with a plain numpy count.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from browser import hover_cell, open_page
from conftest import EXAMPLES, run_cli
from zoo.agreement import map_agreement, top_region
from zoo.features import compare
from zoo.render import heat_on_crop
from zoo.runtime import Runtime

MODELS = ["resnet18", "resnet34", "resnet50"]


@pytest.fixture(scope="module")
def explorer(zoo, hosted):
    return Runtime(zoo, "cpu", precision="fp32")


@pytest.fixture(scope="module")
def cmp(explorer):
    # Grad-CAM: maps with ReLU'd (tied) zeros, the case where ranks need care
    return compare.result(explorer, compare.Request.create(explorer, EXAMPLES / "chelsea.png", MODELS, "gradcam"))


def iou_top20(a: np.ndarray, b: np.ndarray) -> float:
    """The top-20 % regions counted afresh: at or above the 80th percentile, above the map's floor."""
    ta = (a >= np.quantile(a, 0.8)) & (a > a.min())
    tb = (b >= np.quantile(b, 0.8)) & (b > b.min())
    return np.count_nonzero(ta & tb) / np.count_nonzero(ta | tb)


def test_map_agreement_equals_scipy_on_the_drawn_maps(cmp):
    m = cmp.map_agreement
    assert m.models == MODELS and m.size == 224
    drawn = [heat_on_crop(r.explanation.raw, 224) for r in cmp.results]
    for i in range(3):
        assert m.spearman[i, i] == pytest.approx(1.0) and m.iou_top20[i, i] == pytest.approx(1.0)
        for j in range(3):
            ref = spearmanr(drawn[i].ravel(), drawn[j].ravel()).statistic
            assert m.spearman[i, j] == pytest.approx(ref, abs=1e-6)
            assert m.iou_top20[i, j] == pytest.approx(iou_top20(drawn[i], drawn[j]), abs=1e-9)
            assert m.spearman[i, j] == m.spearman[j, i]
    out = cmp.to_json()["map_agreement"]
    assert out["models"] == MODELS and len(out["spearman"]) == len(out["iou_top20"]) == 3
    assert out["spearman"][0][2] == pytest.approx(m.spearman[0, 2], abs=1e-4)
    json.dumps(cmp.to_json())  # all plain JSON


def test_same_reversed_and_flat_maps():
    rng = np.random.default_rng(0)
    a = rng.random((7, 7)).astype(np.float32)
    flat = np.zeros((7, 7), np.float32)
    m = map_agreement([("a", a, 224), ("same", a * 3 + 1, 224), ("reversed", -a, 224), ("flat", flat, 224),
                       ("fine", heat_on_crop(a, 224), 224)])
    assert m.pair("a", "same") == pytest.approx((1.0, 1.0))
    rho, iou = m.pair("a", "reversed")
    assert rho == pytest.approx(-1.0) and iou == 0.0
    assert m.pair("a", "fine") == pytest.approx((1.0, 1.0), abs=1e-6)  # a 224 map drawn alike is the same map
    j = m.to_json()
    assert j["spearman"][0][3] is None and j["iou_top20"][3][3] is None  # a flat map has no order
    # a map that is zero over most of the crop: its zeros are never "top"
    sparse = np.zeros((10, 10), np.float32)
    sparse[0, 0] = 1.0
    assert top_region(sparse).sum() == 1


def test_sentence_names_the_depths_and_rho(cmp):
    from ui.views import compare as views

    text = views.map_agreement_markdown(cmp)
    rho = cmp.map_agreement.spearman[0, -1]
    assert "ResNet-18 and ResNet-50" in text
    if np.isfinite(rho):
        assert f"ρ = {rho:.2f}" in text and cmp.target_label in text
    else:
        assert "cannot be compared" in text
    assert "Most alike" in text and "least alike" in text


def test_cli_compare_json_is_the_endpoints_content(zoo_file, hosted, cmp, tmp_path):
    r = run_cli("compare", str(EXAMPLES / "chelsea.png"), "--models", *MODELS, "--method", "gradcam",
                "--zoo", str(zoo_file), "--precision", "fp32", "--device", "cpu", "--json", "--npy-dir",
                str(tmp_path / "maps"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    here = cmp.to_json()
    assert set(out) == set(here) >= {"target", "agreement", "map_agreement", "models"}
    assert out["target"] == here["target"] and out["agreement"] == here["agreement"]
    assert out["map_agreement"]["models"] == MODELS
    np.testing.assert_allclose(out["map_agreement"]["spearman"], here["map_agreement"]["spearman"], atol=1e-3)
    np.testing.assert_allclose(out["map_agreement"]["iou_top20"], here["map_agreement"]["iou_top20"], atol=1e-3)
    for res in cmp.results:
        saved = np.load(tmp_path / "maps" / f"{res.run.model}-gradcam-{cmp.target}.npy")
        np.testing.assert_allclose(saved, res.explanation.raw, rtol=1e-4, atol=1e-5)
    # the table, and a clear refusal of an unknown model before any download
    r = run_cli("compare", str(EXAMPLES / "chelsea.png"), "--models", "resnet18", "resnet34", "--zoo", str(zoo_file))
    assert r.returncode == 0, r.stderr
    assert "Spearman rank correlation" in r.stdout and "IoU of the top-20 % regions" in r.stdout
    r = run_cli("compare", str(EXAMPLES / "chelsea.png"), "--models", "resnet19", "--zoo", str(zoo_file))
    assert r.returncode == 2 and "resnet19" in r.stderr


def test_compare_endpoint_has_map_agreement(client):
    from gradio_client import handle_file

    *_, details = client.predict(handle_file(str(EXAMPLES / "rocket.jpg")), api_name="/compare")
    m = details["map_agreement"]
    assert m["models"] == [r["model"] for r in details["models"]] and len(m["spearman"]) == len(m["models"])
    assert set(m) >= {"models", "spearman", "iou_top20"}


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 400])
def test_browser_map_agreement_heatmap(app, shots, width):
    from playwright.sync_api import expect

    url, explorer = app
    with open_page(url, width, 1000) as page:
        page.get_by_role("tab", name="Compare depths").click()
        page.locator("#compare-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.locator("#compare-button").click()
        expect(page.locator("#agreement")).to_contain_text("Maps show", timeout=240_000)
        sentence = page.locator("#map-agreement")
        expect(sentence).to_contain_text("ResNet-18 and ResNet-152", timeout=30_000)
        expect(sentence).to_contain_text("ρ = ")
        plot = page.locator("#map-agreement-plot .js-plotly-plot")  # Plotly: an SVG
        expect(plot).to_be_visible(timeout=30_000)
        plot.scroll_into_view_if_needed()
        b = plot.bounding_box()
        # the whole heatmap on the screen, not cut at the right edge, and big enough to read
        assert b["x"] >= 0 and b["x"] + b["width"] <= width + 1, b
        assert b["width"] >= (0.75 * width if width < 600 else 300), b
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
        assert not sentence.evaluate("e => e.scrollWidth > e.clientWidth + 1")
        # Hovering a cell names the two depths and gives both figures, as Compare computes them.
        names = [s.name for s in explorer.zoo.builtin_depths]
        req = compare.Request.create(explorer, EXAMPLES / "chelsea.png", names, "cam")
        m = compare.result(explorer, req).map_agreement.to_json()
        # The bottom-left cell: the modebar, shown on hover, sits over the top-right one.
        tip = hover_cell(page, "#map-agreement-plot", 4, 0, 5, 5)
        assert f"{m['models'][4]} and {m['models'][0]}" in tip, tip
        assert f"Spearman ρ of the maps: {m['spearman'][4][0]:.3f}" in tip, tip
        assert f"IoU of the top-20 % regions: {m['iou_top20'][4][0]:.3f}" in tip, tip
        expect(page.locator("#compare-chart-data")).to_contain_text("map-agreement")
        page.screenshot(path=str(shots / f"map-agreement-{width}.png"), full_page=True)


def test_heatmap_cells_tooltips_and_csv(tmp_path):
    """Every cell says ρ and IoU (– where undefined); long names are shortened on the axes only and
    whole in the tooltips; the CSV holds every cell."""
    import csv

    from ui.charts import csv_file, map_agreement_heatmap

    names = ["resnet18", "resnet34", "resnet50", "resnet101", "my-resnet152-finetuned"]
    rho = [[1.0 if i == j else 0.5 for j in range(5)] for i in range(5)]
    rho[0][4] = rho[4][0] = None
    iou = [[1.0 if i == j else 0.25 for j in range(5)] for i in range(5)]
    fig = map_agreement_heatmap(names, rho, iou)
    (hm,) = fig.data
    assert list(hm.x) == list(hm.y) == names and hm.text[0][1] == "ρ 0.50<br>IoU 0.25"
    assert hm.text[0][4] == "ρ –<br>IoU 0.25" and hm.z[0][4] is None
    assert fig.layout.xaxis.ticktext[-1] == "my-resnet15…" and fig.layout.xaxis.automargin
    assert "%{y} and %{x}" in hm.hovertemplate and "%{customdata:.3f}" in hm.hovertemplate
    rows = list(csv.reader(open(csv_file(fig, tmp_path), encoding="utf-8")))
    assert rows[0] == ["row", "column", "Spearman ρ", "IoU top 20 %"] and len(rows) == 26
    assert rows[5] == ["resnet18", "my-resnet152-finetuned", "", "0.25"]
    assert map_agreement_heatmap(["resnet18"], [[1.0]], [[1.0]]) is None
