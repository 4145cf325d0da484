"""Issue 10, items 3 and 4: nothing cut off at 1400 px, and the main flow usable on a 400 px phone.

Each check measures the page: text is cut when an element's content is wider than its box
(``scrollWidth > clientWidth``); a tab is reachable when its button is visible without
opening a menu; a map is full width when its image spans most of the viewport.
"""

from __future__ import annotations

import pytest

from browser import open_page
from conftest import EXAMPLES

CUT = "e => e.scrollWidth > e.clientWidth + 1"
TABS = ("Classify & explain", "Compare depths", "Method ranking", "Depth lab", "Batch", "Model zoo", "About")


def classify(page, expect) -> None:
    page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
    page.locator("#classify-button").click()
    expect(page.locator("#result-info")).to_contain_text("Map for", timeout=120_000)
    expect(page.locator("#overlay-crop img")).to_be_visible(timeout=30_000)


def compare(page, expect) -> None:
    page.get_by_role("tab", name="Compare depths").click()
    page.locator("#compare-image input[type=file]").set_input_files(str(EXAMPLES / "rocket.jpg"))
    page.locator("#compare-button").click()
    expect(page.locator("#agreement")).to_contain_text("Maps show", timeout=180_000)
    expect(page.locator("#compare-gallery img")).to_have_count(5, timeout=30_000)


@pytest.mark.browser
def test_nothing_is_cut_off_at_1400_px(app, shots):
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, 1400, 1000) as page:
        classify(page, expect)
        # The method box shows its whole name, and the download names are whole.
        method = page.get_by_label("Explanation method")
        assert not method.evaluate(CUT), method.input_value()
        names = page.locator("#downloads td.filename")
        expect(names).to_have_count(2)
        for i in range(2):
            assert not names.nth(i).evaluate(CUT), names.nth(i).get_attribute("aria-label")
            assert names.nth(i).inner_text().replace(" ", "").replace("\n", "").endswith((".png", ".npy"))
        # Every image label is whole, and the raw map's own title is not under a label badge.
        labels = page.locator("#overlay-crop [data-testid=block-label], #overlay-full [data-testid=block-label]")
        for i in range(2):
            assert not labels.nth(i).evaluate(CUT), labels.nth(i).inner_text()
        expect(page.locator("#raw-map [data-testid=block-label]")).to_be_hidden()
        page.screenshot(path=str(shots / "layout-1400-classify.png"), full_page=True)

        compare(page, expect)
        captions = page.locator("#compare-gallery .caption-label")
        expect(captions).to_have_count(5)
        for i in range(5):
            assert not captions.nth(i).evaluate(CUT), captions.nth(i).inner_text()
            assert "p(" in captions.nth(i).inner_text()
        # All five depth columns of the top-5 table lie inside the table's visible box.
        table = page.locator("#compare-table")
        box = table.bounding_box()
        for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
            header = table.locator("th", has_text=name).first
            hb = header.bounding_box()
            assert hb and hb["x"] + hb["width"] <= box["x"] + box["width"] + 1, (name, hb, box)
        page.screenshot(path=str(shots / "layout-1400-compare.png"), full_page=True)


@pytest.mark.browser
def test_the_main_flow_works_on_a_phone(app, shots):
    from playwright.sync_api import expect

    url, _ = app
    width = 400
    with open_page(url, width, 860) as page:
        # Every tab has a visible button: none is folded away behind "•••".
        for name in TABS:
            button = page.get_by_role("button", name=name, exact=True).or_(
                page.get_by_role("tab", name=name, exact=True)).first
            expect(button).to_be_visible()
            b = button.bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= width, (name, b)  # on the screen, not past its edge
        page.screenshot(path=str(shots / "layout-400-tabs.png"))
        page.get_by_role("button", name="About", exact=True).or_(
            page.get_by_role("tab", name="About", exact=True)).first.click()
        expect(page.get_by_text("Credits for the example photographs")).to_be_visible()
        page.get_by_role("tab", name="Classify & explain").click()

        # The examples come right after the image, before the (empty) outputs.
        examples = page.locator("#classify-examples").bounding_box()
        outputs = page.locator("#predictions").bounding_box()
        assert examples["y"] < outputs["y"], (examples, outputs)

        classify(page, expect)
        # One map per row, nearly the page's width; the raw map too (its colour bar readable).
        for sel in ("#overlay-crop img", "#overlay-full img", "#raw-map img"):
            b = page.locator(sel).bounding_box()
            assert b["width"] >= 0.75 * width, (sel, b)
        crop, full = page.locator("#overlay-crop").bounding_box(), page.locator("#overlay-full").bounding_box()
        assert full["y"] >= crop["y"] + crop["height"] - 1, "the two maps share a row"
        page.screenshot(path=str(shots / "layout-400-classify.png"), full_page=True)

        compare(page, expect)
        # One map per row in the gallery too.
        for i in range(5):
            b = page.locator("#compare-gallery img").nth(i).bounding_box()
            assert b["width"] >= 0.75 * width, (i, b)
        # The page does not scroll sideways; the table stays inside its box.
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
        expect(page.locator("#compare-table th").first).to_be_visible()
        page.screenshot(path=str(shots / "layout-400-compare.png"), full_page=True)
