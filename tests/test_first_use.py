"""Issue 17: what a newcomer still trips on (items 1, 2, 3, 5, 6), in the page at 1400 and 400 px.

* 1: Enter in the target box runs; a class name set at once (pasted, dropped, filled by a
  script) filters the list as typing does.
* 2: "Compare this image across depths" carries the method and the target class too.
* 3: a download name wraps only after a hyphen, its extension on the stem's last line; the
  raw map's title is whole and clear of the image's buttons (``test_raw_map_title_...``).
* 5: an error written where the result would be is scrolled into view.
* 6: the downloaded overlay follows the colormap and opacity chosen after the run.
* 11: the crop the model saw, without and with the map, in one ``gr.ImageSlider``.
"""

from __future__ import annotations

import hashlib
import re
import urllib.request

import numpy as np
import pytest

from browser import open_page
from conftest import EXAMPLES

CUT = "e => e.scrollWidth > e.clientWidth + 1"
# The bottoms of the rendered lines of an element's text, top to bottom.
LINES = """e => { const r = document.createRange(); r.selectNodeContents(e);
  return [...new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.bottom)))]
    .sort((a, b) => a - b); }"""


def pick(page, label: str, option) -> None:
    page.get_by_label(label).first.click()
    page.get_by_role("option", name=option).first.click()


def in_view(page, locator) -> bool:
    box = locator.bounding_box()
    height = page.viewport_size["height"]
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height


def download(page) -> tuple[str, str]:
    """The overlay PNG's address and a digest of its bytes."""
    href = page.locator("#downloads a").first.get_attribute("href")
    with urllib.request.urlopen(href, timeout=30) as r:
        return href, hashlib.sha256(r.read()).hexdigest()


def names_whole(page) -> None:
    """Each download name: at most two lines, the extension on the stem's last line, nothing cut."""
    names = page.locator("#downloads td.filename")
    assert names.count() == 2
    for i in range(2):
        name = names.nth(i)
        stem, ext = name.locator(".stem").evaluate(LINES), name.locator(".ext").evaluate(LINES)
        assert ext == stem[-1:] and len(stem) <= 2, (name.get_attribute("aria-label"), stem, ext)
        assert not name.evaluate(CUT), name.get_attribute("aria-label")


def run_by_enter(page, expect, method: str, target: str) -> None:
    """A cheap run of Classify & explain (resnet18), started with Enter in the target box."""
    page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
    pick(page, "Model", re.compile("^resnet18 "))
    pick(page, "Explanation method", method)
    box = page.locator("#classify-target input")
    box.click()
    box.type(target)
    box.press("Enter")  # no click on the button
    expect(page.locator("#result-info")).to_contain_text(f"Map for {target}", timeout=180_000)
    expect(page.locator("#overlay-crop img")).to_be_visible(timeout=30_000)


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 400])
def test_enter_runs_pasted_classes_filter_downloads_follow_the_display_errors_come_into_view(app, shots, width):
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, width, 900) as page:
        # 1: a value set at once (as a paste does: no key pressed) filters the list.
        page.wait_for_function("window.rdePageJs === true")  # the page's script runs once it has loaded
        box = page.locator("#classify-target input")
        box.fill("tabby")
        expect(page.get_by_role("option", name="281: tabby")).to_be_visible()
        expect(page.get_by_role("option", name="0: tench")).to_have_count(0)  # the whole list is gone
        assert page.get_by_role("option").count() < 10
        box.press("Escape")
        box.fill("")

        # 1: Enter runs; Saliency is one pass on the input (a map at full resolution).
        run_by_enter(page, expect, "Saliency (input gradient)", "tabby")
        names_whole(page)  # 3
        # 11: the crop without and with the map, in one slider as wide as the maps.
        pictures = page.locator("#crop-slider img")
        expect(pictures).to_have_count(2)
        slider = page.locator("#crop-slider").bounding_box()
        assert slider["width"] >= (0.75 * width if width < 640 else 0.45 * 1400 * 2 / 3), slider
        overlay_src = pictures.nth(1).get_attribute("src")
        page.screenshot(path=str(shots / f"first-use-{width}-run.png"), full_page=True)

        # 6: the download follows a colormap and an opacity chosen afterwards.
        first = download(page)
        page.get_by_text("Display and method settings").click()
        pick(page, "Colormap", "viridis")
        expect(page.locator("#downloads a").first).not_to_have_attribute("href", first[0], timeout=30_000)
        recoloured = download(page)
        assert recoloured[1] != first[1]
        assert page.locator("#crop-slider img").nth(1).get_attribute("src") != overlay_src  # the slider too
        page.get_by_label("Opacity").first.fill("0.9")
        expect(page.locator("#downloads a").first).not_to_have_attribute("href", recoloured[0], timeout=30_000)
        assert download(page)[1] not in (first[1], recoloured[1])
        names_whole(page)

        # 5: an error while the result column is off screen (scrolled to the bottom on the desktop;
        # below the settings on a phone) is brought into view.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        box = page.locator("#classify-target input")
        box.fill("tabby kat")
        box.press("Enter")
        error = page.locator("#result-info .rde-error")
        expect(error).to_contain_text("Unknown class 'tabby kat'", timeout=60_000)
        page.wait_for_timeout(500)
        assert in_view(page, error), (error.bounding_box(), page.evaluate("window.scrollY"))
        page.screenshot(path=str(shots / f"first-use-{width}-error.png"))


@pytest.mark.browser
def test_compare_takes_the_method_and_the_target_along(app, shots):
    """2: the image, the method and the class go to Compare depths, and back."""
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, 1400, 900) as page:
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        pick(page, "Explanation method", "Grad-CAM")
        box = page.locator("#classify-target input")
        box.fill("tabby")
        page.get_by_role("option", name="281: tabby").click()
        page.locator("#classify-to-compare").click()
        expect(page.locator("#compare-button")).to_be_visible(timeout=30_000)
        expect(page.locator("#compare-method input")).to_have_value("Grad-CAM")
        expect(page.locator("#compare-target input")).to_have_value("281: tabby")
        # It runs there at once, with them (a stopped run would leave work in flight at exit).
        expect(page.locator("#agreement")).to_contain_text("Maps show **tabby**".replace("**", ""), timeout=240_000)
        # And back, after a change here.
        page.locator("#compare-method input").click()
        page.get_by_role("option", name="Layer-CAM", exact=True).click()
        page.locator("#compare-to-classify").click()
        expect(page.locator("#classify-button")).to_be_visible(timeout=30_000)
        expect(page.get_by_label("Explanation method")).to_have_value("Layer-CAM")
        expect(page.locator("#classify-target input")).to_have_value("281: tabby")
        expect(page.locator("#result-info")).to_contain_text("Map for tabby", timeout=180_000)
        expect(page.locator("#result-info")).to_contain_text("Layer-CAM")


def test_raw_map_title_fits_left_of_the_image_buttons():
    """3: the title of the raw map (two short lines) ends well left of the picture's top-right
    corner, where gradio puts the image's buttons, and is never cut by the picture's edge."""
    from zoo.render import raw_figure

    raw = np.random.default_rng(0).normal(size=(224, 224)).astype(np.float32)
    fig = raw_figure(raw, "jet", None, "Raw map 224x224\nresnet152 · integrated-gradients")
    blank = raw_figure(raw, "jet", None, " \n ")  # the same picture without the title's text
    assert fig.shape == blank.shape
    title = (fig != blank).any(axis=2)
    cols, rows = np.flatnonzero(title.any(axis=0)), np.flatnonzero(title.any(axis=1))
    # gradio's buttons cover about the right fifth of the picture as shown; the title ends left of it.
    assert cols.size and cols.max() < 0.7 * fig.shape[1], (cols.max(), fig.shape)
    assert rows.max() - rows.min() > 20  # two lines
    # ... above the map: nothing of the map is drawn over.
    assert rows.max() < np.flatnonzero((blank[:, 10:20] != 255).any(axis=(1, 2))).min()


def test_a_first_use_says_what_it_does_before_the_download(zoo, hub, cold_cache, monkeypatch):
    """Issue 31 item 6: a model's first use shows a message at once, while its estimate, its turn
    or the Hub's first answer are still pending, and every message is one the page shows.

    Gradio 6's status tracker shows a step's text only beside a level (``progress`` not None);
    without one the page shows "processing" and a timer. The estimate and the Hub are held
    here (events, not time): each message must have arrived while they were held.
    """
    import threading
    import time

    from gradio_client import Client, handle_file
    from gradio_client.utils import Status

    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu", precision="fp32")
    estimating, estimate_free = threading.Event(), threading.Event()
    from zoo.features import classify as feature

    estimate = feature.estimate

    def held_estimate(*args, **kwargs):
        estimating.set()
        estimate_free.wait(120)
        return estimate(*args, **kwargs)

    monkeypatch.setattr(feature, "estimate", held_estimate)
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))

    def shown(job, until) -> str:
        """The text of the job's latest progress once ``until(text)``; each one must be visible."""
        for _ in range(1200):
            s = job.status()
            if s.code == Status.PROGRESS and s.progress_data:
                unit = s.progress_data[-1]
                assert unit.progress is not None, unit  # else the page would not show its text
                if until(unit.desc or ""):
                    return unit.desc
            assert not job.done(), job.result()
            time.sleep(0.05)
        raise AssertionError(f"no such message; the last: {job.status()}")

    try:
        hub.answering.clear()
        hub.clear_log()
        job = Client(url.rstrip("/"), verbose=False).submit(handle_file(str(EXAMPLES / "chelsea.png")), "resnet18",
                                                             5, "cam", "", api_name="/classify")
        assert estimating.wait(120)
        # While its estimate is held: a message already.
        assert shown(job, lambda text: "checking its cost" in text)
        estimate_free.set()
        # While the Hub has not answered: the model's weights named.
        text = shown(job, lambda text: "resnet18" in text)
        assert text.startswith(("Preparing resnet18", "Downloading resnet18")), text
        hub.answering.set()
        labels = job.result(timeout=300)[0]
        assert labels["confidences"], labels
        assert any("/resolve/" in path for _, path in hub.requests)  # it was a download
    finally:
        estimate_free.set()
        hub.answering.set()
        demo.close()
