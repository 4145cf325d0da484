"""Issue 19, the Robustness tab: its endpoints as an anonymous visitor calls them (raw HTTP), Stop in the
middle of a sweep, the server's limit, and the tab in a browser at 1400 and 400 px.

References are independent of the app: plain torchvision (fp32, BatchNorm unfolded) on the very crop
the endpoint returns, counts made here from the JSON lines, breaking points found here from the top-1s.
ResNet-18 and a few corruptions only, on small generated images, to stay fast.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from browser import open_page
from conftest import plain_model
from rest import call, upload, upload_many
from zoo.limits import Limits
from zoo.models import imagenet_labels

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the built-ins' (torchvision's) normalisation
FEW = ["contrast", "jpeg_compression"]  # deterministic and cheap: a few ms per crop


def picture(path: Path, seed: int, size: tuple[int, int] = (120, 96)) -> Path:
    """A small picture: a disc and stripes in random colours."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    d = ImageDraw.Draw(img)
    c2 = tuple(int(v) for v in rng.integers(0, 256, 3))
    d.ellipse([w // 5, h // 5, 4 * w // 5, 4 * h // 5], fill=c2)
    for x in range(0, w, 9):
        d.rectangle([x, 0, x + 2, h // 3], fill=c2[::-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def probs_on(net, crop: Image.Image) -> np.ndarray:
    """Plain torchvision's softmax on a crop that is already the model's 224 x 224 input."""
    x = torch.from_numpy(np.asarray(crop.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        return torch.softmax(net(x.unsqueeze(0))[0], 0).numpy()


@pytest.fixture(scope="module")
def served(zoo, hosted):
    """An app of its own, fp32, no ceiling (a local app); its gate is visible to the tests."""
    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    demo = build_app(Runtime(zoo, "cpu", precision="fp32"))
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    yield url.rstrip("/"), demo
    demo.close()


@pytest.fixture(scope="module")
def resnet18(hosted):
    return plain_model("resnet18", hosted)


def fetch(url: str, payload: dict) -> bytes:
    r = httpx.get(payload["url"], timeout=30)
    r.raise_for_status()
    return r.content


def test_live_endpoint_shows_the_crop_the_model_saw(served, resnet18, tmp_path):
    url, _ = served
    image = upload(url, picture(tmp_path / "a.png", 1))
    crop_file, out = call(url, "robustness_live", [image, ["resnet18"], "fog", 2, "cam"])[1]
    crop = Image.open(io.BytesIO(fetch(url, crop_file)))
    assert crop.size == (224, 224) and crop.format == "PNG"  # lossless: exactly what the model saw
    assert out["corruption"] == "fog" and out["severity"] == 2 and out["method"] == "cam"
    (model,) = out["models"]
    p = probs_on(resnet18, crop)
    top = [pred["index"] for pred in model["predictions"]]
    assert top == np.argsort(-p)[:5].tolist()
    np.testing.assert_allclose([pred["prob"] for pred in model["predictions"]], np.sort(p)[::-1][:5], atol=1e-4)
    assert model["target_prob"] == pytest.approx(float(p[out["target"]["index"]]), abs=1e-4)

    # Severity 0 is the clean crop; a seeded corruption reproduces exactly at the same seed.
    clean_file, clean = call(url, "robustness_live", [image, ["resnet18"], "fog", 0, "none"])[1]
    assert clean["method"] is None and "target_prob" in clean["models"][0]
    again = call(url, "robustness_live", [image, ["resnet18"], "fog", 2, "none"])[1][0]
    assert fetch(url, again) == fetch(url, crop_file)
    assert fetch(url, clean_file) != fetch(url, crop_file)

    # Settings the server refuses, with a message that says what to do.
    event, message = call(url, "robustness_live", [image, ["resnet18"], "haze", 2, "cam"])
    assert event == "error" and "fog" in message, message
    event, message = call(url, "robustness_live", [image, ["resnet18"], "fog", 7, "cam"])
    assert event == "error"


def test_sweep_endpoint_agrees_with_torchvision_the_live_view_and_its_own_csv(served, resnet18, tmp_path):
    url, _ = served
    image = upload(url, picture(tmp_path / "b.png", 2))
    out, csv_file = call(url, "robustness_sweep", [image, ["resnet18"], FEW])[1]
    assert [c["name"] for c in out["corruptions"]] == FEW and out["severities"] == [1, 2, 3, 4, 5]
    assert not out["partial"] and out["done"] == out["total"] == 10
    top1, clean = out["top1"]["resnet18"], out["clean"]["resnet18"]
    # The breaking point, found here from the top-1s: the lowest severity whose top-1 is not the clean one.
    for name in FEW:
        flips = [s for s, t in zip(out["severities"], top1[name]) if t != clean["top1"]]
        assert out["breaking_point"]["resnet18"][name] == (flips[0] if flips else None)
    # Each cell is what plain torchvision says on the crop the live view shows for the same setting.
    for name, severity in (("contrast", 3), ("jpeg_compression", 5)):
        crop_file, live = call(url, "robustness_live", [image, ["resnet18"], name, severity, "none"])[1]
        p = probs_on(resnet18, Image.open(io.BytesIO(fetch(url, crop_file))))
        assert top1[name][severity - 1] == int(np.argmax(p)) == live["models"][0]["predictions"][0]["index"]
        assert out["target_prob"]["resnet18"][name][severity - 1] == pytest.approx(
            float(p[out["target"]["index"]]), abs=1e-4)
    # The CSV holds every cell of the JSON, and the clean crop.
    rows = list(csv.DictReader(io.StringIO(httpx.get(csv_file["url"], timeout=30).text)))
    assert len(rows) == 1 + 10
    for row in rows[1:]:
        s = int(row["severity"])
        assert int(row["top1_index"]) == top1[row["corruption"]][s - 1]
        assert float(row["target_prob"]) == pytest.approx(out["target_prob"]["resnet18"][row["corruption"]][s - 1],
                                                           abs=1e-5)


def test_folder_endpoint_counts_equal_its_own_lines(served, tmp_path):
    url, _ = served
    labels = imagenet_labels()
    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, folder in enumerate(["tabby", "tabby", "n01440764"]):
            zf.write(picture(tmp_path / f"z{i}.png", 10 + i, (80, 80)), f"{folder}/z{i}.png")
    event, out = call(url, "robustness", [upload_many(url, [archive]), ["resnet18"], ["contrast"]])
    assert event == "complete", out
    folder_json, lines_file = out
    summary = folder_json["summary"]  # {"summary": ...}: the command line's last --json line
    assert summary["images"] == 3 and summary["labelled"] == 3 and summary["reference"] == "resnet18"
    lines = [json.loads(line) for line in httpx.get(lines_file["url"], timeout=30).text.splitlines()]
    records, tail = lines[:-1], lines[-1]
    assert tail == {"summary": summary} and len(records) == 3 * (1 + 5)  # clean + five severities per image
    assert {r["label"] for r in records} == {labels[281], labels[0]}
    for s in range(1, 6):
        cell = [r for r in records if r["corruption"] == "contrast" and r["severity"] == s]
        right = sum(r["predictions"][0]["index"] == r["label_index"] for r in cell)
        assert summary["accuracy"]["resnet18"]["contrast"][str(s)] == pytest.approx(right / 3)
    clean = [r for r in records if r["severity"] == 0]
    assert summary["clean_accuracy"]["resnet18"] == pytest.approx(
        sum(r["predictions"][0]["index"] == r["label_index"] for r in clean) / 3)
    assert summary["mce"]["resnet18"] in (1.0, None)  # the reference against itself (None: it made no error)


def _fn_index(url: str, api: str) -> int:
    config = httpx.get(f"{url}/config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api)


def _cpu_seconds(window: float) -> float:
    t0 = time.process_time()
    time.sleep(window)
    return time.process_time() - t0


def test_stop_ends_a_sweep_between_batches(served, tmp_path):
    """Stop over REST (what the page's Stop sends) after the first partial result: the work ends, the slot frees."""
    url, demo = served
    gate = demo.rde_context.guard.gate
    image = upload(url, picture(tmp_path / "c.png", 3))
    r = httpx.post(f"{url}/gradio_api/call/robustness_sweep", json={"data": [image, ["resnet18"], []]}, timeout=60)
    event_id = r.json()["event_id"]
    partial: list[dict] = []
    seen = threading.Event()

    def read() -> None:
        event = ""
        with httpx.stream("GET", f"{url}/gradio_api/call/robustness_sweep/{event_id}", timeout=300) as s:
            for line in s.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "generating":
                    data = json.loads(line.split(":", 1)[1])
                    if isinstance(data, list) and isinstance(data[0], dict) and data[0].get("partial") \
                            and data[0]["done"] > 0:  # a corruption scored (the first partial: the clean crop)
                        partial.append(data[0])
                        seen.set()
                elif event in ("complete", "error"):
                    partial.append({"ended": event})
                    seen.set()
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen.wait(300), "no partial result within 300 s"
    first = partial[0]
    assert "ended" not in first and 0 < first["done"] < first["total"] == 95, first
    httpx.post(f"{url}/gradio_api/cancel", json={"session_hash": event_id, "event_id": event_id,
                                                 "fn_index": _fn_index(url, "robustness_sweep")}, timeout=120)
    # /cancel answers once the handler has ended: the slot is free and the CPU idle.
    end = time.monotonic() + 60
    while gate.running != {"quick": 0, "long": 0}:
        assert time.monotonic() < end, gate.running
        time.sleep(0.1)
    assert _cpu_seconds(2.0) < 1.0
    reader.join(30)
    assert not any(p.get("partial") is False for p in partial)  # no finished sweep came back


@pytest.fixture(scope="module")
def strict(zoo, hosted):
    """An app with a small ceiling per request (5 s), as a public deployment has one."""
    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    demo = build_app(Runtime(zoo, "cpu", precision="fp32"), limits=Limits(max_request_seconds=5))
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    yield url.rstrip("/")
    demo.close()


def test_a_run_over_the_limit_is_refused_with_the_limit(strict, tmp_path):
    files = upload_many(strict, [picture(tmp_path / f"d{i}.png", 20 + i) for i in range(3)])
    # Every depth, every corruption and severity on three images: 1440 forwards, far over 5 s anywhere.
    event, message = call(strict, "robustness", [files, [], []], timeout=60)
    assert event == "error" and "this server allows 5 s per request" in message and "1440 forward passes" in message
    event, message = call(strict, "robustness_sweep", [files[0], [], []], timeout=60)
    assert event == "error" and "this server allows 5 s per request" in message


@pytest.mark.browser
def test_browser_robustness_tab_at_1400_and_400_px(served, shots, tmp_path):
    from playwright.sync_api import expect

    url, _ = served
    path = picture(tmp_path / "e.png", 4, (160, 120))
    with open_page(url, 1400, 1100) as page:
        page.get_by_role("tab", name="Robustness", exact=True).click()
        expect(page.locator("#robust-sweep-estimate")).to_contain_text("forward passes", timeout=60_000)
        for sel in ("#robust-heatmap", "#robust-lines", "#robust-crop", "#robust-gallery"):  # empty until a run
            expect(page.locator(sel)).to_be_hidden()
        page.locator("#robust-image input[type=file]").set_input_files(str(path))
        for name in ("resnet34", "resnet50", "resnet101", "resnet152"):
            page.locator("#robust-models label", has_text=name).click()
        expect(page.locator("#robust-sweep-estimate")).to_contain_text("96 forward passes")  # clean + 19 x 5
        page.locator("#robust-live-run").click()
        expect(page.locator("#robust-live-info")).to_contain_text("Fog at severity 3", timeout=120_000)
        expect(page.locator("#robust-crop img")).to_be_visible()
        expect(page.locator("#robust-gallery img")).to_have_count(1)
        expect(page.locator("#robust-live-table")).to_contain_text("resnet18")

        page.locator("#robust-sweep-run").click()
        status = page.locator("#robust-sweep-status")
        expect(status).to_contain_text("Running", timeout=120_000)  # progress names the corruption running
        expect(status).to_contain_text("Clean top-1", timeout=300_000)
        expect(status).not_to_contain_text("Partial", timeout=300_000)
        heat = page.locator("#robust-heatmap .js-plotly-plot")
        expect(heat).to_be_visible()
        assert heat.locator(".hm, .heatmaplayer image, image").count() >= 1  # the heatmap is drawn
        expect(page.locator("#robust-lines .js-plotly-plot .legendtext")).to_have_text(["ResNet-18"])
        expect(page.locator("#robust-breaking")).to_contain_text("Glass blur")
        expect(page.locator("#robust-sweep-downloads")).to_contain_text("robustness-sweep")
        for sel in ("#robust-heatmap", "#robust-lines", "#robust-breaking"):
            box, window = page.locator(sel).bounding_box(), 1400
            assert box["x"] >= 0 and box["x"] + box["width"] <= window, (sel, box)
        page.screenshot(path=str(shots / "robustness-1400.png"), full_page=True)

        # Another corruption redraws the curves from the sweep (no run) and reruns the live view.
        page.locator("#robust-corruption input").click()
        page.get_by_role("option", name="Contrast", exact=True).click()
        expect(page.locator("#robust-lines .gtitle")).to_contain_text("Contrast", timeout=60_000)
        expect(page.locator("#robust-live-info")).to_contain_text("Contrast at severity 3", timeout=120_000)

        # A folder (a zip whose folder names the class), one depth, the paper's 15 corruptions at severity 1.
        archive = tmp_path / "folder.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.write(picture(tmp_path / "f.png", 5, (90, 90)), "tabby/f.png")
        page.locator("#robust-files input[type=file]").set_input_files(str(archive))
        for name in ("resnet34", "resnet50", "resnet101", "resnet152"):
            page.locator("#robust-folder-models label", has_text=name).click()
        for severity in ("2", "3", "4", "5"):
            page.locator("#robust-folder-severities label", has_text=severity).click()
        expect(page.locator("#robust-folder-estimate")).to_contain_text("16 forward passes", timeout=30_000)
        page.locator("#robust-folder-run").click()
        expect(page.locator("#robust-folder-status")).to_contain_text("1 image (1 labelled)", timeout=120_000)
        expect(page.locator("#robust-folder-status")).not_to_contain_text("Partial", timeout=120_000)
        expect(page.locator("#robust-folder-summary")).to_contain_text("resnet18")
        expect(page.locator("#robust-folder-ce")).to_contain_text("Glass blur")
        expect(page.locator("#robust-folder-chart .js-plotly-plot")).to_be_visible()
        expect(page.locator("#robust-folder-downloads")).to_contain_text("robustness-predictions")
        page.screenshot(path=str(shots / "robustness-1400-folder.png"), full_page=True)

        # A phone: nothing past the screen's edge, the charts as wide as the page.
        page.set_viewport_size({"width": 400, "height": 860})
        page.wait_for_timeout(1000)  # Plotly redraws on resize
        assert page.evaluate("document.documentElement.scrollWidth") <= 401
        for sel in ("#robust-heatmap .js-plotly-plot", "#robust-lines .js-plotly-plot", "#robust-crop img",
                    "#robust-gallery img"):
            b = page.locator(sel).bounding_box()
            assert b["x"] >= 0 and b["x"] + b["width"] <= 401, (sel, b)
            assert sel.endswith("img") or b["width"] >= 0.8 * 400, (sel, b)
        page.locator("#robust-heatmap").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "robustness-400.png"), full_page=True)


def test_the_endpoints_never_open_a_server_path(served):
    from ui.common import UPLOAD_REFUSED

    url, _ = served
    fake = {"path": "/etc/hostname", "orig_name": "x.png", "meta": {"_type": "gradio.FileData"}}
    for api, data in (("robustness", [[fake], ["resnet18"], ["fog"]]),
                      ("robustness_sweep", [{"path": "/etc/hostname"}, ["resnet18"], ["fog"]]),
                      ("robustness_live", [{"path": "/etc/hostname"}, ["resnet18"], "fog", 1, "none"])):
        event, message = call(url, api, data, timeout=60)
        assert event == "error", (api, message)
        assert "hostname" not in message and (api == "robustness" or message == UPLOAD_REFUSED), (api, message)
