"""Issue 10, items 3 and 4, and issue 17, items 4, 9 and 10: nothing cut off at 1400 px, the main
flow usable on a 400 px phone, tables readable on both, no empty boxes before a run.

Each check measures the page: text is cut when an element's content is wider than its box
(``scrollWidth > clientWidth``); a word is broken when its letters lie on two lines (``SPLIT``);
a tab is reachable when its button is visible without opening a menu; a map is full width
when its image spans most of the viewport.
"""

from __future__ import annotations

import pytest

from browser import open_page
from conftest import EXAMPLES

CUT = "e => e.scrollWidth > e.clientWidth + 1"
# The words of a table's visible cells whose letters lie on more than one line ("m o d e l",
# "resne t18"). A hyphen or dash is a fair place to break, so it separates words here.
SPLIT = """el => {
  const out = [];
  for (const cell of el.querySelectorAll('.header-cell, .body-cell')) {
    const box = cell.getBoundingClientRect();
    if (!box.width || !box.height) continue;  // gradio's hidden sizing rows
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      for (const m of n.data.matchAll(/[^\\s\\-\u2013]+/g)) {
        const r = document.createRange();
        r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
        const lines = new Set([...r.getClientRects()].filter(q => q.width > 0).map(q => Math.round(q.top)));
        if (lines.size > 1) out.push(m[0]);
      }
    }
  }
  return out;
}"""
# Header and body cells of each column share left edge and width (gradio sizes them separately).
MISALIGNED = """el => {
  const shown = c => c.getBoundingClientRect().width > 0;
  const heads = [...el.querySelectorAll('.header-cell')].filter(shown).map(c => c.getBoundingClientRect());
  const row = el.querySelector('.virtual-row');
  const body = row ? [...row.querySelectorAll('.body-cell')].filter(shown).map(c => c.getBoundingClientRect()) : [];
  return heads.map((h, i) => [i, h.left, h.width, body[i] && body[i].left, body[i] && body[i].width])
              .filter(([, l, w, bl, bw]) => bl === undefined || Math.abs(l - bl) > 1 || Math.abs(w - bw) > 1);
}"""
# [scrollWidth, clientWidth] of a table's scrolling box.
TABLE_SCROLL = "el => { const v = el.querySelector('.virtual-table-viewport'); return [v.scrollWidth, v.clientWidth]; }"


def readable_table(locator, name: str) -> None:
    """Every visible word of the table whole, headers over their columns, no cell text cut with "…"."""
    from playwright.sync_api import expect

    expect(locator.locator(".body-cell").first).to_be_visible()
    assert locator.evaluate(SPLIT) == [], (name, locator.evaluate(SPLIT))
    assert locator.evaluate(MISALIGNED) == [], (name, locator.evaluate(MISALIGNED))
    spans = locator.locator(".header-cell span, .body-cell span")
    cut = [spans.nth(i).inner_text() for i in range(spans.count())
           if spans.nth(i).is_visible() and spans.nth(i).evaluate(CUT)]
    assert cut == [], (name, cut)


def tab(page, name: str):
    """The button of tab ``name``."""
    return page.get_by_role("tab", name=name, exact=True)


def inside(inner: dict, outer: dict, slack: float = 1) -> bool:
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


def whole_gallery(page, elem_id: str, count: int) -> None:
    """The gallery shows all ``count`` pictures and captions without scrolling inside its box."""
    gallery = page.locator(f"#{elem_id}")
    grid = gallery.locator(".grid-wrap").first
    assert not grid.evaluate("e => e.scrollHeight > e.clientHeight + 1"), grid.evaluate(
        "e => [e.scrollHeight, e.clientHeight]")
    box = grid.bounding_box()
    captions = gallery.locator(".caption-label")
    assert captions.count() == count
    for i in range(count):
        assert inside(captions.nth(i).bounding_box(), box), (elem_id, captions.nth(i).inner_text())
TABS = ("Classify & explain", "Compare depths", "Method ranking", "Sanity check", "Depth lab", "Error surfaces",
        "Robustness", "Batch", "Model zoo", "About")


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
        # Before a run: no large, empty, unlabelled boxes (the raw map, the curves).
        expect(page.locator("#predictions")).to_be_visible()
        for sel in ("#raw-map", "#downloads", "#faithfulness-plot"):
            expect(page.locator(sel)).to_be_hidden()
        page.screenshot(path=str(shots / "layout-1400-classify-empty.png"), full_page=True)
        classify(page, expect)
        expect(page.locator("#raw-map img")).to_be_visible()
        expect(page.locator("#faithfulness-plot")).to_be_hidden()  # no score asked for: nothing to show
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
        # The gallery shows all five maps and captions without scrolling inside its box, in a
        # shorter window too (gradio caps an "auto" gallery at 55% of the window's height).
        whole_gallery(page, "compare-gallery", 5)
        page.set_viewport_size({"width": 1400, "height": 800})
        whole_gallery(page, "compare-gallery", 5)
        page.set_viewport_size({"width": 1400, "height": 1000})
        # All five depth columns of the top-5 table lie inside the table's visible box.
        table = page.locator("#compare-table")
        box = table.bounding_box()
        for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
            header = table.locator("th", has_text=name).first
            hb = header.bounding_box()
            assert hb and hb["x"] + hb["width"] <= box["x"] + box["width"] + 1, (name, hb, box)
        readable_table(table, "top-5")
        scroll = table.evaluate(TABLE_SCROLL)
        assert scroll[0] <= scroll[1] + 1, scroll  # no sideways scroll at this width
        expect(page.locator("#compare-curves")).to_be_hidden()  # empty until scoring is asked for
        expect(page.locator("#compare-chart-data")).to_contain_text("map-agreement")  # the heatmap's data
        page.screenshot(path=str(shots / "layout-1400-compare.png"), full_page=True)

        # Scored, on two depths: the faithfulness table's headers are whole ("scori…" before).
        for name in ("resnet50", "resnet101", "resnet152"):
            page.locator("#compare-models label", has_text=name).click()
        page.locator("#compare-score input").check()
        page.locator("#compare-button").click()
        faith = page.locator("#compare-faithfulness")
        expect(faith).to_be_visible(timeout=180_000)
        readable_table(faith, "faithfulness")
        fb = faith.bounding_box()
        for i in range(5):
            hb = faith.locator(".header-cell").nth(i).bounding_box()
            assert hb["x"] + hb["width"] <= fb["x"] + fb["width"] + 1, (i, hb, fb)
        expect(page.locator("#compare-curves")).to_be_visible()
        page.screenshot(path=str(shots / "layout-1400-compare-scored.png"), full_page=True)


@pytest.mark.browser
def test_the_other_tabs_at_1400_px(app, shots):
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, 1400, 1000) as page:
        # Model zoo: all 13 columns in view, every word whole, no sideways scroll.
        tab(page, "Model zoo").click()
        table = page.locator("#zoo-table")
        expect(table.locator(".body-cell").first).to_be_visible(timeout=60_000)
        readable_table(table, "zoo")
        scroll = table.evaluate(TABLE_SCROLL)
        assert scroll[0] <= scroll[1] + 1, scroll
        readable_table(page.locator("#zoo-stages"), "stages")
        page.screenshot(path=str(shots / "layout-1400-zoo.png"), full_page=True)

        # Depth lab: a cost under the buttons, and no empty chart boxes before a run.
        tab(page, "Depth lab").click()
        estimate = page.locator("#lab-estimate")
        expect(estimate).to_contain_text("Signal analysis")
        expect(estimate).to_contain_text("Lesion study")
        for name in ("resnet34", "resnet50", "resnet101", "resnet152"):
            page.locator("#lab-models label", has_text=name).click()
        expect(estimate).to_contain_text("3 forward passes")  # ResNet-18 alone: one forward and one backward
        expect(page.locator("#lab-plot-response")).to_be_hidden()
        expect(page.locator("#lab-data")).to_be_hidden()
        page.screenshot(path=str(shots / "layout-1400-depth-lab-empty.png"), full_page=True)
        page.locator("#lab-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.locator("#lab-signal-button").click()
        expect(page.locator("#lab-plot-response .js-plotly-plot")).to_be_visible(timeout=120_000)
        expect(page.locator("#lab-plot-grad .js-plotly-plot")).to_be_visible()
        expect(page.locator("#lab-data")).to_be_visible()  # the charts' data, as CSV
        page.screenshot(path=str(shots / "layout-1400-depth-lab.png"), full_page=True)

        # Batch: a cost under Run that counts the picked images; the labels drop zone whole.
        tab(page, "Batch").click()
        estimate = page.locator("#batch-estimate")
        expect(estimate).to_contain_text("Pick the images")
        for sel in ("#batch-heatmap", "#batch-mattered", "#batch-downloads"):  # empty until a run
            expect(page.locator(sel)).to_be_hidden()
        zone = page.locator("#batch-labels")
        hint = zone.get_by_text("Click to Upload")
        expect(hint).to_be_visible()
        assert inside(hint.bounding_box(), zone.bounding_box()), (hint.bounding_box(), zone.bounding_box())
        assert not zone.locator("button").first.evaluate("e => e.scrollHeight > e.clientHeight + 1")
        page.locator("#batch-files input[type=file]").set_input_files(
            [str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png")])
        # two images through five depths, and each depth timed at batch 1 on them for "Which depth should I
        # ship?" (decoding them is priced too: well under one forward's worth)
        expect(estimate).to_contain_text("20 forward passes", timeout=30_000)
        expect(estimate).to_contain_text("decoding the images priced by their pixels")
        page.screenshot(path=str(shots / "layout-1400-batch.png"), full_page=True)

        # Method ranking: the gallery does not scroll inside its box; the table's headers are whole.
        tab(page, "Method ranking").click()
        page.locator("#rank-image input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        boxes = page.locator("#rank-methods label")
        expect(boxes.first).to_be_visible()
        ticked = [i for i in range(boxes.count()) if boxes.nth(i).locator("input").is_checked()]
        for i in ticked[4:]:
            boxes.nth(i).click()
        # The quick default, CAM, Grad-CAM, Saliency and the Edges baseline on ResNet-50:
        # 1 + (0 + 3 + 3 + 0) + 4 x (39 + ROAD's) scoring forwards.
        from zoo.faithfulness import road_forwards

        assert [boxes.nth(i).inner_text().split(" —")[0] for i in ticked] == [
            "CAM (global average pooling)", "Grad-CAM", "Saliency (input gradient)", "Edges (Sobel; ignores the network)"]
        expect(page.locator("#rank-estimate")).to_contain_text(f"{163 + 4 * road_forwards()} forward passes")
        page.locator("#rank-button").click()
        expect(page.locator("#rank-info")).to_contain_text("4 of 4 methods scored", timeout=240_000)
        expect(page.locator("#rank-gallery .caption-label")).to_have_count(4, timeout=30_000)
        page.set_viewport_size({"width": 1400, "height": 800})  # two rows of maps, more than 55% of it
        whole_gallery(page, "rank-gallery", 4)
        table = page.locator("#rank-table")
        readable_table(table, "rank")
        tb = table.bounding_box()
        for i in range(6):
            hb = table.locator(".header-cell").nth(i).bounding_box()
            assert hb["x"] + hb["width"] <= tb["x"] + tb["width"] + 1, (i, hb, tb)
        page.screenshot(path=str(shots / "layout-1400-rank.png"), full_page=True)


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
        # Two rows at most, and every button stays where it was whichever tab is picked.
        where = {name: tab(page, name).bounding_box() for name in TABS}
        assert len({round(b["y"]) for b in where.values()}) == 2, where
        page.screenshot(path=str(shots / "layout-400-tabs.png"))
        for name in TABS:
            tab(page, name).click()
            expect(tab(page, name)).to_have_attribute("aria-selected", "true")
            moved = {n: tab(page, n).bounding_box() for n in TABS}
            assert all(abs(moved[n]["x"] - where[n]["x"]) <= 1 and abs(moved[n]["y"] - where[n]["y"]) <= 1
                       for n in TABS), (name, where, moved)
        page.screenshot(path=str(shots / "layout-400-tabs-about.png"))
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
        # One map per row in the gallery too, each one loaded once scrolled to (they load lazily).
        for i in range(5):
            img = page.locator("#compare-gallery img").nth(i)
            b = img.bounding_box()
            assert b["width"] >= 0.75 * width, (i, b)
            img.scroll_into_view_if_needed()
            page.wait_for_function("e => e.complete && e.naturalWidth > 0", arg=img.element_handle(), timeout=10_000)
        # The page does not scroll sideways; the table scrolls inside its box, every word whole.
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
        expect(page.locator("#compare-table th").first).to_be_visible()
        readable_table(page.locator("#compare-table"), "top-5")
        page.screenshot(path=str(shots / "layout-400-compare.png"), full_page=True)

        # Model zoo: the table scrolls sideways in its box (model names pinned), no word broken.
        tab(page, "Model zoo").click()
        table = page.locator("#zoo-table")
        expect(table.locator(".body-cell").first).to_be_visible(timeout=60_000)
        readable_table(table, "zoo")
        scroll = table.evaluate(TABLE_SCROLL)
        assert scroll[0] > scroll[1], scroll
        readable_table(page.locator("#zoo-stages"), "stages")
        # The Plotly charts take the phone's width, no more (their legends go under the plot).
        for sel in ("#zoo-plot-macs", "#zoo-plot-latency"):
            chart = page.locator(f"{sel} .js-plotly-plot .main-svg").first
            expect(chart).to_be_visible(timeout=30_000)
            # Drawn while its tab was hidden, a chart first takes Plotly's default 700 px; the page
            # resizes it to its box once shown (ui/app.py). Wait for that, a DOM condition.
            page.wait_for_function("e => { const r = e.getBoundingClientRect(); const box = e.closest("
                                   "'.js-plotly-plot').getBoundingClientRect(); return Math.abs(r.width - box.width)"
                                   " <= 2 && r.right <= window.innerWidth + 1; }", arg=chart.element_handle(),
                                   timeout=10_000)
            b = chart.bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= width + 1 and b["width"] >= 0.75 * width, (sel, b)
        assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
        page.screenshot(path=str(shots / "layout-400-zoo.png"), full_page=True)
