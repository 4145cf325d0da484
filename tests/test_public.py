"""What an anonymous visitor can send to a public deployment: raw REST calls, no gradio_client checks.

Each test sends what issue 9 found harmful and checks the app refuses it, tells
nothing about the server's files, and keeps serving.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from conftest import EXAMPLES, run_cli
from corpus import make_corpus, many_frame_gif
from rest import call, upload

ROOT = EXAMPLES.parent
UPLOADS = Path(os.environ["GRADIO_TEMP_DIR"])
REFUSED = "only accepts images uploaded"  # a fragment of the one message for every refused file


def classify(url: str, image: dict[str, Any], timeout: float = 120) -> tuple[str, Any]:
    return call(url, "classify", [image, "resnet18", 3, "cam", ""], timeout)


def png_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.open(EXAMPLES / "chelsea.png").convert("RGB").resize(size).save(buf, "PNG")
    return buf.getvalue()


def assert_still_serving(url: str) -> None:
    event, out = classify(url, upload(url, EXAMPLES / "chelsea.png"))
    assert event == "complete" and len(out[0]["confidences"]) == 3, out


# --- 1: no file on the server is read unless it arrived through the upload route ---------------------

def test_paths_that_were_not_uploaded_are_never_opened(app, tmp_path):
    url, _ = app
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes())
    (UPLOADS / "planted").mkdir(parents=True, exist_ok=True)
    link = UPLOADS / "planted" / "link.png"  # inside the upload folder, pointing out of it
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    paths = [str(secret), str(tmp_path / "missing.png"), str(tmp_path), "/etc/passwd", "/etc/hostname",
             str(EXAMPLES / "chelsea.png"), "examples/chelsea.png", str(link), str(UPLOADS / "missing.png"),
             str(UPLOADS), "../../../../../../etc/passwd", "/dev/zero"]
    messages = set()
    for path in paths:
        event, out = classify(url, {"path": path})  # no "meta": gradio's own check is skipped
        assert event == "error", (path, out)
        messages.add(out)
        assert REFUSED in out
        named = [path] + ([Path(path).name] if Path(path).suffix else [])
        assert all(part not in out for part in (*named, "exist", "directory", "pipe")), out
    assert len(messages) == 1, messages  # one message: nothing tells a missing file from a directory
    # With "meta", gradio refuses before our code runs; its message only repeats what was sent.
    answers = set()
    for path in (str(secret), str(tmp_path / "missing.png"), str(tmp_path)):
        event, out = classify(url, {"path": path, "meta": {"_type": "gradio.FileData"}})
        assert event == "error", (path, out)
        answers.add(out.replace(path, "<path>"))
    assert len(answers) == 1, answers
    # The same goes for /compare, and real uploads keep working.
    event, out = call(url, "compare", [{"path": str(secret)}])
    assert event == "error" and REFUSED in out, out
    assert_still_serving(url)


def test_a_file_in_the_upload_folder_beyond_the_limit_is_not_decoded(app):
    """Gradio fetches http(s) URLs into its upload folder without the upload route's 20 MB limit."""
    url, _ = app
    (UPLOADS / "planted").mkdir(parents=True, exist_ok=True)
    big = UPLOADS / "planted" / "big.png"
    with open(big, "wb") as f:
        f.write(png_bytes())
        f.truncate(21 * 1024 * 1024)
    event, out = classify(url, {"path": str(big), "orig_name": "big.png", "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and out == "big.png is larger than 20mb.", out


# --- 2: pipes and other non-regular files are never opened (one would block a worker forever) ---------

def test_pipes_are_never_opened(app, tmp_path):
    url, _ = app
    read_end, write_end = os.pipe()  # a pipe this process (the app's) holds
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    (UPLOADS / "planted").mkdir(parents=True, exist_ok=True)
    uploaded_fifo = UPLOADS / "planted" / "fifo.png"  # even inside the upload folder
    uploaded_fifo.unlink(missing_ok=True)
    os.mkfifo(uploaded_fifo)
    payloads = [{"path": f"/proc/self/fd/{read_end}"}, {"path": f"/proc/{os.getpid()}/fd/{read_end}"},
                {"path": str(fifo)}, {"path": str(uploaded_fifo)},
                {"path": str(uploaded_fifo), "meta": {"_type": "gradio.FileData"}}]
    try:
        for payload in payloads:
            event, out = classify(url, payload, timeout=30)  # blocked before: no answer, ever
            assert event == "error" and REFUSED in out, (payload, out)
        assert_still_serving(url)
    finally:
        # Release any reader a regression left blocked, so the other tests keep their workers.
        os.write(write_end, b"x" * 64)
        os.close(write_end)
        for f in (fifo, uploaded_fifo):
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # no reader waiting: nothing was opened
                pass
        os.close(read_end)


# --- 5: data: URLs would skip the upload limit and be decoded by gradio --------------------------------

def test_data_urls_are_refused(app):
    url, _ = app
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    for payload in ({"url": data_url, "meta": {"_type": "gradio.FileData"}}, {"url": data_url},
                    {"path": data_url}, {"path": None, "url": data_url, "orig_name": "x.png"}):
        event, out = classify(url, payload)
        assert event == "error" and REFUSED in out, (payload, out)
    assert_still_serving(url)


def test_a_small_data_url_declaring_a_huge_canvas_is_not_decoded(app, monkeypatch):
    """An 83 KB PNG declaring 9400x9400 cost +620 MB and seconds in gradio before our 40 MP check."""
    from PIL import ImageFile

    from corpus import bomb_png

    url, _ = app
    decoded: list[tuple[int, int]] = []  # the app runs in this process: every pixel decode is seen
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real_load(self))
    data_url = "data:image/png;base64," + base64.b64encode(bomb_png(9400, 9400)).decode()
    event, out = classify(url, {"url": data_url, "meta": {"_type": "gradio.FileData"}})
    assert event == "error" and REFUSED in out, out
    assert (9400, 9400) not in decoded, decoded


# --- 4: the app sees exactly what the CLI sees ---------------------------------------------------------

@pytest.mark.parametrize("name", ["sixteen-bit.png", "rgba.png", "palette-transparent.png"])
def test_app_and_cli_give_the_same_predictions_and_notes(app, zoo_file, tmp_path, name):
    url, _ = app
    path, _ = make_corpus(tmp_path)[name]
    event, out = call(url, "classify", [upload(url, path), "resnet18", 5, "cam", ""])
    assert event == "complete", out
    details = out[-1]
    # The app fixture serves fp32 (conftest.py); the CLI runs at the same precision.
    cli = run_cli("classify", str(path), "--model", "resnet18", "--top", "5", "--json", "--precision", "fp32",
                  "--zoo", str(zoo_file))
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)["predictions"]
    assert [(p["index"], p["label"]) for p in details["predictions"]] == [(p["index"], p["label"]) for p in expected]
    assert all(abs(a["prob"] - b["prob"]) < 1e-4 for a, b in zip(details["predictions"], expected))
    # `classify --json` carries no notes; the plain output prints them as "note: ..." lines.
    text = run_cli("classify", str(path), "--model", "resnet18", "--precision", "fp32", "--zoo", str(zoo_file))
    notes = [line.removeprefix("note: ") for line in text.stdout.splitlines() if line.startswith("note: ")]
    assert notes and details["notes"] == notes, (details["notes"], notes)


# --- 9: messages name the visitor's file, never the server's copy --------------------------------------

def test_messages_name_the_uploaded_file_not_the_server_path(app, tmp_path):
    url, _ = app
    wide = tmp_path / "my holiday.png"
    Image.new("RGB", (3000, 100), (90, 90, 90)).save(wide)  # decodes fine; refused for its aspect ratio
    payload = upload(url, wide)
    event, out = classify(url, payload)
    assert event == "error" and "aspect ratio" in out, out
    assert out.startswith("my holiday.png is 3000x100"), out
    assert str(UPLOADS) not in out and str(Path(payload["path"]).parent.name) not in out, out


# --- 3: the app, started as the README says, survives a GIF of 10,000 frames ---------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_of(pid: int) -> float:
    """Resident memory of process ``pid``, MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class Served:
    """``python app.py`` in a subprocess, on a free port, with its own temp folders."""

    def __init__(self, zoo_file: Path, tmp: Path):
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio"), "PYTHONUNBUFFERED": "1"}
        env.pop("GRADIO_EXAMPLES_CACHE", None)  # set by an app built in this process: the new one makes its own
        self.log = open(tmp / "app.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), "--zoo", str(zoo_file)],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (tmp / "app.log").read_text()
            try:
                if httpx.get(self.url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError("the app did not start")

    def stop(self, sig: int = signal.SIGKILL) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.log.close()


def test_a_gif_of_many_frames_is_decoded_once_with_bounded_memory(zoo_file, tmp_path):
    served = Served(zoo_file, tmp_path)
    try:
        assert_still_serving(served.url)  # model loaded: what remains is the cost of the GIF
        gif = tmp_path / "frames.gif"
        gif.write_bytes(many_frame_gif(10_000, 1000, 1000))
        payload = upload(served.url, gif)
        before = rss_of(served.proc.pid)
        peak = [before]
        done = threading.Event()

        def watch() -> None:
            # Kill the app rather than let it take the machine (it grew to ~20 GB before the fix).
            while not done.is_set() and served.proc.poll() is None:
                peak[0] = max(peak[0], rss_of(served.proc.pid))
                if peak[0] - before > 1500:
                    served.proc.kill()
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            event, out = classify(served.url, payload, timeout=120)
        except httpx.HTTPError as e:
            event, out = "failed", repr(e)
        finally:
            done.set()
            watcher.join()
        assert peak[0] - before < 1000, f"the app grew by {peak[0] - before:.0f} MB"
        assert event == "complete", out
        assert "animated image: used the first of 10000 frames" in out[-1]["notes"]
        assert_still_serving(served.url)
    finally:
        served.stop()


# --- 9: no output folder is left behind when the app stops ---------------------------------------------

def test_the_app_leaves_no_output_folder_behind(zoo_file, tmp_path):
    served = Served(zoo_file, tmp_path)
    try:
        assert_still_serving(served.url)
        assert list(tmp_path.glob("rde-outputs-*")), "outputs are expected under TMPDIR while serving"
        assert list(tmp_path.glob("rde-examples-*")), "the examples' cache is expected under TMPDIR while serving"
    finally:
        code = served.stop(signal.SIGTERM)  # what a Space, Docker or systemd sends
    assert not list(tmp_path.glob("rde-outputs-*")), (tmp_path / "app.log").read_text()[-2000:]
    assert not list(tmp_path.glob("rde-examples-*")), (tmp_path / "app.log").read_text()[-2000:]
    assert code == 0, code


# --- 8: long work is bounded and can be stopped from the page --------------------------------------------

def page_config(url: str) -> tuple[dict[str, dict], list[dict]]:
    """The page's components by elem_id, and its event dependencies, as the browser gets them."""
    config = httpx.get(f"{url}/config", timeout=30).json()
    by_elem = {c["props"]["elem_id"]: c for c in config["components"] if c.get("props", {}).get("elem_id")}
    return by_elem, config["dependencies"]


def test_sliders_bound_the_cost_and_stop_buttons_cancel_the_runs(app):
    url, _ = app
    comps, deps = page_config(url)
    limits = {"occlusion-window": (16, 56), "occlusion-stride": (8, 28), "ig-steps": (4, 16)}
    for elem, (lowest, default) in limits.items():
        props = comps[elem]["props"]
        assert props["minimum"] == lowest and props["value"] == default, (elem, props)
    assert comps["ig-steps"]["props"]["maximum"] <= 64

    def deps_of(elem: str) -> list[dict]:
        return [d for d in deps if [comps[elem]["id"], "click"] in d["targets"]]

    for run, stop in (("classify-button", "classify-stop"), ("compare-button", "compare-stop")):
        (run_dep,) = deps_of(run)
        assert [d["cancels"] for d in deps_of(stop) if d["cancels"]] == [[run_dep["id"]]], (run, stop)


def test_the_pages_own_endpoint_refuses_settings_beyond_the_sliders(app, monkeypatch):
    """A raw call to the page's own endpoint sent window 8, stride 4: the sliders' ranges hold there too."""
    from zoo.models import LoadedModel

    url, _ = app
    forwards: list[str] = []  # refused before any work: no model runs (the app runs in this process)
    real_run = LoadedModel.run  # under every classifying forward (LoadedModel.forward calls it)
    monkeypatch.setattr(LoadedModel, "run", lambda lm, x: forwards.append(lm.spec.name) or real_run(lm, x))
    comps, deps = page_config(url)
    go = next(d for d in deps if [comps["classify-button"]["id"], "click"] in d["targets"])
    image = upload(url, EXAMPLES / "chelsea.png")
    for method, window, stride, steps, what in (("occlusion", 8, 4, 16, "minimum value 16"),
                                                ("occlusion", 56, 4, 16, "minimum value 8"),
                                                ("integrated-gradients", 56, 28, 512, "maximum value 64")):
        session = f"bounds-{method}-{window}-{stride}-{steps}"
        data = [image, "resnet18", 3, method, "", "jet", 0.5, window, stride, steps, "layer4", False]
        r = httpx.post(f"{url}/gradio_api/queue/join", json={
            "data": data, "fn_index": go["id"], "trigger_id": comps["classify-button"]["id"],
            "session_hash": session, "event_data": None}, timeout=30)
        r.raise_for_status()
        with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session},
                          timeout=60) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    break
        assert msg["success"] is False and what in msg["output"]["error"], msg
    assert forwards == []
