"""The first minutes: the real app (``python app.py --compile auto``) answers while its graphs build.

Each test starts app.py with an empty compile cache and the five built-in names backed by
the small ResNet-18 test weights (cheap to load), ResNet-18 preloaded. The first test lets
one graph build (ResNet-18's batch 1, in a child process) while it sends /classify,
/compare and /zoo over raw REST, then stops the app with builds still queued; the second
kills the build process, as the kernel's OOM killer would. No test depends on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import EXAMPLES, commit_for
from rest import call, upload
from zoo import compiled as zc

BUILT = "resnet18: compiled (batch 1"  # the app's log line once resnet18's batch-1 graph is in use


def require_compiler() -> None:
    if zc.find_compiler() is None:
        if os.environ.get("CI"):
            pytest.fail("no C++ compiler: .ci/run installs g++ for the compiled path's tests")
        pytest.skip("no C++ compiler (g++) here: the compiled path cannot be tested")


class App:
    """``python app.py --compile auto`` with an empty compile cache, resnet18 preloaded."""

    def __init__(self, hosted, tmp: Path, repo_root: Path):
        f = hosted["resnet18"]
        zoo = tmp / "zoo.toml"
        zoo.write_text("\n".join(f'[[model]]\nname = "{n}"\narch = "resnet18"\nrepo = "test/resnet18"\n'
                                 f'revision = "{commit_for("resnet18")}"\nsha256 = "{f.sha256}"\ntop1 = 50.0\n'
                                 for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")))
        with socket_port() as port:
            self.url = f"http://127.0.0.1:{port}"
        self.tmp = tmp
        env = {**os.environ, "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio"), "PYTHONUNBUFFERED": "1",
               "ZOO_COMPILE_CACHE": str(tmp / "rde-compile")}
        env.pop("GRADIO_EXAMPLES_CACHE", None)
        self.log = tmp / "app.log"
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", self.url.rsplit(":", 1)[1], "--zoo", str(zoo), "--compile", "auto",
             "--precision", "fp32", "--preload", "resnet18"],
            cwd=repo_root, env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.text()[-4000:]
            try:
                if httpx.get(self.url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"the app did not start:\n{self.text()[-4000:]}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def builds(self) -> list[int]:
        """This app's build processes (zoo.compile_child, their job in the app's TMPDIR), alive now."""
        return [pid for pid, cmd in processes() if "zoo.compile_child" in cmd and str(self.tmp) in cmd]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class socket_port:
    """A free port on 127.0.0.1 (as a context manager, closed before the app binds it)."""

    def __enter__(self) -> int:
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.s.close()


def processes() -> list[tuple[int, str]]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
            except OSError:
                continue
    return out


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def app(hosted, tmp_path, repo_root):
    require_compiler()
    served = App(hosted, tmp_path, repo_root)
    yield served
    served.stop()


def test_requests_never_fail_while_graphs_build(app):
    """/classify, /compare and /zoo all answer while ResNet-18's batch-1 graph builds, and after it is in use;
    stopping the app with builds still queued leaves no build process behind."""
    image = upload(app.url, EXAMPLES / "chelsea.png")
    requests = [("classify", [image, "resnet18", 5, "cam", ""]), ("compare", [image]), ("zoo", [224])]
    answered: list[tuple[str, str, bool, object]] = []  # (endpoint, event, graph in use when it came back, data)
    deadline = time.monotonic() + 1200  # a niced build on a busy machine can take minutes; on a quiet one, seconds
    built = False
    while not built and time.monotonic() < deadline:  # ends with a whole round sent after the graph is in use
        built = BUILT in app.text()
        for api, data in requests:
            event, payload = call(app.url, api, data, timeout=300)
            answered.append((api, event, BUILT in app.text() if not built else True, payload))
        time.sleep(1)  # a visitor's pace: the niced build gets the cores in between
    failures = [(api, payload) for api, event, _, payload in answered if event != "complete"]
    assert not failures, failures
    assert "Traceback" not in app.text(), app.text()[-4000:]
    during = {api for api, _, was_built, _ in answered if not was_built}
    assert during == {"classify", "compare", "zoo"}, "every endpoint answered while the graph was building"
    assert built, f"the graph was not built in time:\n{app.text()[-3000:]}"
    api, _, _, classify_after = answered[-3]  # the last round was sent with the graph in use
    assert api == "classify" and classify_after[-1]["trunk"] == "compiled"  # the swap: the compiled path answers
    first = next(p for api, _, _, p in answered if api == "classify")
    assert first[-1]["trunk"] == "eager"
    wait_for(app.builds, 60, "the next build")  # /compare loaded the other depths: queued after resnet18
    app.stop()
    wait_for(lambda: not app.builds(), 60, "the build process to end with the app")


def test_a_killed_build_leaves_the_model_eager_and_the_app_answering(app):
    (pid,) = wait_for(app.builds, 120, "a build process")
    os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
    note = "resnet18: eager: batch 1 failed (the build process was killed by SIGKILL"
    wait_for(lambda: note in app.text(), 60, "the note on the killed build")
    image = upload(app.url, EXAMPLES / "chelsea.png")
    event, payload = call(app.url, "classify", [image, "resnet18", 5, "cam", ""], timeout=300)
    assert event == "complete", payload
    assert payload[-1]["trunk"] == "eager"
    assert app.proc.poll() is None
