"""MCP tools (ui/mcp.py): the official ``mcp`` client over streamable HTTP on loopback, against the real app.

The app here is launched with ``mcp_server=True`` and a ceiling of 5 s per request, so one
app shows both a classification that is admitted and an explanation that is refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLES, run_cli
from rest import result, upload

CEILING_S = 5.0


@pytest.fixture(scope="module")
def mcp_app(zoo, hosted):
    """(base url, MCP url) of an app serving the test zoo, its tools, and a 5 s ceiling per request."""
    from ui import build_app, launch_options
    from zoo.limits import Limits
    from zoo.runtime import Runtime

    explorer = Runtime(zoo, "cpu", precision="fp32")
    demo = build_app(explorer, limits=Limits(max_request_seconds=CEILING_S))
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            mcp_server=True, **launch_options(demo))
    url = url.rstrip("/")
    yield url, f"{url}/gradio_api/mcp/"
    demo.close()


def session_run(url: str, steps, headers: dict[str, str] | None = None) -> Any:
    """Run ``steps(session)`` in one MCP client session on ``url``, sending ``headers`` with every request."""
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(60, read=300)) as http:
            async with streamable_http_client(url, http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await steps(session)

    return asyncio.run(main())


def texts(res: Any) -> list[str]:
    return [c.text for c in res.content if c.type == "text"]


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_the_tool_list_is_the_documented_tools(mcp_app):
    from ui.mcp import TOOLS

    tools = session_run(mcp_app[1], lambda s: s.list_tools()).tools
    assert sorted(t.name for t in tools) == sorted(TOOLS)  # not the examples', batch, ranking or landscape endpoints
    by_name = {t.name: t for t in tools}
    for tool in tools:
        assert len(tool.description) > 80 and "Returns:" in tool.description, tool.name
        assert "upload_file_to_gradio" not in tool.description and ".. Returns" not in tool.description  # no such tool here
        props = tool.inputSchema["properties"]
        for name, prop in props.items():  # every argument is explained to the agent
            assert prop.get("description"), (tool.name, name)
    classify = by_name["classify"]
    assert list(classify.inputSchema["properties"]) == ["image", "model", "top_k", "method", "target"]
    assert "resnet18" in classify.inputSchema["properties"]["model"]["description"]
    assert "gradcam" in classify.inputSchema["properties"]["method"]["description"]
    assert classify.inputSchema["properties"]["image"]["type"] == "string"
    assert "layer1" in by_name["explain"].inputSchema["properties"]["layer"]["description"]
    assert "enum" not in classify.inputSchema["properties"]["target"]  # any class name or index, as the API takes
    assert "guided-gradcam" in by_name["sanity"].inputSchema["properties"]["methods"]["description"]


def test_classify_answers_as_the_http_endpoint(mcp_app):
    url, mcp_url = mcp_app
    photo = EXAMPLES / "chelsea.png"
    res = session_run(mcp_url, lambda s: s.call_tool("classify", {"image": data_url(photo), "model": "resnet18",
                                                                  "top_k": 5, "method": "cam", "target": ""}))
    assert not res.isError, texts(res)
    details = json.loads(texts(res)[-1])  # the JSON output
    images = [c for c in res.content if c.type == "image"]
    assert len(images) == 3 and all(base64.b64decode(c.data)[:3] for c in images)  # crop, photo, raw map
    rest = result(url, "classify", [upload(url, photo), "resnet18", 5, "cam", ""])[-1]
    assert [(p["index"], p["label"]) for p in details["predictions"]] == \
        [(p["index"], p["label"]) for p in rest["predictions"]]
    assert [p["prob"] for p in details["predictions"]] == pytest.approx([p["prob"] for p in rest["predictions"]],
                                                                        abs=1e-6)
    assert details["target"] == rest["target"] and details["model"] == "resnet18"
    labels = json.loads(texts(res)[0])  # the top-k as gradio's Label gives it
    assert labels["label"] == rest["predictions"][0]["label"]


def timeless(obj: Any) -> Any:
    """A feature's JSON without its timings, floats to 5 places (the command line runs in another process)."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [timeless(v) for v in obj]
    return round(obj, 5) if isinstance(obj, float) else obj


@pytest.mark.parametrize("tool, args, command", [
    ("classify", {"top_k": 5, "method": "cam", "target": ""}, ["classify", "--top", "5"]),
    ("explain", {"method": "gradcam", "layer": "layer3", "target": "espresso"},
     ["explain", "--method", "gradcam", "--layer", "layer3", "--target", "espresso"]),
])
def test_the_cli_the_endpoint_and_the_tool_give_one_json(mcp_app, zoo_file, tool, args, command):
    """Issue 32: ``python -m zoo <command> --json``, the endpoint's JSON output and the MCP tool's text are
    one object for one request (``zoo.features.classify``'s ``Result.to_json``), timings aside."""
    url, mcp_url = mcp_app
    photo = EXAMPLES / "coffee.png"
    res = session_run(mcp_url, lambda s: s.call_tool(tool, {"image": data_url(photo), "model": "resnet18", **args}))
    assert not res.isError, texts(res)
    rest = result(url, tool, [upload(url, photo), "resnet18", *args.values()])[-1]
    r = run_cli(*command, str(photo), "--model", "resnet18", "--zoo", str(zoo_file), "--precision", "fp32", "--json")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    assert timeless(json.loads(texts(res)[-1])) == timeless(rest) == timeless(cli)
    assert cli["model"] == "resnet18" and ("layer" in cli) == (tool == "explain")


def test_robustness_live_answers_as_the_http_endpoint(mcp_app):
    url, mcp_url = mcp_app
    photo = EXAMPLES / "chelsea.png"
    args = {"image": data_url(photo), "models": ["resnet18"], "corruption": "fog", "severity": 3, "method": "none"}
    res = session_run(mcp_url, lambda s: s.call_tool("robustness_live", args))
    assert not res.isError, texts(res)
    details = json.loads(texts(res)[-1])
    assert [c.type for c in res.content].count("image") == 1  # the corrupted crop
    rest = result(url, "robustness_live", [upload(url, photo), ["resnet18"], "fog", 3, "none"])[-1]
    assert (details["corruption"], details["severity"], details["seed"]) == ("fog", 3, rest["seed"])
    assert details["models"][0]["predictions"] == rest["models"][0]["predictions"]  # seeded: the same crop


def test_explain_takes_a_layer(mcp_app):
    res = session_run(mcp_app[1], lambda s: s.call_tool("explain", {
        "image": data_url(EXAMPLES / "coffee.png"), "model": "resnet18", "method": "gradcam", "layer": "layer3",
        "target": "espresso"}))
    assert not res.isError, texts(res)
    details = json.loads(texts(res)[-1])
    assert details["layer"] == "layer3" and details["target"]["label"] == "espresso"
    assert details["shape"] == [14, 14]  # layer3 of a 224 crop


def test_server_paths_and_private_urls_are_refused(mcp_app, tmp_path):
    url, mcp_url = mcp_app
    secret = tmp_path / "secret.png"
    secret.write_bytes((EXAMPLES / "chelsea.png").read_bytes())
    attempts = [str(secret), f"file://{secret}", "/etc/passwd", "examples/chelsea.png",
                {"path": str(secret), "meta": {"_type": "gradio.FileData"}},  # a FileData naming a server file
                f"{url}/gradio_api/file={secret}", "http://127.0.0.1:1/x.png", "http://169.254.169.254/latest"]

    async def steps(session):
        return [await session.call_tool("classify", {"image": a, "model": "resnet18"}) for a in attempts]

    for attempt, res in zip(attempts, session_run(mcp_url, steps)):
        assert res.isError, (attempt, texts(res))
        assert "tabby" not in " ".join(texts(res)), attempt
    # The HTTP API refuses the same loopback URL: the tool fetches nothing the API would not.
    payload = {"path": f"{url}/gradio_api/file={secret}", "url": f"{url}/gradio_api/file={secret}",
               "meta": {"_type": "gradio.FileData"}}
    from rest import call

    event, _ = call(url, "classify", [payload, "resnet18", 5, "cam", ""])
    assert event == "error"


def test_a_request_over_the_ceiling_is_refused(mcp_app):
    # Occlusion at a 16 px stride on ResNet-152: about 170 passes, far over 5 s at any measured speed
    # (and at the gate's assumed 0.3 s a pass before any forward was timed).
    res = session_run(mcp_app[1], lambda s: s.call_tool("explain", {
        "image": data_url(EXAMPLES / "chelsea.png"), "model": "resnet152", "method": "occlusion",
        "layer": "layer4", "target": ""}))
    assert res.isError
    text = " ".join(texts(res))
    assert "this server allows 5 s per request" in text, text


def test_the_zoo_tool_runs_no_model(mcp_app):
    res = session_run(mcp_app[1], lambda s: s.call_tool("zoo", {"resolution": 224}))
    assert not res.isError, texts(res)
    table = json.loads(texts(res)[-1])
    assert [m["name"] for m in table["models"]][:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert table["models"][0]["params"] == 11689512


def test_app_py_offers_mcp_by_flag_and_environment(monkeypatch):
    import app
    from ui.mcp import enabled

    assert app.build_parser().parse_args(["--mcp"]).mcp is True
    flag = app.build_parser().parse_args([]).mcp
    monkeypatch.setenv("RDE_MCP", "1")
    assert enabled(flag) is True
    monkeypatch.setenv("RDE_MCP", "0")
    assert enabled(flag) is False  # flag is None without --mcp: the environment decides


def guardrails_call(scope: dict, budget_bytes: int | None = None, guard=None) -> tuple[int, dict]:
    """ui.server's middleware on one request: (status, the scope the app behind it got)."""
    from types import SimpleNamespace

    from ui.guard import Guard
    from ui.server import Guardrails
    from zoo.limits import Limits

    seen: dict = {}
    status: list[int] = []

    async def app(scope, receive, send):
        seen.update(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    ctx = SimpleNamespace(guard=guard or Guard.create(Limits(upload_bytes=budget_bytes)))
    middleware = Guardrails(app, SimpleNamespace(rde_context=ctx, fns={}))
    asyncio.run(middleware({"type": "http", "method": "POST", "query_string": b"", **scope}, receive, send))
    return status[0], seen


def test_a_tool_calls_body_is_an_upload_and_its_caller_the_visitor():
    from ui.guard import RELAY_HEADER, VISITOR_HEADER, Guard, client_address
    from ui.server import MCP_MAX_BODY
    from starlette.datastructures import Headers
    from zoo.limits import Limits

    def scope(path, peer, length, *headers):
        return {"path": path, "client": (peer, 5000),
                "headers": [(b"content-length", str(length).encode()), *headers]}

    forged = (VISITOR_HEADER.encode(), b"198.51.100.7")
    # The caller's address travels with the tool call, whatever it claimed.
    status, seen = guardrails_call(scope("/gradio_api/mcp/", "203.0.113.5", 100, forged))
    assert status == 200 and dict(seen["headers"])[VISITOR_HEADER.encode()] == b"203.0.113.5"
    # From anyone else the header is dropped: only the app's own loopback client may send it ...
    status, seen = guardrails_call(scope("/gradio_api/queue/join", "203.0.113.5", 100, forged))
    assert VISITOR_HEADER.encode() not in dict(seen["headers"])
    status, seen = guardrails_call(scope("/gradio_api/queue/join", "127.0.0.1", 100, forged))
    assert VISITOR_HEADER.encode() not in dict(seen["headers"])  # loopback is not enough ...
    # ... it is believed only from loopback with the app's secret, which only its MCP client sends.
    secret = "s3cret"
    relay = Headers({VISITOR_HEADER: "203.0.113.5", RELAY_HEADER: secret})
    assert client_address(relay, "127.0.0.1", False, secret) == "203.0.113.5"
    assert client_address(relay, "203.0.113.9", False, secret) == "203.0.113.9"
    assert client_address(Headers({VISITOR_HEADER: "203.0.113.5", RELAY_HEADER: "guess"}), "127.0.0.1", False,
                          secret) == "127.0.0.1"
    assert client_address(Headers({VISITOR_HEADER: "203.0.113.5"}), "127.0.0.1", False, secret) == "127.0.0.1"
    # The body counts against the visitor's upload budget, and is bounded.
    for route in ("/gradio_api/mcp/", "/gradio_api/mcp/messages/"):  # streamable HTTP, and the SSE transport's
        assert guardrails_call(scope(route, "203.0.113.5", 2000), budget_bytes=1000)[0] == 429
    assert guardrails_call(scope("/gradio_api/mcp/", "203.0.113.5", MCP_MAX_BODY + 1))[0] == 413
    # The upload gradio's MCP server then makes for that call is not counted twice; a loopback
    # upload that only says it is gradio's MCP client (x-gradio-user: mcp) is counted.
    guard = Guard.create(Limits(upload_bytes=1000))
    mcp_upload = scope("/gradio_api/upload", "127.0.0.1", 2000, (b"x-gradio-user", b"mcp"),
                       (RELAY_HEADER.encode(), guard.relay_secret.encode()))
    assert guardrails_call(mcp_upload, guard=guard)[0] == 200
    for peer in ("127.0.0.1", "203.0.113.5"):
        assert guardrails_call(scope("/gradio_api/upload", peer, 2000, (b"x-gradio-user", b"mcp")),
                               guard=guard)[0] == 429


def test_app_py_serves_the_tools_when_rde_mcp_is_set(zoo_file, tmp_path):
    """``python app.py`` itself, as a Space starts it with the variable RDE_MCP=1."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from test_public import ROOT, free_port
    from ui.mcp import TOOLS

    port = free_port()
    env = {**os.environ, "RDE_MCP": "1", "TMPDIR": str(tmp_path), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    env.pop("GRADIO_EXAMPLES_CACHE", None)
    log = tmp_path / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--zoo", str(zoo_file)], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        tools = session_run(f"{url}/gradio_api/mcp/", lambda s: s.list_tools()).tools
        assert sorted(t.name for t in tools) == sorted(TOOLS)
    finally:
        proc.kill()
        proc.wait(timeout=60)


# --- pictures as images, no server path in any text (issue 31, item 5) -------------------------------

def server_paths_in(res: Any) -> list[str]:
    """Texts of a tool's answer (its text contents and embedded resources) that name a server path."""
    import os
    import tempfile

    roots = {os.environ["GRADIO_TEMP_DIR"], tempfile.gettempdir(), str(EXAMPLES.parent)}
    found = []
    for c in res.content:
        text = c.text if c.type == "text" else getattr(c.resource, "text", "") if c.type == "resource" else ""
        text += str(getattr(getattr(c, "resource", None), "uri", ""))
        if any(root in text for root in roots) or "gradio_api/file=" in text:
            found.append(text[:200])
    return found


def test_every_tools_pictures_are_images_and_no_text_names_a_server_path(proxied_app):
    image = data_url(EXAMPLES / "chelsea.png")
    calls = [("compare", {"image": image}),
             ("classify", {"image": image, "model": "resnet18", "top_k": 3, "method": "gradcam", "target": ""}),
             ("robustness_sweep", {"image": image, "models": ["resnet18"], "corruptions": ["fog"]})]

    async def steps(session):
        return [await session.call_tool(name, args) for name, args in calls]

    compare, classify, sweep = session_run(f"{proxied_app[1]}/gradio_api/mcp/", steps)
    for (name, _), res in zip(calls, (compare, classify, sweep)):
        assert not res.isError, (name, texts(res))
        assert server_paths_in(res) == [], (name, server_paths_in(res))
    kinds = [c.type for c in compare.content]
    assert kinds.count("image") == 5, kinds  # the gallery: one map per depth, each with its caption
    captions = [c.text for c in compare.content[1:10:2]]
    assert all(c.startswith("resnet") for c in captions), captions
    assert all(base64.b64decode(c.data)[:2] == b"\xff\xd8" for c in compare.content if c.type == "image")  # JPEG
    assert json.loads(texts(compare)[-1])["target"]["index"] >= 0
    assert [c.type for c in classify.content].count("image") == 3
    (csv,) = [c for c in sweep.content if c.type == "resource"]  # the CSV of every cell, by its name only
    assert csv.resource.mimeType == "text/csv" and "fog" in csv.resource.text
    assert str(csv.resource.uri).startswith("rde-output:///") and str(csv.resource.uri).endswith(".csv")


def test_a_refused_url_answers_with_the_apps_message(mcp_app):
    from ui.server import URL_REFUSED

    res = session_run(mcp_app[1], lambda s: s.call_tool("classify", {"image": "http://127.0.0.1:1/x.png",
                                                                    "model": "resnet18"}))
    assert res.isError and texts(res) == [URL_REFUSED], texts(res)


def test_an_image_of_over_4_mb_is_taken(mcp_app):
    """The MCP library refuses bodies over 4 MiB by default; the README promises 20 MB images."""
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (1100, 1100, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    assert len(url) > 4.3 * 2**20
    res = session_run(mcp_app[1], lambda s: s.call_tool("classify", {"image": url, "model": "resnet18", "top_k": 1}))
    assert not res.isError, texts(res)
    assert json.loads(texts(res)[-1])["predictions"]


# --- one visitor's identity, and a flood of its calls (issue 29, item 3) -----------------------------

def launch(zoo, limits, trust_proxy: bool) -> tuple[Any, str]:
    from ui import build_app, launch_options
    from zoo.runtime import Runtime

    demo = build_app(Runtime(zoo, "cpu", precision="fp32"), limits=limits, trust_proxy=trust_proxy)
    demo.queue(default_concurrency_limit=2, max_size=64)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            mcp_server=True, **launch_options(demo))
    return demo, url.rstrip("/")


@pytest.fixture(scope="module")
def no_proxy_app(zoo, hosted):
    """(demo, url): a public deployment without --trust-proxy: an upload budget of 1.2 MB per visitor."""
    from zoo.limits import Limits

    demo, url = launch(zoo, Limits(max_request_seconds=CEILING_S, upload_bytes=1_200_000), trust_proxy=False)
    yield demo, url
    demo.close()


FORGERIES = [{"x-forwarded-for": "8.8.8.1"}, {"x-forwarded-for": "9.9.9.9, 8.8.4.4"}, {"x-rde-visitor": "8.8.8.3"},
             {"x-gradio-user": "mcp"}, {"x-gradio-user": "mcp", "x-rde-visitor": "1.1.1.1",
                                        "x-forwarded-for": "1.0.0.1", "x-rde-relay": "guess"}]


def test_rotated_headers_get_no_turns_of_their_own(no_proxy_app, monkeypatch):
    demo, url = no_proxy_app
    gate = demo.rde_context.guard.gate
    visitors: list[str] = []
    admit = gate.admit
    monkeypatch.setattr(gate, "admit", lambda visitor, *a, **k: visitors.append(visitor) or admit(visitor, *a, **k))
    for headers in FORGERIES:
        res = session_run(f"{url}/gradio_api/mcp/", lambda s: s.call_tool("zoo", {"resolution": 224}), headers)
        assert not res.isError, texts(res)
    assert visitors == ["127.0.0.1"] * len(FORGERIES)  # the connection's address, whatever the headers said


def test_rotated_headers_get_no_upload_budget_of_their_own(no_proxy_app, tmp_path):
    import httpx

    demo, url = no_proxy_app
    budget = demo.rde_context.guard.uploads
    image = data_url(EXAMPLES / "chelsea.png")  # about 0.32 MB as a data URL: three fit in 1.2 MB, not four
    assert 0.3e6 < len(image) < 0.4e6
    from mcp.shared.exceptions import McpError

    async def classify(session):
        try:
            res = await session.call_tool("classify", {"image": image, "model": "resnet18", "top_k": 1})
        except McpError as e:  # refused before the call: a JSON-RPC error, not a broken transport
            return e.error.message
        assert not res.isError, texts(res)
        return "answered"

    answers = [session_run(f"{url}/gradio_api/mcp/", classify, headers) for headers in FORGERIES]
    assert answers[:3] == ["answered"] * 3, answers
    assert all(a.startswith("Upload limit reached") for a in answers[3:]), answers
    assert budget.used("127.0.0.1") <= budget.limit
    # Uploads that only claim to be gradio's MCP client, or someone else, are the connection's too.
    for headers in FORGERIES:
        r = httpx.post(f"{url}/gradio_api/upload", files=[("files", ("a.png", b"x" * 300_000))], headers=headers,
                       timeout=30)
        assert r.status_code == 429 and "Upload limit reached" in r.text, (headers, r.status_code, budget._sent)


@pytest.fixture(scope="module")
def proxied_app(zoo, hosted):
    """(demo, url): a Space-like deployment (--trust-proxy), visitors told apart by X-Forwarded-For; no ceiling."""
    from zoo.limits import Limits

    demo, url = launch(zoo, Limits(), trust_proxy=True)
    yield demo, url
    demo.close()


def test_a_flood_of_tool_calls_leaves_other_visitors_served_and_threads_come_back(proxied_app):
    import threading
    import time

    from rest import call

    demo, url = proxied_app
    calls = demo.rde_context.guard.calls
    flooder, other = {"x-forwarded-for": "8.8.8.1"}, {"x-forwarded-for": "8.8.8.2"}
    mcp_url = f"{url}/gradio_api/mcp/"

    def classify_as(headers: dict) -> str:
        import httpx

        r = httpx.post(f"{url}/gradio_api/upload", files=[("files", ("c.png", (EXAMPLES / "chelsea.png").read_bytes()))],
                       headers=headers, timeout=60)
        image = {"path": r.json()[0], "orig_name": "c.png", "meta": {"_type": "gradio.FileData"}}
        return call(url, "classify", [image, "resnet18", 3, "cam", ""], timeout=120)[0]

    # Warm up: the MCP server's loopback client and its threads, the model.
    assert not session_run(mcp_url, lambda s: s.call_tool("zoo", {"resolution": 224}), flooder).isError
    assert classify_as(other) == "complete"
    time.sleep(11)  # idle worker threads of earlier tests end (anyio's after 10 s, at its next call)
    assert not session_run(mcp_url, lambda s: s.call_tool("zoo", {"resolution": 224}), other).isError
    start = threading.active_count()

    from mcp.shared.exceptions import McpError

    async def one(session, i: int) -> str:
        try:
            res = await session.call_tool("zoo", {"resolution": 160 + i % 4 * 96})
        except McpError as e:  # refused before the MCP library parsed it: a JSON-RPC error
            return e.error.message
        return " ".join(texts(res)) if res.isError else "answered"

    async def flood(session):
        return await asyncio.gather(*[one(session, i) for i in range(40)])

    after = []
    for _ in range(2):  # two floods: threads do not pile up from one to the next
        answers: list[Any] = []
        flooding = threading.Thread(target=lambda: answers.extend(session_run(mcp_url, flood, flooder)))
        flooding.start()
        deadline = time.monotonic() + 60
        while calls.now == 0 and flooding.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert classify_as(other) == "complete"  # answered while the flood is under way
        flooding.join(timeout=300)
        assert not flooding.is_alive() and len(answers) == 40
        refused = [a for a in answers if a != "answered"]
        assert all("tool calls running on this server" in a for a in refused), refused[:3]
        assert refused and len(refused) < 40  # the excess refused at once; the rest answered
        # Every slot comes back: the last answers reach the client a moment before their slot is
        # released on the server (on a loaded machine, a beat later), so wait for it, with a bound.
        released = time.monotonic() + 30
        while calls.now and time.monotonic() < released:
            time.sleep(0.05)
        assert calls.now == 0
        # Idle worker threads end after 10 s (anyio's, pruned when the next call needs one): one cheap call later.
        time.sleep(11)
        assert not session_run(mcp_url, lambda s: s.call_tool("zoo", {"resolution": 224}), other).isError
        after.append(threading.active_count())
    # What stays is bounded by the calls that were in flight (the flooder's 4 and the other visitor's one),
    # not by the flood: pool threads kept for reuse (a call: one thread and two helpers), the gate's
    # workers (one per slot), an idle worker thread or two. Before, 200 calls left 147 more threads.
    limits = demo.rde_context.guard.limits
    bound = start + 3 * (limits.max_tool_calls + 1) + limits.long_slots + limits.quick_slots + 2
    assert max(after) <= bound, (start, after, bound)


def test_tool_calls_over_the_sse_transport_are_bounded_too(proxied_app):
    """The SSE transport answers each POST at once and runs the call afterwards: counted at the call."""
    import httpx
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    demo, url = proxied_app

    async def main():
        async with sse_client(f"{url}/gradio_api/mcp/sse", headers={"x-forwarded-for": "8.8.8.7"}) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await asyncio.gather(*[session.call_tool("zoo", {"resolution": 224}) for _ in range(16)])

    answers = asyncio.run(main())
    refused = [" ".join(texts(r)) for r in answers if r.isError]
    assert refused and len(refused) < 16, refused
    assert all("tool calls running on this server" in text for text in refused), refused
    assert demo.rde_context.guard.calls.now == 0
    assert httpx.get(f"{url}/config", timeout=30).status_code == 200
