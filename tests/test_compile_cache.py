"""The compile cache's trust rules (zoo.compile_cache) and a build process that dies (zoo.compiling).

None of these builds a graph: a planted library is refused before it is loaded, and a build
process that is killed or crashes is a stand-in child that dies at once (or sleeps until
the test kills it).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import EXAMPLES, explained
from zoo import compile_cache as cc
from zoo import compiled as zc
from zoo.compiling import compile_model
from zoo.models import load_model

ON = zc.Plan("on", True, "")
PLANT = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *path = getenv("RDE_PLANTED_MARKER");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) { fputs("ran", f); fclose(f); }
}
"""


@pytest.fixture
def r18(zoo, hosted):
    return load_model(zoo.get("resnet18"), "cpu", precision="fp32")


def plant(folder: Path, lm, tmp_path: Path) -> cc.Package:
    """A shared library whose constructor writes a marker file, as ``lm``'s batch-1 package, with a
    record that matches it (fields and sha256): everything but who wrote it is right."""
    cxx = zc.find_compiler()
    if cxx is None:
        pytest.skip("no C++ compiler here to build the planted library")
    src = tmp_path / "plant.c"
    src.write_text(PLANT)
    package = cc.Package.of(folder, lm.spec.name, "one", cc.weights_digest(lm.module), (3, 224, 224),
                            lm.device, torch.float32)
    subprocess.run([cxx, "-x", "c", "-shared", "-fPIC", str(src), "-o", str(package.path)], check=True)
    package.record.write_text(json.dumps({"fields": package.fields, "sha256": cc.sha256_of(package.path)}))
    return package


def test_a_library_in_a_folder_others_can_write_is_never_loaded(r18, tmp_path, monkeypatch):
    marker = tmp_path / "constructor-ran"
    monkeypatch.setenv("RDE_PLANTED_MARKER", str(marker))
    shared = tmp_path / "shared"
    shared.mkdir()
    package = plant(shared, r18, tmp_path)
    os.chmod(shared, 0o777)  # anyone on the machine could have put it there
    assert not compile_model(r18, ON, ["one"], build_missing=False, folder=shared)
    assert r18.compiled is None and not marker.exists(), "the planted library was loaded"
    assert "compile cache refused" in r18.compile_note and "writable by its group and others" in r18.compile_note
    assert str(shared) in r18.compile_note and "chmod 700" in r18.compile_note
    assert package.path.exists()  # not ours to delete: the folder is someone else's business
    # Everything else about the plant was right: only the folder's modes keep it out.
    os.chmod(shared, 0o700)
    assert package.check() == ""


def test_a_library_owned_by_another_user_is_never_loaded(r18, tmp_path, monkeypatch):
    if os.getuid() != 0:
        pytest.skip("giving a file to another user needs root (the suite runs as root in CI)")
    marker = tmp_path / "constructor-ran"
    monkeypatch.setenv("RDE_PLANTED_MARKER", str(marker))
    own = tmp_path / "own"
    own.mkdir(mode=0o700)
    package = plant(own, r18, tmp_path)
    os.chown(package.path, 4242, 4242)
    assert package.check().startswith("refused: the file") and "uid 4242" in package.check()
    assert not compile_model(r18, ON, ["one"], build_missing=False, folder=own)
    assert r18.compiled is None and not marker.exists(), "the planted library was loaded"
    assert "belongs to another user (uid 4242" in r18.compile_note and "not rebuilt" in r18.compile_note
    assert not package.path.exists()  # removed from our own folder, so a build can take its place


def test_the_cache_folder_is_created_private(tmp_path):
    folder, note = cc.private_folder(tmp_path / "a" / "rde-compile")
    assert folder == tmp_path / "a" / "rde-compile" and note == ""
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o775)
    other, note = cc.private_folder(loose)
    assert other != loose and stat.S_IMODE(other.stat().st_mode) == 0o700
    assert "writable by its group" in note and str(other) in note


def processes_running(marker: str) -> list[int]:
    """Children of this process whose command line holds ``marker``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and marker in (d / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.mark.parametrize("death, note", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL (out of memory, or killed by hand)"),
    ("import os; os.abort()", "killed by SIGABRT"),
    ("raise MemoryError('no memory left')", "exited with code 1: MemoryError: no memory left"),
])
def test_a_build_process_that_dies_leaves_the_model_eager(zoo, hosted, tmp_path, monkeypatch, death, note):
    from zoo.runtime import Runtime

    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(tmp_path / "cache"))
    explorer = Runtime(zoo, "cpu", precision="fp32", compile="on")
    explorer.cache.compiler.command = [sys.executable, "-c", death]
    lm = explorer.cache.get(zoo.get("resnet18"))
    assert not explorer.cache.compile(lm, ["one"])
    assert lm.compiled is None and lm.graphs == ()
    assert lm.compile_note.startswith("eager: batch 1 failed (the build process") and note in lm.compile_note
    assert explained(explorer, EXAMPLES / "chelsea.png", "resnet18").run.trunk == "eager"  # and the answers go on


def test_the_header_says_while_graphs_build_and_a_killed_build_is_noted(zoo, hosted, tmp_path, monkeypatch):
    """While a build runs the header says so; killing its process (as the OOM killer would) leaves the
    model eager with a note, and classifying goes on throughout."""
    from ui.app import compile_line
    from zoo.runtime import Runtime

    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(tmp_path / "cache"))
    explorer = Runtime(zoo, "cpu", precision="fp32", compile="on")
    marker = "rde-test-build-that-hangs"
    explorer.cache.compiler.command = [sys.executable, "-c", f"import time; time.sleep(600)  # {marker}"]
    explorer.cache.get(zoo.get("resnet18"))
    explorer.compile_in_background()
    deadline = time.monotonic() + 60
    while not processes_running(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    (pid,) = processes_running(marker)
    line = compile_line(explorer)
    assert "compiling resnet18 in the background: answers use the eager path meanwhile" in line
    assert explained(explorer, EXAMPLES / "chelsea.png", "resnet18").run.trunk == "eager"
    os.kill(pid, 9)
    deadline = time.monotonic() + 60
    while not (pids := [p for p in processes_running(marker) if p != pid]) and time.monotonic() < deadline:
        time.sleep(0.1)  # then the any-batch graph's turn: a new build process
    for other in pids:
        os.kill(other, 9)
    assert explorer.cache.wait_compiled(timeout=60)
    lm = explorer.cache.get(zoo.get("resnet18"))
    assert lm.compiled is None and "batch 1 failed (the build process was killed by SIGKILL" in lm.compile_note
    assert "eager: resnet18 (eager: batch 1 failed" in compile_line(explorer)
    assert explained(explorer, EXAMPLES / "chelsea.png", "resnet18").run.trunk == "eager"


@pytest.mark.browser
def test_the_page_header_says_while_graphs_build(zoo, hosted, tmp_path, monkeypatch):
    """In a real browser: the header says a model is compiling while its build runs, and what became of it
    once the build is over (here killed, as the OOM killer would: the model stays eager)."""
    from playwright.sync_api import expect

    from browser import open_page
    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(tmp_path / "cache"))
    explorer = Runtime(zoo, "cpu", precision="fp32", compile="on")
    marker = "rde-test-build-for-the-header"
    explorer.cache.compiler.command = [sys.executable, "-c", f"import time; time.sleep(600)  # {marker}"]
    explorer.cache.get(zoo.get("resnet18"))
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    try:
        explorer.compile_in_background()
        deadline = time.monotonic() + 60
        while not processes_running(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open_page(url) as page:
            status = page.locator("#compile-status")
            expect(status).to_contain_text("compiling resnet18 in the background: answers use the eager path "
                                           "meanwhile", timeout=30_000)
            while not explorer.cache.wait_compiled(timeout=0.2):  # both graphs' builds, each killed
                for pid in processes_running(marker):
                    os.kill(pid, 9)
            # the page polls while a build is under way, so it learns the end without a reload
            expect(status).to_contain_text("eager: resnet18 (eager: batch 1 failed (the build process was killed",
                                           timeout=30_000)
    finally:
        for pid in processes_running(marker):
            os.kill(pid, 9)
        demo.close()
