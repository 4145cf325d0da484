"""The Model zoo tab in a browser at other resolutions, its Download button and self-check; About.

The browser test checks that every column is in view at 1400 px, that a download refreshes the
cached column without timing any model again, and that bold text keeps the page's font. The
table, notes and charts themselves are unit-tested in test_views_zoo_table.py.
"""

from __future__ import annotations

import pytest

from browser import hover_point, open_page
from zoo.stats import Latency, zoo_row


@pytest.mark.browser
def test_browser_zoo_tab_columns_resolution_download_and_about(app, shots, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    import zoo.stats

    timed = []

    def fake_latency(arch, device, resolution=224, **kw):  # timing for real takes ~20 s on 2 cores
        timed.append((arch, resolution))
        return Latency(str(device), 1, 12.5, 12.0, 13.0, 80.0, 1)

    monkeypatch.setattr(zoo.stats, "measure_latency", fake_latency)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached: the column must change
    url, explorer = app
    with open_page(url, 1400, 1000) as page:
        page.get_by_role("tab", name="Model zoo").click()
        table = page.locator("#zoo-table")
        expect(table).to_contain_text("25.56 M", timeout=60_000)

        # Every column in view at 1400 px: no header reaches past the table, nothing scrolls sideways.
        overflow = table.evaluate("""t => {
            const box = t.getBoundingClientRect();
            const heads = [...t.querySelectorAll('th')].filter(h => h.innerText.trim());
            const cut = heads.filter(h => h.getBoundingClientRect().right > box.right + 1).map(h => h.innerText);
            const scrolls = [...t.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 2
                && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)).length;
            return {n: heads.length, cut, scrolls};
        }""")
        assert overflow["n"] >= 13 and overflow["cut"] == [] and overflow["scrolls"] == 0, overflow
        for header in ("latency ms", "cached"):
            expect(table.locator("th", has_text=header).first).to_be_in_viewport()
        page.screenshot(path=str(shots / "zoo-1400.png"), full_page=True)

        # 448 px: the table, the note and the plots say so.
        page.get_by_label("Input resolution").click()
        page.get_by_role("option", name="448").click()
        expect(page.locator("#zoo-resolution-note")).to_contain_text("448×448", timeout=60_000)
        expect(table).to_contain_text("GMACs at 448 px")
        expect(table).to_contain_text("(≈ 7.2 at 448)")
        # The accuracy chart: hovering ResNet-18's point names it and gives its cost and top-1.
        r18 = zoo_row(explorer.zoo.get("resnet18"), 448)
        expect(page.locator("#zoo-plot-macs .xtitle")).to_contain_text("448×448")
        tip = hover_point(page, "#zoo-plot-macs", trace=1)
        assert "ResNet-18" in tip and f"{r18.macs / 1e9:.2f} G" in tip and f"{r18.top1:.2f} %" in tip, tip
        expect(page.locator("#zoo-chart-data")).to_contain_text("zoo-top1-vs-macs")
        page.screenshot(path=str(shots / "zoo-448.png"), full_page=True)

        # Before timing anything, the page says what it costs (65 forwards: 13 per model).
        expect(page.locator("#zoo-latency-estimate")).to_contain_text("65 forward passes")
        # Latency once (5 models), then a download refreshes 'cached' and keeps the latency, timing nothing.
        page.locator("#zoo-latency input[type=checkbox]").check()
        expect(table).to_contain_text("12.5 (12.0–13.0)", timeout=60_000)
        assert sorted(timed) == sorted((a, 448) for a in ("resnet18", "resnet34", "resnet50", "resnet101",
                                                          "resnet152"))
        row = table.get_by_role("row").filter(has_text="resnet18").first
        expect(row).to_contain_text("no")
        page.locator("#zoo-download-models").get_by_label("resnet18", exact=True).check()
        page.locator("#zoo-download").click()
        expect(page.locator("#zoo-download-result")).to_contain_text("resnet18:", timeout=60_000)
        expect(row).to_contain_text("yes", timeout=30_000)
        expect(row).to_contain_text("12.5 (12.0–13.0)")
        assert len(timed) == 5, "the download timed the models again"
        page.screenshot(path=str(shots / "zoo-after-download.png"), full_page=True)

        # Self-check (zoo/selfcheck.py): ResNet-18 alone, its cost before the click, then the verdict on the
        # session's random weights, named.
        checks = page.locator("#selfcheck-models")
        for name in ("resnet34", "resnet50", "resnet101", "resnet152"):
            checks.get_by_label(name, exact=True).uncheck()
        expect(page.locator("#selfcheck-estimate")).to_contain_text("6 forward passes")
        page.locator("#selfcheck-run").click()
        result = page.locator("#selfcheck-result")
        expect(result).to_contain_text("0 of 1 models pass; resnet18 fails", timeout=120_000)
        expect(result).to_contain_text("under the wrong keys")
        page.screenshot(path=str(shots / "zoo-selfcheck.png"), full_page=True)

        # About: the credits are in the page, and bold text keeps the page's own font.
        page.get_by_role("tab", name="About").click()
        page.get_by_text("Credits for the example photographs").click()
        expect(page.locator("#credits")).to_contain_text("Stefan van der Walt")
        cdp = page.context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
        strong = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "#about-text strong"})["nodeId"]
        fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": strong})["fonts"]
        assert fonts and all(f["isCustomFont"] for f in fonts), fonts  # the web font, no system fallback
        page.screenshot(path=str(shots / "about.png"), full_page=True)
