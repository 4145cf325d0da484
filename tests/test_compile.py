"""The compiled path (zoo.compiled): an AOTInductor-compiled trunk for the forwards that classify.

Only ResNet-18 is compiled, on the CPU, with the test Hub's generated weights. Each build
costs tens of seconds on a busy 2-core machine, so the file builds ResNet-18's two graphs in
fp32 once (module fixture, into the default cache next to HF_HOME), at the app's precision
once in the background test, one graph into a broken cache (and once more after damaging
it), and reads the cache back in one subprocess. No test depends on timing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import EXAMPLES, explained
from zoo import autotune
from zoo import compile_cache as cc
from zoo import compiled as zc
from zoo.compiling import compile_model
from zoo.explain import explain
from zoo.images import load_image
from zoo.inference import classify
from zoo.models import load_model

EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))
ON = zc.Plan("on", True, "")
NO_COMPILER = "/nonexistent/c++"  # "pointing the compiler variable at nothing"
LOGIT_REL_TOL = 0.015  # bf16: each logit within 1.5 % of the largest (as tests/test_precision.py)


def require_compiler() -> None:
    """Skip where inductor cannot compile (no g++); CI installs it (.ci/run), so there it fails."""
    if zc.find_compiler() is None:
        if os.environ.get("CI"):
            pytest.fail("no C++ compiler: .ci/run installs g++ for tests/test_compile.py")
        pytest.skip("no C++ compiler (g++) here: the compiled path cannot be tested")


@pytest.fixture(scope="module")
def r18(zoo, hosted):
    """ResNet-18 in fp32 (pinned: compared with fp32 eager), compiled into the default cache."""
    require_compiler()
    lm = load_model(zoo.get("resnet18"), "cpu", precision="fp32")

    def forbidden(*args, **kwargs):
        raise AssertionError("export or inductor ran in this process: builds belong in a child process")

    with pytest.MonkeyPatch.context() as mp:  # built in a child process (zoo.compiling), never here
        mp.setattr(torch.export, "export", forbidden)
        mp.setattr(torch._inductor, "aoti_compile_and_package", forbidden)
        assert compile_model(lm, ON), lm.compile_note
    assert "batch 1 built" in lm.compile_note and "any batch built" in lm.compile_note
    assert lm.compiled is not None and lm.trunk_kind == "compiled"
    return lm


def eager(lm):
    return dataclasses.replace(lm, compiled=None)


# --- where compiling is possible, and the notes when it is not ---------------------------------

def test_off_auto_on_and_no_compiler(monkeypatch):
    cpu = torch.device("cpu")
    plan = zc.resolve("off", cpu)
    assert not plan.enabled and "off" in plan.note
    monkeypatch.setenv("CXX", NO_COMPILER)
    assert zc.find_compiler() is None
    plan = zc.resolve("auto", cpu)
    assert not plan.enabled and plan.note.startswith("eager:") and NO_COMPILER in plan.note and "g++" in plan.note
    with pytest.raises(zc.CompileUnavailableError, match="not possible here.*C\\+\\+"):
        zc.resolve("on", cpu)
    monkeypatch.setenv("ZOO_COMPILE", "on")  # the variable, like the flag
    with pytest.raises(zc.CompileUnavailableError):
        zc.resolve(None, cpu)
    with pytest.raises(zc.CompileUnavailableError, match="choose one of auto, on, off"):
        zc.resolve("sometimes", cpu)


def test_zerogpu_and_mps_rule_compiling_out(monkeypatch):
    from ui import spaces

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(sys, "path", [str(Path(__file__).resolve().parent / "fake_spaces"), *sys.path])
    why = spaces.compile_forbidden()
    assert why and "ZeroGPU" in why
    plan = zc.resolve("auto", torch.device("cpu"), why)
    assert not plan.enabled and "ZeroGPU" in plan.note
    with pytest.raises(zc.CompileUnavailableError, match="ZeroGPU"):
        zc.resolve("on", torch.device("cpu"), why)
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert spaces.compile_forbidden() is None
    plan = zc.resolve("auto", torch.device("mps"))
    assert not plan.enabled and "MPS" in plan.note


def test_auto_falls_back_to_eager_with_the_reason(monkeypatch, zoo, hosted):
    from zoo.runtime import Runtime

    monkeypatch.setenv("CXX", NO_COMPILER)
    explorer = Runtime(zoo, "cpu", precision="fp32", compile="auto")
    explorer.compile_in_background()  # nothing to do: no compiler
    result = explained(explorer, EXAMPLES / "chelsea.png", "resnet18")
    assert result.run.trunk == "eager" and result.to_json()["trunk"] == "eager"
    lm = explorer.cache.get(zoo.get("resnet18"))
    assert lm.compiled is None and NO_COMPILER in lm.compile_note
    assert NO_COMPILER in explorer.compile_status() and explorer.cache.compiling() == []


def test_cli_says_why(monkeypatch, capsys, zoo_file, hosted, tmp_path):
    from zoo.cli import main

    monkeypatch.setenv("CXX", NO_COMPILER)
    assert main(["classify", str(EXAMPLES / "chelsea.png"), "--zoo", str(zoo_file), "--model", "resnet18",
                 "--compile", "on"]) == 2
    err = capsys.readouterr().err
    assert "--compile on is not possible here" in err and NO_COMPILER in err
    monkeypatch.delenv("CXX")
    if zc.find_compiler() is None:
        return
    # auto on a short batch, nothing in the cache: eager, and it says so
    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(tmp_path / "empty"))
    assert main(["batch", str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png"), "--zoo", str(zoo_file),
                 "--models", "resnet18", "--precision", "fp32", "--compile", "auto", "--json"]) == 0
    err = capsys.readouterr().err
    assert "resnet18 eager, 2 forwards per model are too few" in err
    assert not any((tmp_path / "empty").glob("*.so"))


# --- the compiled trunk equals the eager one --------------------------------------------------

def test_compiled_logits_equal_eager_fp32(r18):
    for path in EXAMPLE_FILES:
        image = load_image(path)
        ours, ref = classify(r18, image), classify(eager(r18), image)
        assert (ours.trunk, ref.trunk) == ("compiled", "eager")
        assert ours.to_json()["trunk"] == "compiled"
        np.testing.assert_allclose(ours.logits, ref.logits, rtol=1e-4, atol=1e-4 * np.abs(ref.logits).max())
        np.testing.assert_allclose(ours.features, ref.features, rtol=1e-4, atol=1e-4 * np.abs(ref.features).max())
        assert ours.predictions[0].index == ref.predictions[0].index


def test_batch_sizes_share_one_graph(r18):
    """Batch 1 has its graph and every other batch size shares one: no size builds anything more."""
    before = sorted(cc.cache_dir().glob("*.so"))
    assert set(r18.compiled.graphs) == {"one", "any"}
    torch.manual_seed(0)
    with torch.inference_mode():
        for n in (1, 3, 5, 2, 16):
            x = r18.to_input(torch.randn(n, 3, 224, 224))
            feats, logits, trunk = r18.run(x)
            _, ref, _ = eager(r18).run(x)
            assert trunk == "compiled" and logits.shape == (n, 1000)
            torch.testing.assert_close(logits, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        # what the compiled trunk was not built for runs eager rather than build inside a request
        assert r18.run(r18.to_input(torch.randn(1, 3, 160, 160)))[2] == "eager"
        assert r18.run(torch.randn(2, 3, 224, 224))[2] == "eager"  # not channels-last
    with torch.no_grad():  # no gradients wanted: compiled too
        assert r18.run(r18.to_input(torch.randn(1, 3, 224, 224)))[2] == "compiled"
    with torch.enable_grad():  # gradients wanted (explanations): eager
        assert r18.run(r18.to_input(torch.randn(1, 3, 224, 224)))[2] == "eager"
    assert sorted(cc.cache_dir().glob("*.so")) == before


def test_a_compiled_forward_lets_other_threads_run(r18):
    """Python's other threads (the web server: Stop, progress, other visitors) run during a compiled forward.

    torch's own AOTInductor loader holds the GIL for the whole forward; ours releases it
    (zoo.compiled.CpuGraph). Not a timing test: it checks that another thread ran while each
    forward was in its middle part, which cannot happen while the forward holds the GIL. The
    middle part leaves out three of Python's switch intervals at each end: a thread that
    holds the GIL may let the other one run that long just before and after its call.
    """
    x = r18.to_input(torch.randn(32, 3, 224, 224))
    margin = 3 * sys.getswitchinterval()
    done = threading.Event()
    ticks: list[float] = []

    def watch() -> None:
        last = 0.0
        while not done.is_set():
            now = time.perf_counter()
            if now - last > 0.001:  # a bounded record: about one tick a millisecond
                ticks.append(now)
                last = now

    watcher = threading.Thread(target=watch)
    watcher.start()
    spans = []
    try:
        with torch.inference_mode():
            for _ in range(3):
                t0 = time.perf_counter()
                r18.compiled(x)
                spans.append((t0, time.perf_counter()))
    finally:
        done.set()
        watcher.join()
    long_enough = [(a, b) for a, b in spans if b - a > 4 * margin]
    if not long_enough:
        pytest.skip("forwards too short here to tell a released GIL from a held one")
    for a, b in long_enough:
        inside = [t for t in ticks if a + margin < t < b - margin]
        assert len(inside) >= 2, f"another thread ran {len(inside)} times in the middle of a compiled forward"


def test_cam_is_exact_on_the_compiled_path(r18):
    run = classify(r18, EXAMPLES / "chelsea.png")
    assert run.trunk == "compiled"
    bias = r18.module.fc.bias.numpy()
    for c in [run.predictions[0].index, run.predictions[3].index, 0, 999]:
        raw = explain(r18, run, "cam", c).raw
        assert abs(raw.mean() + bias[c] - run.logits[c]) <= 1e-4 * max(1.0, abs(run.logits[c]))


def test_a_broken_cache_is_rebuilt_never_fatal(r18, tmp_path, monkeypatch):
    """A cache folder that cannot be used (a file in its place), and a damaged or stale package, are rebuilt."""
    broken = tmp_path / "rde-compile"
    broken.write_bytes(b"\x00garbage")
    lm = load_model(r18.spec, "cpu", precision="fp32")
    compile_model(lm, ON, ["one"], folder=broken)
    assert lm.trunk_kind == "compiled" and f"replaced {broken}, which was not a folder" in lm.compile_note
    assert broken.is_dir()
    ref = classify(r18, EXAMPLES / "coffee.png")
    run = classify(lm, EXAMPLES / "coffee.png")
    np.testing.assert_allclose(run.logits, ref.logits, rtol=1e-4, atol=1e-4 * np.abs(ref.logits).max())

    (package,) = broken.glob("*-one-*.so")
    data = package.read_bytes()
    package.unlink()  # (a new file: this process still has the old one mapped, as a crash's survivor would not)
    package.write_bytes(data[: len(data) // 2])  # a package cut short (a full disk, a crash)
    old = broken / "resnet18-one-0123456789abcdef0123.so"  # left by an older torch: never loadable again
    old.write_bytes(b"old")
    cc.Package(old, {}).record.write_text(json.dumps({"fields": {"format": cc.FORMAT, "torch": "0.0.0"}}))
    other = broken / "resnet18-any-0123456789abcdef0123.so"  # another graph: not this build's business
    other.write_bytes(b"other")
    crashed = broken / ".build-123-456"  # a crashed build's scratch folder
    crashed.mkdir()
    foreign = broken / ".someone-elses"  # a cache folder may be shared: never ours to delete
    foreign.write_bytes(b"keep")
    monkeypatch.setattr(cc, "STALE_LEFTOVERS_S", -1)  # every leftover counts as old
    again = load_model(r18.spec, "cpu", precision="fp32")
    compile_model(again, ON, ["one"], folder=broken)
    assert "batch 1 built" in again.compile_note and "loaded from the cache" not in again.compile_note
    assert "does not match its record's sha256" in again.compile_note
    assert not old.exists() and not cc.Package(old, {}).record.exists() and other.exists()
    assert not crashed.exists() and foreign.exists()
    assert list(broken.glob(".*")) == [foreign], "a build leaves no scratch files behind"
    run = classify(again, EXAMPLES / "coffee.png")
    assert run.trunk == "compiled"
    np.testing.assert_allclose(run.logits, ref.logits, rtol=1e-4, atol=1e-4 * np.abs(ref.logits).max())

    # a package whose record says it was built for something else (another torch) is never loaded
    expected = cc.Package.of(broken, "resnet18", "one", cc.weights_digest(lm.module), (3, 224, 224),
                             torch.device("cpu"), torch.float32)
    assert expected.path == package and expected.valid()
    record = json.loads(expected.record.read_text())
    record["fields"]["torch"] = "0.0.0"
    expected.record.write_text(json.dumps(record))
    assert not expected.valid()


def test_one_graph_failing_leaves_the_other_and_says_so(r18, zoo, monkeypatch, tmp_path):
    """The any-batch graph cannot be built: batch 1 still runs compiled, batches eager, and the status says why."""
    import shutil

    from zoo.runtime import Runtime

    own = tmp_path / "cache"  # r18's batch-1 graph only
    own.mkdir()
    for f in cc.cache_dir().glob("resnet18-one-*"):
        shutil.copy(f, own)
    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(own))

    explorer = Runtime(zoo, "cpu", precision="fp32", compile="on")
    # the build process (zoo.compile_child) fails: only the any-batch graph is missing, so only it is built
    explorer.cache.compiler.command = [sys.executable, "-c", "import sys; sys.exit('no room on the disk')"]
    lm = explorer.cache.get(zoo.get("resnet18"))
    assert explorer.cache.compile(lm)
    assert set(lm.compiled.graphs) == {"one"} and set(lm.compile_missing) == {"any"} and lm.graphs == ("one",)
    assert "compiled (batch 1): batch 1 loaded from the cache" in lm.compile_note
    assert "any batch failed (the build process exited with code 1: no room on the disk)" in lm.compile_note
    status = explorer.compile_status()
    assert "compiled: resnet18" in status and "partly compiled: resnet18 (any batch failed" in status
    with torch.inference_mode():
        assert lm.run(lm.to_input(torch.randn(1, 3, 224, 224)))[2] == "compiled"
        assert lm.run(lm.to_input(torch.randn(2, 3, 224, 224)))[2] == "eager"


# --- the app's background compile -------------------------------------------------------------

def test_background_compile_never_blocks_and_swaps(zoo, hosted, monkeypatch, tmp_path):
    """Classifications go on (eager) while the trunk compiles, from several threads, across the swap.

    At the app's own precision (bf16 where the CPU runs it natively): compiled and eager
    logits agree within that precision's tolerance.
    """
    require_compiler()
    from zoo.runtime import Runtime

    monkeypatch.setenv("ZOO_COMPILE_CACHE", str(tmp_path / "own"))  # r18's graphs would load at once
    # compiled against eager is timed in tests/test_autotune.py (here the swap must be seen, whichever is faster)
    monkeypatch.setattr(autotune, "check_compiled", lambda *args, **kwargs: None)
    explorer = Runtime(zoo, "cpu", precision="auto", compile="auto")
    image = load_image(EXAMPLES / "chelsea.png")
    first = explained(explorer, image, "resnet18").run  # loads the model: eager, nothing compiling yet
    assert first.trunk == "eager" and explorer.cache.compiling() == []
    explorer.compile_in_background()
    results: list[tuple[str, bool, np.ndarray]] = []
    lock = threading.Lock()

    def request() -> None:
        run = explained(explorer, image, "resnet18").run
        still = bool(explorer.cache.compiling())  # compiling after this answer came back
        with lock:
            results.append((run.trunk, still, run.logits))

    with ThreadPoolExecutor(2) as pool:
        deadline = time.monotonic() + 900
        while explorer.cache.compiling() and time.monotonic() < deadline:
            list(pool.map(lambda _: request(), range(2)))  # two requests at once
            time.sleep(0.5)  # and the compile gets the cores in between: this test stays short
        for _ in range(2):  # after the swap too
            list(pool.map(lambda _: request(), range(2)))
    assert explorer.cache.wait_compiled(timeout=60)
    answered_while_compiling = [r for r in results if r[0] == "eager" and r[1]]
    assert answered_while_compiling, "no classification answered during the compile"
    assert results[-1][0] == "compiled" and explorer.cache.get(zoo.get("resnet18")).trunk_kind == "compiled"
    assert "compiled: resnet18" in explorer.compile_status()
    ref = first.logits
    bf16 = explorer.precision == "bf16"
    for _, _, logits in results:
        if bf16:
            assert np.abs(logits - ref).max() <= LOGIT_REL_TOL * np.abs(ref).max()
        else:
            np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# --- the on-disk cache, reused by another process ----------------------------------------------

CHILD = """
import json, sys, torch
from zoo.inference import classify
from zoo.compiled import Plan
from zoo.compiling import compile_model
from zoo.models import load_model
from zoo.registry import Zoo
lm = load_model(Zoo.load(sys.argv[1]).get("resnet18"), "cpu", precision="fp32")
compile_model(lm, Plan("on", True, ""))
run = classify(lm, sys.argv[2])
print(json.dumps({"trunk": run.trunk, "note": lm.compile_note, "logits": run.logits.tolist(),
                  "graphs": sorted(lm.compiled.graphs)}))
"""


def test_the_cache_is_reused_by_another_process(r18, zoo_file, repo_root):
    """r18 filled the default cache (next to HF_HOME); a new process loads both graphs from it, building nothing."""
    before = {p: p.stat().st_mtime_ns for p in cc.cache_dir().glob("*.so")}
    assert before
    proc = subprocess.run([sys.executable, "-c", CHILD, str(zoo_file), str(EXAMPLES / "chelsea.png")],
                          cwd=repo_root, env=os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["trunk"] == "compiled" and out["graphs"] == ["any", "one"] and str(cc.cache_dir()) in out["note"]
    assert "batch 1 loaded from the cache" in out["note"] and "any batch loaded from the cache" in out["note"]
    assert "built" not in out["note"], out["note"]
    assert {p: p.stat().st_mtime_ns for p in cc.cache_dir().glob("*.so")} == before
    ref = classify(r18, EXAMPLES / "chelsea.png").logits
    np.testing.assert_allclose(np.array(out["logits"], dtype=np.float32), ref, rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())


def test_cli_auto_takes_a_cached_graph_for_a_short_batch(r18, capsys, zoo_file):
    """A batch far below the build threshold still runs compiled when the any-batch graph is in the cache."""
    from zoo.cli import main

    assert main(["batch", str(EXAMPLES / "chelsea.png"), str(EXAMPLES / "coffee.png"), "--zoo", str(zoo_file),
                 "--models", "resnet18", "--precision", "fp32", "--compile", "auto", "--json"]) == 0
    out = capsys.readouterr()
    assert "resnet18: compiled (any batch): any batch loaded from the cache" in out.err, out.err
    assert "compiling the trunk" not in out.err


def test_result_header_says_which_path(r18):
    from ui.views.classify import result_markdown
    from zoo.features.classify import Result

    run = classify(r18, EXAMPLES / "chelsea.png")
    text = result_markdown(Result(run, explain(r18, run, "cam"), "cam", 0.1))
    assert "(fp32, compiled trunk)" in text
    run = classify(eager(r18), EXAMPLES / "chelsea.png")
    assert "(fp32, eager trunk)" in result_markdown(Result(run, explain(r18, run, "cam"), "cam", 0.1))
