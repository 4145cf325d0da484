"""One JSON per feature (issue 32): the CLI's ``--json``, the endpoint's JSON output and the MCP tool's text
are the same object for the same request, once timings and temporary paths are left out.

One app (the loopback Hub's test zoo, CPU, fp32, MCP on) serves every case; the CLI runs in this
process (``zoo.cli.main``); every request is ResNet-18 (or the one endpoint's fixed depths) on a
small image. Every feature is a case, with no exception: a front end that answers differently
fails its case (a case may be marked ``xfail(strict=True)`` with ``differs`` only while a fix is
under way, and the strict mark fails as soon as the answers agree).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image

from rest import result, upload

MODEL = "resnet18"
# Keys that are timings (or when something ran), never part of what a request answers.
TIMING_KEYS = {"seconds", "ms", "elapsed", "timestamp", "time", "started", "finished", "duration"}
TIMING_SUFFIXES = ("_s", "_ms", "_seconds")
TIMING_PREFIXES = ("ms_",)  # a batch decision's measured cost: ms_batch1, ms_per_image
# Measured as a timing is: the peak memory of a run's forwards (the process's RSS on CPU).
MEASURED_KEYS = {"peak_mb"}


def untimed(value: Any) -> Any:
    """``value`` without timing keys (nor measured memory), with every absolute path cut to its file name (a temporary
    copy of an upload has the visitor's file name, and the CLI's input the same one)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()
                if k not in TIMING_KEYS | MEASURED_KEYS and not k.endswith(TIMING_SUFFIXES)
                and not k.startswith(TIMING_PREFIXES)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and (value.startswith(tempfile.gettempdir())
                                                            or os.path.exists(value)):
        return Path(value).name
    return value


@dataclass(frozen=True)
class Case:
    """One feature's request as each front end takes it."""

    name: str
    cli: list[str] | None  # after "python -m zoo" (the image is IMAGE); None: no command for it
    api: str  # the endpoint
    rest: Callable[[Any], list[Any]]  # the endpoint's data, from the uploaded image's FileData
    json_at: int  # which of the endpoint's outputs is its JSON
    mcp: dict[str, Any] | None = None  # the tool's arguments (the image as IMAGE); None: not a tool
    differs: str = ""  # why today's front ends still differ: an xfail(strict) reason
    marks: tuple = field(default=())


IMAGE = "IMAGE"

CASES = [
    Case("classify", ["classify", IMAGE, "--model", MODEL, "--top", "5"], "classify",
         lambda img: [img, MODEL, 5, "cam", ""], 4,
         {"image": IMAGE, "model": MODEL, "top_k": 5, "method": "cam", "target": ""}),
    Case("explain", ["explain", IMAGE, "--model", MODEL, "--method", "gradcam", "--layer", "layer4"], "explain",
         lambda img: [img, MODEL, "gradcam", "layer4", ""], 2,
         {"image": IMAGE, "model": MODEL, "method": "gradcam", "layer": "layer4", "target": ""}),
    Case("compare", ["compare", IMAGE], "compare", lambda img: [img], 3, {"image": IMAGE}),
    Case("analyze", ["analyze", IMAGE, "--model", MODEL, "--lesion", "--deletions", "--relevance"], "analyze",
         lambda img: [img, MODEL, ""], -1, {"image": IMAGE, "model": MODEL, "target": ""}),
    Case("sanity", ["sanity", IMAGE, "--model", MODEL, "--methods", "gradcam", "edges"], "sanity",
         lambda img: [img, MODEL, ["gradcam", "edges"]], 1,
         {"image": IMAGE, "model": MODEL, "methods": ["gradcam", "edges"]}),
    Case("rank", ["rank", IMAGE, "--model", MODEL, "--methods", "cam", "gradcam"], "rank_methods",
         lambda img: [img, MODEL, "", ["cam", "gradcam"]], 1),
    Case("robustness_sweep", ["robustness", IMAGE, "--sweep", "--models", MODEL, "--corruptions", "fog"],
         "robustness_sweep", lambda img: [img, [MODEL], ["fog"]], 0,
         {"image": IMAGE, "models": [MODEL], "corruptions": ["fog"]}),
    Case("robustness_live", ["robustness", IMAGE, "--models", MODEL, "--corruption", "fog", "--severity", "3"],
         "robustness_live", lambda img: [img, [MODEL], "fog", 3, "none"], 1,
         {"image": IMAGE, "models": [MODEL], "corruption": "fog", "severity": 3, "method": "none"}),
    # The folder run on one image (the endpoint: severities 1-5, seed 0, as the CLI's defaults).
    Case("robustness_folder", ["robustness", IMAGE, "--models", MODEL, "--corruptions", "fog"], "robustness",
         lambda img: [[img], [MODEL], ["fog"]], 0),
    # The endpoint draws the tab's default surface: a 7 x 7 grid (the CLI's default is 11).
    Case("landscape", ["landscape", IMAGE, "--model", MODEL, "--grid", "7"], "landscape", lambda img: [img, MODEL], -1),
    # The page and /batch always add the decision ("Which depth should I ship?"): the CLI's --decide.
    Case("batch", ["batch", IMAGE, "--models", MODEL, "--decide"], "batch", lambda img: [[img], [MODEL]], 0),
    Case("zoo", ["list"], "zoo", lambda img: [224], 0, {"resolution": 224}),
    Case("selfcheck", ["selfcheck", "--models", MODEL], "selfcheck", lambda img: [[MODEL]], 1, {"models": [MODEL]}),
]


@pytest.fixture(scope="module")
def same_app(zoo, hosted):
    """(base url, MCP url) of the app on the test zoo, CPU and fp32 as the CLI is asked to run."""
    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    demo = build_app(Runtime(zoo, "cpu", precision="fp32"))
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            mcp_server=True, **launch_options(demo))
    url = url.rstrip("/")
    yield url, f"{url}/gradio_api/mcp/"
    demo.close()


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> Path:
    """A small photo-like PNG: quick to decode, upload and send as a data URL."""
    from conftest import EXAMPLES

    path = tmp_path_factory.mktemp("same-json") / "small.png"
    Image.open(EXAMPLES / "chelsea.png").convert("RGB").resize((96, 64)).save(path)
    return path


def cli_json(args: list[str], zoo_file: Path) -> Any:
    """``python -m zoo ARGS --json`` in this process: its stdout as JSON (the last line of JSON lines)."""
    from zoo.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--json", "--zoo", str(zoo_file),
                     *(["--device", "cpu", "--precision", "fp32"] if args[0] not in ("list",) else [])])
    assert code in (0, 1), out.getvalue()  # 1: a self-check that fails (random weights), still its JSON
    text = out.getvalue().strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def mcp_json(mcp_url: str, name: str, arguments: dict[str, Any]) -> Any:
    """The MCP tool's answer: its last text content, parsed."""
    from test_mcp import session_run, texts

    res = session_run(mcp_url, lambda s: s.call_tool(name, arguments))
    assert not res.isError, texts(res)
    return json.loads(texts(res)[-1])


def data_url(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.differs)] if case.differs else []
        yield pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", params())
def test_the_cli_the_endpoint_and_the_tool_answer_one_json(case, same_app, small_image, zoo_file):
    url, mcp_url = same_app
    image_data = upload(url, small_image)
    endpoint = untimed(result(url, case.api, case.rest(image_data))[case.json_at])
    assert case.cli is not None, f"no CLI command for {case.name}"
    cli = untimed(cli_json([str(small_image) if a == IMAGE else a for a in case.cli], zoo_file))
    assert cli == endpoint
    if case.mcp is not None:
        args = {k: data_url(small_image) if v == IMAGE else v for k, v in case.mcp.items()}
        assert untimed(mcp_json(mcp_url, case.api, args)) == endpoint
