"""Issue 18 in the page: the Sanity check tab (strip, chart, verdicts) at 1400 px and on a 400 px phone,
its public endpoint /sanity, and Classify & explain's "Every stage" view."""

from __future__ import annotations

import re

import pytest

from browser import hover_point, open_page
from conftest import EXAMPLES

CUT = "e => e.scrollWidth > e.clientWidth + 1"


def test_sanity_endpoint(client):
    from gradio_client import handle_file

    picture, details = client.predict(handle_file(str(EXAMPLES / "chelsea.png")), "resnet18", ["gradcam", "edges"],
                                      api_name="/sanity")
    from PIL import Image

    with Image.open(picture) as im:  # two strips of 8 cells (the input and 7 maps), one under the other
        assert im.width >= 8 * 112 and im.height >= 2 * 112
    assert details["model"] == "resnet18" and details["seed"] == 0 and details["granularity"] == "stage"
    by = {m["method"]: m for m in details["methods"]}
    assert by["edges"]["passes"] is False
    assert [s["randomized"] for s in by["gradcam"]["steps"]] == ["none", "fc", "layer4", "layer3", "layer2",
                                                                 "layer1", "stem"]
    assert by["gradcam"]["steps"][0]["ssim"] == 1.0


def _pick_methods(page, keep: set[str]) -> None:
    from ui.tabs.sanity import DEFAULT_METHODS
    from zoo.explain import METHODS

    for name in set(DEFAULT_METHODS) | keep:
        page.locator("#sanity-methods").get_by_role("checkbox", name=METHODS[name].label, exact=True).set_checked(
            name in keep)


def _run_sanity(page, expect) -> None:
    page.get_by_role("tab", name="Sanity check").or_(page.get_by_role("button", name="Sanity check", exact=True)
                                                     ).first.click()
    page.locator("#sanity-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
    page.locator("#sanity-model input").click()
    page.get_by_role("option", name=re.compile(r"^resnet18 ")).click()
    _pick_methods(page, {"gradcam", "edges"})
    expect(page.locator("#sanity-estimate")).to_contain_text("7 maps per method", timeout=30_000)
    page.locator("#sanity-button").click()
    expect(page.locator("#sanity-info")).to_contain_text("Maps computed: 14 of 14", timeout=300_000)
    expect(page.locator("#sanity-info")).to_contain_text("fails, as it must")
    expect(page.locator("#sanity-strips img:visible, #sanity-strips-narrow img:visible")).to_be_visible(timeout=30_000)
    expect(page.locator("#sanity-chart")).to_be_visible()


@pytest.mark.browser
def test_sanity_tab_at_1400_px(app, shots):
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, 1400, 1100) as page:
        _run_sanity(page, expect)
        # The strips are drawn wide enough to read: each of a row's 8 cells well over 60 px on screen,
        # and the picture whole (not cropped by its box).
        img = page.locator("#sanity-strips img")
        b = img.bounding_box()
        assert b["width"] >= 8 * 60, b
        expect(page.locator("#sanity-strips-narrow")).to_be_hidden()  # the phone's picture
        assert img.evaluate("e => e.naturalWidth / e.naturalHeight") == pytest.approx(b["width"] / b["height"],
                                                                                       rel=0.02)
        verdicts = page.locator("#sanity-info li:not(li li)")  # one per method; its readings nested under it
        expect(verdicts).to_have_count(2)
        expect(page.locator("#sanity-info li li").first).to_contain_text("eMPRT")
        for i in range(2):
            assert not verdicts.nth(i).evaluate(CUT), verdicts.nth(i).inner_text()
        expect(page.locator("#sanity-chart .js-plotly-plot").first).to_be_visible(timeout=30_000)
        # Hovering the first point in the top panel: the original map (nothing randomized), identical to
        # itself; both methods have a point there, so the tooltip names either.
        tip = hover_point(page, "#sanity-chart", point=0)
        assert "Grad-CAM" in tip or "Edges" in tip, tip
        assert "randomized from the top to: none" in tip and "rank correlation of |map|: 1.000" in tip, tip
        expect(page.locator("#sanity-chart-data")).to_contain_text("sanity-resnet18")
        page.screenshot(path=str(shots / "sanity-1400.png"), full_page=True)

        # Classify & explain: every stage at once.
        page.get_by_role("tab", name="Classify & explain").click()
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.get_by_label("Explanation method").click()
        page.get_by_role("option", name="Grad-CAM", exact=True).click()
        page.get_by_text("Every stage: the method's maps").click()
        expect(page.locator("#stages-estimate")).to_contain_text("forward pass", timeout=30_000)
        page.locator("#stages-button").click()
        expect(page.locator("#stages-gallery img")).to_have_count(4, timeout=300_000)
        expect(page.locator("#stages-info")).to_contain_text("one forward and one backward for all four stages")
        for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
            expect(page.locator("#stages-gallery .caption-label").nth(i)).to_contain_text(name)
        page.locator("#stages-section").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "every-stage-1400.png"), full_page=True)


@pytest.mark.browser
def test_sanity_tab_on_a_phone(app, shots):
    from playwright.sync_api import expect

    url, _ = app
    width = 400
    with open_page(url, width, 860) as page:
        tab = page.get_by_role("button", name="Sanity check", exact=True).or_(
            page.get_by_role("tab", name="Sanity check", exact=True)).first
        expect(tab).to_be_visible()
        b = tab.bounding_box()
        assert b["x"] >= 0 and b["x"] + b["width"] <= width, b
        _run_sanity(page, expect)
        # The strips at the page's width, drawn for a phone (issue 31 item 10): four cells a row, and
        # the labels (step, r and S) at least 10 px high as shown; the wide picture is not shown.
        from ui.views.sanity import NARROW

        img = page.locator("#sanity-strips-narrow img")
        expect(img).to_be_visible(timeout=30_000)
        expect(page.locator("#sanity-strips")).to_be_hidden()
        b = img.bounding_box()
        assert b["width"] >= 0.75 * width and b["x"] + b["width"] <= width + 1, b
        assert NARROW["font_size"] * b["width"] / img.evaluate("e => e.naturalWidth") >= 10, b
        chart = page.locator("#sanity-chart").bounding_box()
        assert chart["width"] >= 0.75 * width and chart["x"] + chart["width"] <= width + 1, chart
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
        page.screenshot(path=str(shots / "sanity-400.png"), full_page=True)
