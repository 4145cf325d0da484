"""Cached examples: a visitor clicking an example gets a full result without a model running.

Tests run the app as a local run does, so gradio caches each example at its first use
("lazy"): the first request computes it, every later one reads the cache. The model
runs are counted on the app's own Runtime.
"""

from __future__ import annotations

import pytest

from browser import open_page
from conftest import EXAMPLES
from rest import result


@pytest.fixture
def model_runs(app, monkeypatch) -> list[str]:
    """Every classification and compare feature run the app makes during the test, by image name."""
    from zoo.features import classify as fclassify
    from zoo.features import compare as fcompare

    _, explorer = app
    calls: list[str] = []
    run, compare = fclassify.run, fcompare.run
    monkeypatch.setattr(fclassify, "run", lambda rt, req, *a, **k: calls.append(str(req.image)) or run(rt, req, *a, **k))
    monkeypatch.setattr(fcompare, "run",
                        lambda rt, req, *a, **k: calls.append(str(req.image)) or compare(rt, req, *a, **k))
    return calls


def test_classify_example_over_rest_is_computed_once(app, model_runs):
    from zoo.inference import classify

    url, explorer = app
    first = result(url, "classify_example", [0])  # chelsea.png, at the tab's defaults
    runs = len(model_runs)
    assert runs <= 1  # 1 at first use; 0 when an earlier test already cached it
    again = result(url, "classify_example", [0])
    assert len(model_runs) == runs and again == first
    labels, _crop, _full, _raw, info, _files, state, model, method, top_k, target, cmap, alpha = first
    direct = classify(explorer.cache.get(explorer.zoo.get("resnet50")), EXAMPLES / "chelsea.png", 5)
    assert labels["label"] == direct.predictions[0].label
    assert [c["label"] for c in labels["confidences"]] == [p.label for p in direct.predictions]
    assert "cached example" in info and "resnet50" in info
    assert state is None and (model, method, top_k, target, cmap, alpha) == ("resnet50", "cam", 5, "", "jet", 0.5)


def test_compare_example_over_rest_is_computed_once(app, model_runs):
    url, _ = app
    first = result(url, "compare_example", [1])  # rocket.jpg, every depth
    runs = len(model_runs)
    assert runs <= 1
    gallery, table, text, state, method, target, cmap, alpha = result(url, "compare_example", [1])
    assert len(model_runs) == runs
    assert len(gallery) == 5 and "Maps show" in text and "cached example" in text and state is None
    assert table["headers"] == ["rank", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert len(table["data"]) == 5 and (method, target, cmap, alpha) == ("cam", "", "jet", 0.5)
    assert first[2] == text


@pytest.mark.browser
def test_browser_cached_example_shows_a_full_result_without_running_a_model(app, model_runs, shots):
    from playwright.sync_api import expect

    url, _ = app
    result(url, "classify_example", [1])  # coffee.png, cached now (as it is on a Space from the start)
    before = len(model_runs)
    with open_page(url, 1400, 1000) as page:
        page.locator("#classify-examples").get_by_role("button").nth(1).click()
        info = page.locator("#result-info")
        expect(info).to_contain_text("cached example", timeout=60_000)
        expect(info).to_contain_text("resnet50")
        expect(page.locator("#overlay-crop img")).to_be_visible(timeout=30_000)
        expect(page.locator("#overlay-full img")).to_be_visible()
        expect(page.locator("#predictions")).not_to_be_empty()
        page.screenshot(path=str(shots / "cached-example.png"), full_page=True)
        assert len(model_runs) == before, "clicking a cached example ran a model"

        # Compare depths: the cached rocket example (cached by the REST test, or now).
        result(url, "compare_example", [1])
        before = len(model_runs)
        page.get_by_role("tab", name="Compare depths").click()
        page.locator("#compare-examples").get_by_role("button").nth(1).click()
        expect(page.locator("#agreement")).to_contain_text("cached example", timeout=60_000)
        expect(page.locator("#compare-gallery img")).to_have_count(5, timeout=30_000)
        page.screenshot(path=str(shots / "cached-example-compare.png"), full_page=True)
        assert len(model_runs) == before, "clicking a cached example ran the models"
