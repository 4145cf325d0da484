"""Shared fixtures: a loopback Hub serving generated weights, and a zoo file naming them.

The environment is set here, at import, before huggingface_hub (or gradio, which
imports it) is imported anywhere: they read HF_ENDPOINT and HF_HOME once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
_TMP = Path(tempfile.mkdtemp(prefix="rde-tests-"))

from hubserver import FakeHub  # noqa: E402

HUB = FakeHub().start()
os.environ.update({
    "HF_ENDPOINT": HUB.url,
    "HF_HOME": str(_TMP / "hf-home"),
    "HF_HUB_CACHE": str(_TMP / "hf-home" / "hub"),
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_ETAG_TIMEOUT": "5",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "GRADIO_TEMP_DIR": str(_TMP / "gradio"),
})
os.environ.pop("HF_HUB_OFFLINE", None)
# The suite's app and CLI runs stay eager: compiling a model costs tens of seconds of CPU
# (app.py would do it in the background). tests/test_compile.py asks for it explicitly.
os.environ["ZOO_COMPILE"] = "off"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("ZOO_FILE", None)
for _var in ("SPACE_ID", "SPACES_ZERO_GPU", "ZOO_CACHE_EXAMPLES", "GRADIO_CACHE_EXAMPLES", "GRADIO_CACHE_MODE"):
    os.environ.pop(_var, None)  # tests run as a local app: lazy example caching, no ZeroGPU

import pytest  # noqa: E402

# ZOO_TEST_NO_NATIVE_BF16=1 runs the suite as on a CPU without AMX or AVX-512 BF16, in this
# process and in the CLI runs below: ``auto`` resolves to fp32 and an explicit bf16 is refused.
# (Subprocesses that start app.py still see the real CPU; none of them compares figures.)
NO_NATIVE_BF16 = os.environ.get("ZOO_TEST_NO_NATIVE_BF16") == "1"
if NO_NATIVE_BF16:
    from zoo import precision as _precision

    _precision.cpu_bf16_native = lambda: False

ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
EXAMPLES = _ROOT / "examples"


def commit_for(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def make_weights(arch: str, path: Path, seed: int = 0, num_classes: int = 1000) -> Path:
    """Random-init torchvision weights with the real key names and shapes, as safetensors."""
    import torch
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    # Random init leaves BN statistics at 0/1 and gives near-uniform outputs; make the
    # network decisive so top-k orderings are meaningful in parity tests.
    with torch.no_grad():
        model.fc.weight.mul_(20)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def plain_model(arch: str, hosted: dict):
    """torchvision's own model (BatchNorm unfolded, fp32, eval) from the hosted safetensors: the reference."""
    import torchvision
    from safetensors.torch import load_file

    m = torchvision.models.get_model(arch, weights=None)
    m.load_state_dict(load_file(str(hosted[arch].path)))
    return m.eval()


def hook_count(module) -> int:
    """Every hook on every submodule of ``module``: zero when an explanation cleaned up."""
    from zoo.explain import _HOOK_DICTS

    return sum(len(getattr(m, d)) for m in module.modules() for d in _HOOK_DICTS if hasattr(m, d))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return _ROOT


@pytest.fixture(scope="session")
def shots(repo_root) -> Path:
    """Where browser tests save their screenshots (kept as CI artefacts)."""
    folder = repo_root / "test-artifacts"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def hub() -> FakeHub:
    return HUB


@pytest.fixture(autouse=True)
def _reset_hub():
    HUB.reset()
    yield
    HUB.reset()


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    d = _TMP / "weights"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def hosted(weights_dir) -> dict[str, object]:
    """The five depths on the loopback Hub as test/<arch> at a fixed commit."""
    out = {}
    for i, arch in enumerate(ARCHS):
        path = make_weights(arch, weights_dir / f"{arch}.safetensors", seed=i)
        out[arch] = HUB.add(f"test/{arch}", commit_for(arch), "model.safetensors", path)
    return out


def zoo_toml(hosted: dict, **overrides: dict) -> str:
    """A zoo file whose entries replace the built-ins with the hosted test weights."""
    lines = []
    for arch, f in hosted.items():
        entry = {"name": arch, "arch": arch, "repo": f"test/{arch}", "revision": commit_for(arch),
                 "sha256": f.sha256, "top1": 50.0, "top5": 75.0, **overrides.get(arch, {})}
        lines.append("[[model]]")
        for k, v in entry.items():
            lines.append(f"{k} = {v!r}".replace("'", '"'))
        lines.append("")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def zoo_file(hosted) -> Path:
    path = _TMP / "test-zoo.toml"
    path.write_text(zoo_toml(hosted))
    return path


@pytest.fixture(scope="session")
def zoo(zoo_file):
    from zoo.registry import Zoo

    return Zoo.load(zoo_file)


@pytest.fixture
def cold_cache(monkeypatch, tmp_path) -> Path:
    """An empty Hub cache for this test only."""
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def app(zoo, hosted):
    """The app on 127.0.0.1, serving the test zoo; yields (url, explorer).

    In fp32 whatever the CPU: tests compare what it serves with plain fp32 torchvision
    (tests/test_batch.py) and with ``--precision fp32`` CLI runs. What ``auto`` picks is
    tested in tests/test_precision.py.
    """
    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu", precision="fp32")
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            **launch_options(demo))
    yield url.rstrip("/"), explorer
    demo.close()


@pytest.fixture(scope="session")
def client(app):
    from gradio_client import Client

    return Client(app[0], verbose=False)


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m zoo ...`` in a subprocess, with this session's Hub environment."""
    full_env = {**os.environ, **(env or {})}
    command = [sys.executable, "-m", "zoo"]
    if NO_NATIVE_BF16:  # the same CPU as this process pretends to be
        command = [sys.executable, "-c", "import runpy, zoo.precision as m; m.cpu_bf16_native = lambda: False; "
                   "runpy.run_module('zoo', run_name='__main__')"]
    return subprocess.run([*command, *args], cwd=_ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def pytest_sessionfinish(session, exitstatus):
    HUB.stop()
    shutil.rmtree(_TMP, ignore_errors=True)


def explained(rt, *args, **kwargs):
    """``zoo.features.classify``'s result for these raw values: ``Request.create(rt, ...)`` run to its end."""
    from zoo.features import classify

    return classify.result(rt, classify.Request.create(rt, *args, **kwargs))
