"""An MCP client exchange with the app, and the self-check with and without faults, on generated weights.

    python benchmarks/mcp_selfcheck_demo.py

Offline: a loopback Hub (tests/hubserver.py) serves a ResNet-18 whose fc is solved so that the
example photos get their ImageNet classes (tests/selfcheck_weights.py), as ``resnet18``, plus
entries that carry one fault each. The app is launched in this process with its MCP server;
the official ``mcp`` client lists the tools and calls ``classify``. Then the self-check runs on
the good entry and on each fault (a BGR input is a fault of code, so it is put into the code).
Nothing here is timed: it prints what an agent and an operator would read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
TMP = Path(tempfile.mkdtemp(prefix="rde-mcp-demo-"))

from hubserver import FakeHub  # noqa: E402

HUB = FakeHub().start()
os.environ.update({"HF_ENDPOINT": HUB.url, "HF_HOME": str(TMP / "hf"), "HF_HUB_CACHE": str(TMP / "hf" / "hub"),
                   "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                   "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(TMP / "gradio")})
for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "ZOO_FILE", "SPACE_ID"):
    os.environ.pop(var, None)


def commit(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def main() -> None:
    from selfcheck_weights import save, selfcheck_state, swapped_keys

    from zoo.models import imagenet_labels
    from zoo.registry import Zoo
    from zoo.features.selfcheck import selfcheck
    from zoo.selfcheck import report
    from zoo.runtime import Runtime

    state = selfcheck_state()
    good = HUB.add("demo/good", commit("good"), "model.safetensors", save(state, TMP / "good.safetensors"))
    keys = HUB.add("demo/keys", commit("keys"), "model.safetensors", save(swapped_keys(state), TMP / "keys.safetensors"))
    labels = list(imagenet_labels())

    def entry(name: str, hosted: object, repo: str, **extra: object) -> str:
        fields = {"name": name, "arch": "resnet18", "repo": repo, "revision": commit(repo.split("/")[1]),
                  "sha256": hosted.sha256, "top1": 69.76, "top5": 89.08, **extra}
        return "[[model]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in fields.items()) + "\n"

    zoo_file = TMP / "zoo.toml"
    zoo_file.write_text("\n".join([
        entry("resnet18", good, "demo/good"),
        entry("wrong-norm", good, "demo/good", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        entry("shuffled", good, "demo/good", labels=labels[1:] + labels[:1]),
        entry("wrong-keys", keys, "demo/keys"),
    ]))
    explorer = Runtime(Zoo.load(zoo_file), "cpu", precision="fp32")

    print("=" * 100, "\nMCP: python app.py --mcp serves the tools at /gradio_api/mcp/ (streamable HTTP)\n")
    from ui import build_app, launch_options

    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                            mcp_server=True, **launch_options(demo))
    try:
        asyncio.run(exchange(url.rstrip("/") + "/gradio_api/mcp/"))
    finally:
        demo.close()

    print("=" * 100, "\nSelf-check (python -m zoo selfcheck --models ...) on the generated weights\n")
    print(report(selfcheck(explorer, ["resnet18"])), "\n")
    print("--- with a fault: each entry carries one -----------------------------------------------------\n")
    print(report(selfcheck(explorer, ["wrong-norm", "shuffled", "wrong-keys"])), "\n")
    print("--- with a fault in the code: the pipeline feeds BGR -----------------------------------------\n")
    import zoo.inference

    original = zoo.inference.to_tensor
    zoo.inference.to_tensor = lambda crop, pre: original(crop, pre).flip(1)
    try:
        print(report(selfcheck(explorer, ["resnet18"])))
    finally:
        zoo.inference.to_tensor = original


async def exchange(mcp_url: str) -> None:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(mcp_url) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print(f"server: {init.serverInfo.name}, protocol {init.protocolVersion}\n")
            print(">>> tools/list")
            for tool in (await session.list_tools()).tools:
                print(f"\n{tool.name}: {tool.description}")
                for name, prop in tool.inputSchema["properties"].items():
                    default = f" [default {prop['default']!r}]" if "default" in prop else ""
                    print(f"    {name} ({prop.get('type', '?')}){default}: {prop.get('description', '')}")
            photo = ROOT / "examples" / "chelsea.png"
            args = {"image": "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode(),
                    "model": "resnet18", "top_k": 3, "method": "gradcam", "target": ""}
            shown = {**args, "image": args["image"][:40] + f"... ({len(args['image'])} characters)"}
            print(f"\n>>> tools/call classify {json.dumps(shown)}")
            res = await session.call_tool("classify", args)
            print(f"isError: {res.isError}")
            for c in res.content:
                if c.type == "image":
                    print(f"  image: {c.mimeType}, {len(base64.b64decode(c.data))} bytes")
                else:
                    print(f"  text: {c.text[:400]}{' ...' if len(c.text) > 400 else ''}")
            print("\n>>> tools/call classify with a server path as the image")
            res = await session.call_tool("classify", {"image": "/etc/passwd", "model": "resnet18"})
            print(f"isError: {res.isError}; " + " ".join(c.text for c in res.content if c.type == "text")[:300])
            print()


if __name__ == "__main__":
    try:
        main()
    finally:
        HUB.stop()
