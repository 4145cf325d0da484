"""Headless Chromium for the browser tests: Debian's package, driven by Playwright.

CI installs chromium (.ci/run), so there a missing browser is a failure; elsewhere the
browser tests are skipped with a hint.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Iterator

import pytest

# The flags the machine needs: no sandbox as root, no GPU, and no background traffic
# (the closed network refuses it, many connections at a time).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> str:
    """Chromium's path; skips the test where it is missing (fails in CI)."""
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium for the browser test")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def launch(playwright):  # -> playwright.sync_api.Browser
    """A headless Chromium with the flags above."""
    return playwright.chromium.launch(executable_path=require_chromium(), args=ARGS)


@contextlib.contextmanager
def open_page(url: str, width: int = 1400, height: int = 1100) -> Iterator:  # Iterator[playwright Page]
    """A fresh headless Chromium showing ``url`` at ``width`` x ``height``; closed afterwards."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            yield page
        finally:
            browser.close()


def hover_point(page, plot: str, point: int = 0, trace: int = 0, timeout: float = 10_000) -> str:
    """Hover over one point of a Plotly chart (``plot``: a selector around its ``gr.Plot``) and
    return the tooltip's text (Plotly's ``.hoverlayer``).

    Points are counted in the chart's first trace group by default; the mouse is moved onto the
    point's centre (Plotly listens on a drag layer above the points, so no element hover).
    """
    from playwright.sync_api import expect

    chart = page.locator(f"{plot} .js-plotly-plot")
    expect(chart).to_be_visible(timeout=timeout)
    chart.scroll_into_view_if_needed()
    target = chart.locator(".scatterlayer .trace").nth(trace).locator("path.point").nth(point)
    expect(target).to_have_count(1, timeout=timeout)
    box = target.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 20, y - 20)
    page.mouse.move(x, y, steps=4)
    layer = chart.locator(".hoverlayer")
    expect(layer).not_to_have_text("", timeout=timeout)
    # SVG: one <tspan> per tooltip line, joined here with newlines.
    return layer.evaluate("l => [...l.querySelectorAll('tspan.line')].map(t => t.textContent).join('\\n')"
                          " || l.textContent")


def hover_cell(page, plot: str, row: int, col: int, rows: int, cols: int, timeout: float = 10_000) -> str:
    """Hover over cell (``row``, ``col``) of a Plotly heatmap of ``rows`` x ``cols`` cells drawn
    top row first, and return the tooltip's text."""
    from playwright.sync_api import expect

    chart = page.locator(f"{plot} .js-plotly-plot")
    expect(chart).to_be_visible(timeout=timeout)
    chart.scroll_into_view_if_needed()
    box = chart.locator(".heatmaplayer image").first.bounding_box()  # the cells, drawn as one picture
    x, y = box["x"] + (col + 0.5) * box["width"] / cols, box["y"] + (row + 0.5) * box["height"] / rows
    page.mouse.move(x - 5, y - 5)
    page.mouse.move(x, y, steps=4)
    layer = chart.locator(".hoverlayer")
    expect(layer).not_to_have_text("", timeout=timeout)
    return layer.evaluate("l => [...l.querySelectorAll('tspan.line')].map(t => t.textContent).join('\\n')"
                          " || l.textContent")
