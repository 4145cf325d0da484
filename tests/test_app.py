"""The app as clients use it: gradio_client on /classify and /compare, and a real browser."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from browser import open_page
from conftest import EXAMPLES


def test_classify_endpoint_matches_zoo(client, app):
    from gradio_client import handle_file

    from zoo.inference import classify

    _, explorer = app
    label, crop, full, raw, details = client.predict(
        handle_file(str(EXAMPLES / "chelsea.png")), "resnet18", 5, "cam", "", api_name="/classify")
    direct = classify(explorer.cache.get(explorer.zoo.get("resnet18")), EXAMPLES / "chelsea.png", 5)
    assert [c["label"] for c in label["confidences"]] == [p.label for p in direct.predictions]
    assert details["predictions"] == direct.to_json()["predictions"]
    assert details["target"]["index"] == direct.predictions[0].index and details["shape"] == [7, 7]
    for path in (crop, full, raw):
        assert Path(path).stat().st_size > 1000


def test_classify_with_a_named_target_and_method(client):
    from gradio_client import handle_file

    label, *_, details = client.predict(handle_file(str(EXAMPLES / "coffee.png")), "resnet34", 3, "gradcam",
                                        "tabby", api_name="/classify")
    assert len(label["confidences"]) == 3
    assert details["method"] == "gradcam" and details["target"]["label"] == "tabby"


def test_compare_endpoint(client, app):
    from gradio_client import handle_file

    from zoo.inference import classify

    _, explorer = app
    gallery, table, text, details = client.predict(handle_file(str(EXAMPLES / "rocket.jpg")), api_name="/compare")
    names = [m["model"] for m in details["models"]]
    assert names == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert len(gallery) == 5 and "Maps show" in text
    for m in details["models"]:
        direct = classify(explorer.cache.get(explorer.zoo.get(m["model"])), EXAMPLES / "rocket.jpg", 5)
        assert [p["label"] for p in m["predictions"]] == [p.label for p in direct.predictions]
        assert m["target"]["index"] == details["target"]["index"]  # one shared class for all maps
    assert explorer.cache.loads == {n: 1 for n in names} | explorer.cache.loads


def test_errors_are_messages_and_the_app_keeps_serving(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "notes.jpg"
    fake.write_bytes(b"definitely not a jpeg" * 50)
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(fake)), "resnet18", 5, "cam", "", api_name="/classify")
    with pytest.raises(AppError, match="Unknown class 'tabby kat'.*tabby"):
        client.predict(handle_file(str(EXAMPLES / "chelsea.png")), "resnet18", 5, "cam", "tabby kat",
                       api_name="/classify")
    label, *_ = client.predict(handle_file(str(EXAMPLES / "chelsea.png")), "resnet18", 5, "cam", "",
                               api_name="/classify")
    assert len(label["confidences"]) == 5


@pytest.mark.browser
def test_browser_upload_classify_and_error(app, tmp_path, shots):
    from playwright.sync_api import expect

    url, _ = app
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\x00not an image at all" * 20)
    with open_page(url, 1400, 1100) as page:
        upload = page.locator("#image-input input[type=file]")

        # A non-image: a clear message in the page.
        upload.set_input_files(str(bad))
        # Let the upload land first (its preview appears), so that the click sends the file.
        expect(page.locator("#image-input img").first).to_be_attached(timeout=30_000)
        page.locator("#classify-button").click()
        expect(page.get_by_text("is not an image").first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(shots / "browser-error.png"))

        # Then a real photo still works (same server, fresh page).
        page.reload()
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.locator("#classify-button").click()
        expect(page.locator("#result-info")).to_contain_text("Map for", timeout=120_000)
        expect(page.locator("#result-info")).to_contain_text("resnet50")
        expect(page.locator("#overlay-crop img")).to_be_visible(timeout=30_000)
        expect(page.locator("#overlay-full img")).to_be_visible()
        from zoo.inference import classify

        explorer = app[1]
        top = classify(explorer.cache.get(explorer.zoo.get("resnet50")), EXAMPLES / "chelsea.png", 1)
        expect(page.locator("#predictions")).to_contain_text(top.predictions[0].label)
        page.screenshot(path=str(shots / "browser-classify.png"), full_page=True)

        # An example: gradio hands over its cached copy, which must pass the upload check.
        page.locator("button.gallery-item").nth(1).click()  # coffee.png
        page.locator("#classify-button").click()
        expect(page.locator("#result-info")).to_contain_text("Map for", timeout=120_000)
        top = classify(explorer.cache.get(explorer.zoo.get("resnet50")), EXAMPLES / "coffee.png", 1)
        expect(page.locator("#predictions")).to_contain_text(top.predictions[0].label)

        # Compare depths: five maps and an agreement line.
        page.get_by_role("tab", name="Compare depths").click()
        page.locator("#compare-image input[type=file]").set_input_files(str(EXAMPLES / "rocket.jpg"))
        page.locator("#compare-button").click()
        expect(page.locator("#agreement")).to_contain_text("Maps show", timeout=180_000)
        expect(page.locator("#compare-gallery img")).to_have_count(5, timeout=30_000)
        page.screenshot(path=str(shots / "browser-compare.png"), full_page=True)

        # Stop frees the page at once, and the stopped run's result never lands (its text
        # would differ: it gives each model's time). All models are loaded by now.
        shown = page.locator("#agreement").inner_text()
        page.locator("#compare-method input").click()
        page.get_by_role("option", name="Grad-CAM", exact=True).click()
        page.locator("#compare-button").click()
        expect(page.get_by_text(re.compile(r"of 5\)")).first).to_be_visible(timeout=60_000)
        page.locator("#compare-stop").click()
        expect(page.get_by_text(re.compile(r"of 5\)"))).to_have_count(0, timeout=5_000)
        page.wait_for_timeout(10_000)
        # innerText: what is shown. Gradio may paint an "Error" badge when the cancel races the
        # stream's end; the page's CSS hides it (ui/app.py). The text says the run was stopped.
        assert page.locator("#agreement").inner_text().startswith("Stopped.")
        assert "Error" not in page.locator("#agreement").inner_text() and shown

        # Model zoo: the complexity table works without any download.
        page.get_by_role("tab", name="Model zoo").click()
        expect(page.locator("#zoo-table")).to_contain_text("25.56 M", timeout=60_000)
        page.screenshot(path=str(shots / "browser-zoo.png"), full_page=True)


@pytest.mark.browser
def test_browser_errors_stay_in_the_page_estimates_and_images_carried_between_tabs(app, shots):
    """Issue 10, items 1, 2 and 7: an error replaces the result (no stale maps, no badges) until the
    next run; the cost shows before running; an image goes from Classify to Compare and back."""
    from playwright.sync_api import expect

    url, _ = app
    with open_page(url, 1400, 1100) as page:
        estimate = page.locator("#classify-estimate")
        expect(estimate).to_contain_text("1 forward pass", timeout=60_000)  # CAM: the classification alone
        page.locator("#image-input input[type=file]").set_input_files(str(EXAMPLES / "chelsea.png"))
        page.locator("#classify-button").click()
        expect(page.locator("#result-info")).to_contain_text("Map for", timeout=120_000)
        expect(page.locator("#overlay-crop img")).to_be_visible()
        # After a run the estimate is in seconds, from this device's measured forward time.
        expect(estimate).to_contain_text("Estimated time on cpu", timeout=30_000)
        expect(estimate).to_contain_text("resnet50's forward measured here")

        # A made-up class: the message where the result was, every earlier output cleared.
        target = page.locator("#classify-target input")
        target.fill("tabby kat")
        target.press("Enter")
        page.locator("#classify-button").click()
        info = page.locator("#result-info")
        expect(info.locator(".rde-error")).to_contain_text("Unknown class 'tabby kat'", timeout=60_000)
        expect(page.locator("#overlay-crop img")).to_have_count(0)
        expect(page.locator("#overlay-full img")).to_have_count(0)
        expect(page.locator("#predictions")).not_to_contain_text("%")
        expect(page.get_by_text("Error", exact=True)).to_have_count(0)  # no badges over the outputs
        # A display change has nothing stale to redraw, and the message stays.
        page.get_by_text("Display and method settings").click()
        page.locator("#overlay-crop").scroll_into_view_if_needed()
        page.get_by_label("Opacity").first.fill("0.8")
        page.wait_for_timeout(3_000)
        expect(page.locator("#overlay-crop img")).to_have_count(0)
        expect(info.locator(".rde-error")).to_be_visible()
        page.screenshot(path=str(shots / "browser-error-in-page.png"), full_page=True)

        # Occlusion's cost shows before pressing anything.
        page.locator("#classify-target input").fill("")
        page.locator("#classify-target input").press("Enter")
        method = page.get_by_label("Explanation method")
        method.click()
        page.get_by_role("option", name=re.compile("^Occlusion")).click()
        expect(estimate).to_contain_text("51 forward passes")
        method.click()
        page.get_by_role("option", name=re.compile("^CAM")).click()
        expect(estimate).to_contain_text("(1 forward pass,")

        # To Compare depths with the same image: it runs there at once and says why it shows its class.
        page.locator("#classify-to-compare").click()
        expect(page.locator("#compare-button")).to_be_visible(timeout=30_000)
        expect(page.locator("#agreement")).to_contain_text("Maps show", timeout=180_000)
        expect(page.locator("#agreement")).to_contain_text(re.compile(
            "every model's first choice|the class most models put first|the tied class with the highest probability"))
        expect(page.locator("#compare-estimate")).to_contain_text("Estimated time on cpu")
        page.screenshot(path=str(shots / "browser-compare-carried.png"), full_page=True)

        # And back: Classify & explain runs on it.
        page.locator("#compare-to-classify").click()
        expect(page.locator("#result-info")).to_contain_text("Map for", timeout=120_000)
        expect(page.locator("#result-info .rde-error")).to_have_count(0)
        expect(page.locator("#overlay-crop img")).to_be_visible()
