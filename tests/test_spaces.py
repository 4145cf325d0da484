"""Hugging Face Spaces, simulated: ZeroGPU's rules, preloading, example caching, the front matter.

A Space is simulated by the variables the platform sets (``SPACE_ID``; on ZeroGPU also
``SPACES_ZERO_GPU``) and, for ZeroGPU, a stand-in ``spaces`` package
(``tests/fake_spaces``) that records what the real one would schedule. It cannot
emulate CUDA, so these runs use the CPU: what ZeroGPU does with the GPU itself is not
tested here (see the README's deploy section).
"""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import EXAMPLES, commit_for
from rest import result, upload
from ui import spaces
from zoo.features.classify import map_estimate

FAKE_SPACES = Path(__file__).resolve().parent / "fake_spaces"
SPACE_VARS = ("SPACE_ID", "SPACES_ZERO_GPU", "ZOO_CACHE_EXAMPLES")


@pytest.fixture
def clean_env(monkeypatch):
    for var in SPACE_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
def fake_spaces_importable(clean_env):
    clean_env.syspath_prepend(str(FAKE_SPACES))
    yield clean_env
    sys.modules.pop("spaces", None)


# --- in-process: detection, durations, policy ----------------------------------------

def test_zero_gpu_needs_the_variable_and_the_package(clean_env, tmp_path):
    assert not spaces.zero_gpu()
    clean_env.setenv("SPACES_ZERO_GPU", "true")
    clean_env.setattr(sys, "path", [p for p in sys.path if "fake_spaces" not in p])
    assert not spaces.zero_gpu()  # the variable alone: no `spaces` package here
    clean_env.syspath_prepend(str(FAKE_SPACES))
    assert spaces.zero_gpu()
    for off in ("0", "false", ""):
        clean_env.setenv("SPACES_ZERO_GPU", off)
        assert not spaces.zero_gpu()


def _estimates():
    from zoo.registry import Zoo
    from zoo.runtime import Runtime

    explorer = Runtime(Zoo.load(None), "cpu")

    def cost(image, model, top_k, method, target, progress=None, window=32, stride=16, steps=32):
        params = {"window": window, "stride": stride} if method == "occlusion" else (
            {"steps": steps} if method == "integrated-gradients" else {})
        return map_estimate(explorer, [model], method, params)

    def cost_many(image, models, method, target, progress=None):
        return map_estimate(explorer, models or [s.name for s in explorer.zoo.builtin_depths], method)

    return cost, cost_many


def test_gpu_is_identity_off_zerogpu_and_spaces_gpu_on_it(fake_spaces_importable, tmp_path):
    def run_one(image, model, top_k, method, target, progress, window=32, stride=16, steps=32):
        return method

    cost, _ = _estimates()
    assert spaces.gpu(cost=cost)(run_one) is run_one
    assert spaces.gpu(run_one) is run_one
    fake_spaces_importable.setenv("SPACES_ZERO_GPU", "true")
    log = tmp_path / "log.jsonl"
    fake_spaces_importable.setenv("FAKE_SPACES_LOG", str(log))
    wrapped = spaces.gpu(cost=cost)(run_one)
    assert wrapped is not run_one and wrapped("x.png", "resnet18", 5, "occlusion", "", None) == "occlusion"
    events = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert {"event": "decorate", "fn": run_one.__qualname__, "duration": "callable"} in events
    assert {"event": "call", "fn": run_one.__qualname__,
            "duration": spaces.gpu_seconds_of(cost, "x.png", "resnet18", 5, "occlusion", "", None)} in events
    fixed = spaces.gpu(duration=spaces.LATENCY_S)(lambda: 1)
    assert fixed() == 1


def test_durations_follow_the_pages_estimate_and_stay_within_a_visitors_quota():
    cost, cost_many = _estimates()

    def one(*args, **kwargs):
        return spaces.gpu_seconds_of(cost, *args, **kwargs)

    def many(*args, **kwargs):
        return spaces.gpu_seconds_of(cost_many, *args, **kwargs)

    cam = one(None, "resnet50", 5, "cam", "", None)
    assert cam == 19  # 15 s to start + 3 s for the model + one pass
    # Occlusion, window 32 stride 16: 13 x 13 positions + the unoccluded pass = 170 forwards, + classify.
    assert one(None, "resnet50", 5, "occlusion", "", None) == 27  # ceil(15 + 3 + 171 * 0.05)
    # Integrated Gradients: 64 forwards and backwards (a backward ~ two forwards' worth), + classify.
    assert one(None, "resnet50", 5, "integrated-gradients", "", None, steps=64) == 28  # ceil(18 + 193 * 0.05)
    # Parameters over the server's limits fail before any pass: no long GPU slot for them.
    assert one(None, "resnet50", 5, "occlusion", "", None, window=8, stride=4) == 18  # start + one model
    assert many(None, [], "cam", "", None) == 31  # all five depths: ceil(15 + 5 * 3.05)
    assert many(None, ["resnet18", "resnet50"], "cam", "", None) == 22
    assert spaces.gpu_seconds(10**6, 5) == spaces.MAX_S


def test_space_policy_preload_and_example_caching(fake_spaces_importable):
    env = fake_spaces_importable
    names, builtins = ["resnet18", "resnet50", "mine"], ["resnet18", "resnet50"]
    assert spaces.preload_names([], names, builtins) == [] and spaces.example_cache_mode() == "lazy"  # local
    assert spaces.preload_names(["all"], names, builtins) == names
    assert spaces.preload_names(["mine"], names, builtins) == ["mine"]
    env.setenv("SPACE_ID", "someone/resnet-depth-explorer")  # a CPU Space
    assert spaces.preload_names([], names, builtins) == builtins and spaces.example_cache_mode() == "eager"
    assert spaces.preload_names(["none"], names, builtins) == []
    env.setenv("SPACES_ZERO_GPU", "true")  # ZeroGPU: preloaded, examples cached at first use
    assert spaces.preload_names([], names, builtins) == builtins and spaces.example_cache_mode() == "lazy"
    env.setenv("ZOO_CACHE_EXAMPLES", "off")
    assert spaces.example_caching() == {"cache_examples": False, "cache_mode": "lazy"}
    env.setenv("ZOO_CACHE_EXAMPLES", "eager")
    assert spaces.example_caching() == {"cache_examples": True, "cache_mode": "eager"}


# --- the app in a subprocess, as a Space starts it ------------------------------------

def one_arch_zoo(hosted, path: Path) -> Path:
    """The five built-in names, each backed by the small resnet18 test weights (cheap to preload)."""
    f = hosted["resnet18"]
    entries = [f'[[model]]\nname = "{name}"\narch = "resnet18"\nrepo = "test/resnet18"\n'
               f'revision = "{commit_for("resnet18")}"\nsha256 = "{f.sha256}"\ntop1 = 50.0\n'
               for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")]
    path.write_text("\n".join(entries))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(repo_root: Path, env: dict, out: Path, timeout: float = 300) -> tuple[subprocess.Popen, str]:
    """``python app.py`` with ``env``; returns once the page answers (or fails with its output)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=repo_root, env=env,
                            stdout=out.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited with {proc.returncode}:\n{out.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"app.py did not answer within {timeout} s:\n{out.read_text()[-4000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def space_env(hosted, tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SPACE_VARS}
    env.update({"SPACE_ID": "someone/resnet-depth-explorer", "SYSTEM": "spaces", "FAKE_SPACES_RECORD": "1",
                "FAKE_SPACES_LOG": str(tmp_path / "spaces.jsonl"),
                "ZOO_FILE": str(one_arch_zoo(hosted, tmp_path / "z.toml")),
                "HF_HUB_CACHE": str(tmp_path / "hub"), "GRADIO_EXAMPLES_CACHE": str(tmp_path / "examples"),
                "PYTHONPATH": os.pathsep.join([str(FAKE_SPACES), env.get("PYTHONPATH", "")]), **extra})
    return env


def test_simulated_zerogpu_space_preloads_at_start_and_runs_models_only_inside_gpu_calls(hosted, tmp_path, repo_root):
    log = tmp_path / "spaces.jsonl"
    env = space_env(hosted, tmp_path, SPACES_ZERO_GPU="true")
    out = tmp_path / "app.out"
    proc, url = start_app(repo_root, env, out)
    try:
        started = len(log.read_text().splitlines())
        image = upload(url, EXAMPLES / "chelsea.png")
        *_, details = result(url, "classify", [image, "resnet50", 5, "cam", ""])
        assert details["model"] == "resnet50" and details["device"] == "cpu"
        *_, cmp = result(url, "compare", [image])
        assert len(cmp["models"]) == 5
        assert "cached example" in result(url, "classify_example", [0])[4]
    finally:
        stop(proc)
    printed = out.read_text()
    names = "resnet18, resnet34, resnet50, resnet101, resnet152"
    assert re.search(rf"fake spaces imported.*Preloaded {names} on cpu", printed, re.S), printed[-3000:]
    events = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert events[0] == {"event": "import"}
    # Preloading: every built-in loaded once, at start, in the main process; none later.
    loads = [e for e in events if e["event"] == "load"]
    assert [e["name"] for e in loads] == names.split(", ") and not any(e["inside_gpu"] for e in loads)
    assert all(e["event"] != "load" for e in events[started:])
    # Every model-running function is a GPU function with a duration.
    decorated = {e["fn"].split(".")[-1]: e["duration"] for e in events if e["event"] == "decorate"}
    expected = {"run_one": "callable", "run_compare": "callable", "timed_rows": spaces.LATENCY_S}
    assert expected.items() <= decorated.items(), decorated
    assert all(d == "callable" or 0 < d <= spaces.MAX_S for d in decorated.values()), decorated
    calls = [e for e in events if e["event"] == "call"]
    assert [c["fn"].split(".")[-1] for c in calls] == ["run_one", "run_compare", "run_one"]
    assert [c["duration"] for c in calls] == [19, 31, 19]
    work = [e for e in events if e["event"] == "model"]
    assert [e["name"] for e in work] == ["resnet50", "compare", "resnet50"]
    assert all(e["inside_gpu"] for e in work), work


def test_simulated_cpu_space_preloads_and_caches_every_example_at_start(hosted, tmp_path, repo_root):
    env = space_env(hosted, tmp_path)
    out = tmp_path / "app.out"
    proc, url = start_app(repo_root, env, out)
    try:
        # Eager caching: both example sets fill their cache without anyone asking.
        deadline = time.monotonic() + 300
        counts: list[int] = []
        while time.monotonic() < deadline:
            logs = sorted((tmp_path / "examples").glob("*/log.csv"))
            counts = sorted(len(list(csv.reader(f.open(encoding="utf-8")))) - 1 for f in logs)
            if counts == [2, 4]:
                break
            time.sleep(1)
        assert counts == [2, 4], (counts, out.read_text()[-3000:])
        labels, *_, info = result(url, "classify_example", [2])[:5]
        assert "cached example" in info and labels["confidences"]
        # After preloading, the self-check's line is in the page header (zoo/selfcheck.py): the generated
        # weights give no ImageNet answers, and the line says so.
        header = next(c["props"]["value"] for c in httpx.get(f"{url}/config").json()["components"]
                      if c["props"].get("elem_id") == "page-header")
        assert "Self-check: 0 of 5 models pass" in header and "wrong keys" in header, header
    finally:
        stop(proc)
    printed = out.read_text()
    assert "Preloaded resnet18, resnet34, resnet50, resnet101, resnet152 on cpu" in printed
    # `spaces` is installed on a CPU Space too (gradio imports it), but nothing is wrapped.
    events = [json.loads(ln) for ln in (tmp_path / "spaces.jsonl").read_text().splitlines()]
    assert events[0] == {"event": "import"} and not [e for e in events if e["event"] in ("decorate", "call")]
    assert [e["name"] for e in events if e["event"] == "load"] == ["resnet18", "resnet34", "resnet50", "resnet101",
                                                                    "resnet152"]


# --- the README's front matter, as the Hub reads it -----------------------------------

ZEROGPU_PYTHONS = ("3.10", "3.12")  # https://huggingface.co/docs/hub/spaces-zerogpu: 3.10.13 and 3.12.12


def front_matter(readme: Path) -> dict:
    import yaml  # PyYAML comes with gradio

    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must open with the Space's YAML front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def requirement(repo_root: Path, name: str):
    from packaging.requirements import Requirement

    for line in (repo_root / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and Requirement(line).name.lower() == name:
            return Requirement(line)
    raise AssertionError(f"{name} is not in requirements.txt")


def test_front_matter_is_one_a_zerogpu_space_accepts_and_matches_the_code(repo_root):
    import tomllib

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    from zoo.registry import BUILTIN

    fm = front_matter(repo_root / "README.md")
    assert fm["sdk"] == "gradio" and (repo_root / fm["app_file"]).is_file()
    python = str(fm["python_version"])
    assert python in ZEROGPU_PYTHONS or python.rsplit(".", 1)[0] in ZEROGPU_PYTHONS, python
    requires = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(python) in SpecifierSet(requires.split("#")[0].strip()), (python, requires)
    sdk = Version(str(fm["sdk_version"]))
    assert len(sdk.release) == 3 and sdk in requirement(repo_root, "gradio").specifier  # what the Space installs
    assert sdk.major >= 4  # ZeroGPU: Gradio 4+

    check_preload_lines(fm["preload_from_hub"], BUILTIN)


def check_preload_lines(items: list, builtin) -> None:
    """The front matter's ``preload_from_hub`` agrees with the registry: one line per built-in repo, its file,
    and the registry's commit where the registry pins one (none where it follows main)."""
    lines = [str(item).split() for item in items]
    by_repo = {spec.repo: spec for spec in builtin}
    assert sorted(parts[0] for parts in lines) == sorted(by_repo), "one line per built-in repo"
    for repo, *rest in lines:
        spec = by_repo[repo]
        assert rest and rest[0].split(",") == [spec.filename], (repo, rest)
        commit = rest[1] if len(rest) > 1 else None
        # A pinned registry entry must be pinned to the same commit here; an unpinned one follows main.
        assert commit == (spec.revision if spec.pinned else None), (repo, commit, spec.revision)
