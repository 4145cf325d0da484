"""The app's named endpoints as Model Context Protocol tools: ``python app.py --mcp`` (or ``RDE_MCP=1``).

Gradio 6 serves an app's public endpoints as MCP tools at ``/gradio_api/mcp`` (streamable
HTTP) when launched with ``mcp_server=True`` (the ``gradio[mcp]`` extra). A tool call is
not a second way in: gradio's MCP server calls the endpoint over HTTP on loopback with
``gradio_client``, so it passes through everything a raw API call passes through (the
middleware of ``ui.server``, gradio's queue, the guarded handler of ``ui.guard`` with its
cost ceiling, lanes and token, ``ui.common.checked_upload`` for every image), and then the
same ``zoo`` functions.

What this module adds:

* **Which endpoints are tools** (``TOOLS``): classify, explain, compare, analyze, sanity,
  robustness_live, robustness_sweep, zoo and selfcheck; not the examples' endpoints, nor Batch, Method ranking and Error
  surfaces (long, many-file runs that an agent is better off asking for on the page).
* **What an agent reads.** A tool's description and its arguments' are parsed by gradio
  from the function's docstring (``Args:`` / ``Returns:``), and that text is all an agent
  sees; ``describe_tools`` gives each tool's handler its name and the text below, with the
  valid values (models, methods, layers) of this app filled in.
* **Images.** Gradio turns an image argument given as an ``http(s)`` URL into a payload the
  server fetches, as it does for a raw API call (with gradio's SSRF protection: no
  loopback or private addresses), and a ``data:image/...;base64,`` URL into a file it uploads
  through ``/gradio_api/upload`` (the 20 MB limit applies). Any other string (a server path)
  is refused by gradio before anything is opened, and a FileData object naming a path is
  refused by the tool's input schema (the image is a string). ``ui.server`` counts a tool
  call's body against the visitor's upload budget and passes the visitor's address on, so
  the gate's turns and limits are the caller's own, not those of the loopback client.
* **Calls and answers** (``_adapt_calls``): tool calls bounded per visitor before they take a
  thread, the visitor vouched for by the app's secret, 28 MB bodies, pictures as images.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from zoo.explain import METHODS, STAGES

ENV = "RDE_MCP"  # set to 1 (e.g. a Space's variable) to serve the tools without --mcp

IMAGE = ("image: the image, as an http(s) URL this server can download (public addresses only) or a "
         "data URL (data:image/png;base64,...), at most 20 MB; JPEG, PNG, WebP, GIF, BMP or TIFF.")
MODEL = "model: which network: {models} (default resnet50; deeper is slower, not always better)."
TARGET = ("target: the ImageNet class to explain, as a name ('tabby') or an index 0-999; empty (default) means "
          "the model's top-1 class.")

TOOLS: dict[str, str] = {
    "classify": f"""Classify an image with one ImageNet ResNet and explain the decision with a heat map.

Args:
    {IMAGE}
    {MODEL}
    top_k: how many classes to return, a whole number from 1 to 20 (default 5).
    method: the explanation method, one of {{methods}} (default cam: free; occlusion and integrated-gradients cost tens of passes).
    {TARGET}

Returns:
    the top-k classes with probabilities; the heat map over the 224x224 crop the model saw; the map over the whole photo; the raw map with a colour bar; and a JSON object with model, device, precision, predictions [{{index, label, prob}}], target {{index, label, prob}}, method, seconds and notes.
""",
    "explain": f"""Show where one ResNet looked when it scored one class: a heat map from an attribution method read at one stage of the network.

Args:
    {IMAGE}
    {MODEL}
    method: the attribution method, one of {{methods}} (default cam). cam works at layer4 only; input methods (saliency, integrated-gradients, occlusion, edges) ignore the layer.
    layer: the stage the map is read from, one of {{layers}} (default layer4): layer1 gives fine 56x56 maps of simple features, layer4 coarse 7x7 maps of whole objects.
    {TARGET}

Returns:
    the map over the model's 224x224 crop; the raw map with a colour bar and its unit; and a JSON object as classify's, plus the layer used and faithfulness (null: this tool does not score the map).
""",
    "compare": f"""Classify one image with all five depths (ResNet-18, 34, 50, 101, 152) and compare where each looked, with CAM maps for the class most depths agree on, on a shared colour scale.

Args:
    {IMAGE}

Returns:
    the five maps (a gallery); the top-5 of each depth as a table; a summary sentence; and a JSON object with target {{index, label, chosen}}, agreement (which depths agree on the top-1), map_agreement (Spearman correlation and top-20% IoU of the maps between every pair of depths; transfer, the evidence-transfer matrix, is null from this tool) and models (each depth's predictions).
""",
    "analyze": f"""Depth lab: how each residual block of one ResNet responds to the image (He et al. 2016), how much it changes its input, how much gradient reaches it, and what deleting each block costs (Veit et al. 2016). Dozens to hundreds of forward passes: the deeper the model, the longer.

Args:
    {IMAGE}
    {MODEL}
    {TARGET}

Returns:
    seven charts (the seventh: the share of each block's relevance that flows into its residual branch, LRP epsilon-plus-flat) and a summary; the JSON object last: {{model, target, precision, blocks: [{{name, stage, downsample, response_std, residual_ratio, grad_norm, lesion: {{prob, logit, top1}}, relevance: {{shortcut, branch, share_branch}}}}], deletions: [{{k, draws, prob_mean, top1_kept}}], relevance: {{composite, target, logit, input_relevance, conservation}}}}. Compare each block's lesion.prob with target.prob: the drop is what that block contributes; set relevance.share_branch beside it: a branch that carries little relevance should cost little when deleted.
""",
    "sanity": f"""Can a heat map be trusted? Re-initialises the model's weights from the top (fc, layer4 ... the stem, cumulatively, seed 0) and recomputes each method's map; a map that barely changes does not depend on what the network learned (Adebayo et al. 2018).

Args:
    {IMAGE}
    {MODEL}
    methods: the methods to check, a list from {{methods}} (default: {{sanity_methods}}; edges is the control, a map that reads no network). Each step costs one classification and one map per method.

Returns:
    a strip of maps per method; and a JSON object with, per method, each step's similarity to the original map (Spearman rank correlation, SSIM), a verdict, mprt (efficient MPRT: the rise in the map's entropy from the original to the fully randomized model; smooth MPRT is null here) and readings (those numbers in words).
""",
    "robustness_live": f"""Robustness, one corruption: the image corrupted by one ImageNet-C corruption (Hendrycks & Dietterich 2019) at one severity, applied to the 224x224 crop the models see, then every chosen depth's prediction and heat map on that crop. Random corruptions are seeded (from base seed 0, per image, corruption and severity; the seed used is in the JSON), so a call reproduces exactly.

Args:
    {IMAGE}
    models: the depths to run, a list from {{models}} (empty: the five built-in depths).
    corruption: one of {{corruptions}}.
    severity: a whole number from 0 (clean) to 5 (harshest).
    method: the map method on the corrupted crop, one of {{methods}}, or none for predictions only.

Returns:
    the corrupted crop (PNG, exactly what the models saw); and a JSON object {{corruption, label, severity, seed, method, target: {{index, label}}, models: [{{model, predictions [{{index, label, prob}}], target_prob, ...}}]}}.
""",
    "robustness_sweep": f"""Robustness sweep: every chosen ImageNet-C corruption x severities 1-5 x every chosen depth on one image, batched per depth; tracks the probability of the class most depths pick on the clean crop, and each depth's breaking point (the lowest severity at which its top-1 changes). Deeper ResNets are expected to hold on longer (Hendrycks & Dietterich 2019). Costs one forward per corrupted crop per depth: all 19 corruptions on five depths is 480 crops per depth; pick fewer corruptions or depths for a quick answer.

Args:
    {IMAGE}
    models: the depths to run, a list from {{models}} (empty: the five built-in depths).
    corruptions: a list from {{corruptions}} (empty: all 19).

Returns:
    a JSON object {{models, corruptions, severities, seed, target: {{index, label}}, clean: {{model: {{top1, top1_label, top1_prob, target_prob}}}}, target_prob: {{model: {{corruption: [p at severity 1..5]}}}}, top1, breaking_point: {{model: {{corruption: severity or null (kept)}}}}, verdict (the result as a sentence), seconds}}; and a CSV of every cell.
""",
    "zoo": """The model zoo as data: per model its depth, blocks per stage, parameters, multiply-adds and FLOPs at a resolution (measured with torch.utils.flop_counter), the paper's figure, reported ImageNet top-1/top-5 accuracy, file size, and whether its weights are cached here. Runs no model.

Args:
    resolution: input side in pixels, a whole number from 160 to 448 (default 224; the paper's is 224).

Returns:
    a JSON object {resolution, models: [{name, arch, depth, layers, block, blocks_per_stage, resolution, params, macs, flops, paper_flops, torchvision_gflops, torchvision_params, size_bytes, top1, top5, latency, repo, revision, cached}], cached: {name: bool}}: the same object as `python -m zoo list --json`.
""",
    "selfcheck": """Do this server's weights give real answers? For each model: whether its revision is pinned, whether the file's sha256 matches, and whether the bundled photos (a tabby cat, a cup of coffee, a rocket launch) get an accepted ImageNet class in their top-5, with the input compared to torchvision's recipe; a failure says what looks wrong (BGR input, wrong mean/std, class list out of order, weights under the wrong keys).

Args:
    models: the models to check, a list from {models} (default: the five built-in depths). About six forward passes per model.

Returns:
    a summary with one line per model; and a JSON object {passed, device, precision, health, models: [{model, status, pin, sha256, photos: [{file, accepted, top5, input, passed}], diagnosis}]}.
""",
}


def enabled(flag: bool | None = None) -> bool:
    """Serve the tools? ``--mcp`` when given, else ``RDE_MCP`` (1, true, yes)."""
    if flag is not None:
        return flag
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def describe_tools(demo: Any, model_names: list[str]) -> None:
    """Name each tool's handler after its endpoint and give it the docstring above.

    Gradio reads a tool's name from the handler's ``__name__`` and its description and
    arguments from its docstring; every handler of ``ui.guard.guarded`` is a function of
    its own, so setting them here touches nothing else. Only ``TOOLS`` are offered as tools
    (``_only_tools``); the other endpoints stay as they are for the HTTP API.
    """
    from zoo.robustness import CORRUPTIONS
    from zoo.sanity import DEFAULT_METHODS

    values = {"models": ", ".join(model_names), "methods": ", ".join(METHODS), "layers": ", ".join(STAGES),
              "sanity_methods": ", ".join(DEFAULT_METHODS), "corruptions": ", ".join(c.name for c in CORRUPTIONS)}
    for fn in demo.fns.values():
        if fn.api_name in TOOLS and fn.fn is not None:
            fn.fn.__name__ = fn.api_name
            doc = TOOLS[fn.api_name]
            for key, value in values.items():
                doc = doc.replace("{" + key + "}", value)
            fn.fn.__doc__ = doc
    demo.rde_tools = tuple(TOOLS)
    _adapt_gradio_mcp()


def _has_file(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("meta", {}).get("_type") == "gradio.FileData" if isinstance(value.get("meta"), dict) \
            else any(_has_file(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_file(v) for v in value)
    return False


def _file_contents(types: Any, file: dict) -> list[Any]:
    """One output file as MCP content: a picture as an image, any other file as an embedded resource
    named by its file name. Never its path or URL on this server."""
    path = Path(str(file.get("path") or ""))
    name = Path(str(file.get("orig_name") or path.name)).name or "file"
    if not path.is_file():
        return [types.TextContent(type="text", text=f"{name}: no longer on the server.")]
    data = path.read_bytes()
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if mime.startswith("image/"):
        return [types.ImageContent(type="image", data=base64.b64encode(data).decode(), mimeType=mime)]
    uri = f"rde-output:///{quote(name)}"
    if mime.startswith("text/") or mime in ("application/json", "text/csv"):
        resource = types.TextResourceContents(uri=uri, mimeType=mime, text=data.decode("utf-8", "replace"))
    else:
        resource = types.BlobResourceContents(uri=uri, mimeType=mime, blob=base64.b64encode(data).decode())
    return [types.EmbeddedResource(type="resource", resource=resource)]


def _contents(types: Any, item: Any) -> list[Any]:
    """One endpoint output as MCP contents: files as ``_file_contents``, a gallery as its pictures each
    followed by its caption, data (a label's, a JSON output's, a chart's) as JSON text."""
    if isinstance(item, dict) and isinstance(item.get("meta"), dict) and item["meta"].get("_type") == "gradio.FileData":
        return _file_contents(types, item)
    if isinstance(item, dict) and _has_file(item):  # a gallery's entry: {"image": FileData, "caption": ...}
        out = [c for v in item.values() if _has_file(v) for c in _contents(types, v)]
        if item.get("caption"):
            out.append(types.TextContent(type="text", text=str(item["caption"])))
        return out
    if isinstance(item, (list, tuple)) and _has_file(item):
        return [c for v in item for c in _contents(types, v)]
    if isinstance(item, (dict, list)):
        return [types.TextContent(type="text", text=json.dumps(item, default=str))]
    return [types.TextContent(type="text", text=str(item))]


def _adapt_gradio_mcp() -> None:
    """Changes to gradio 6's MCP server, for apps built here (``rde_tools`` set); others keep gradio's.

    * **Only ``TOOLS`` are tools** (``get_tool_to_endpoint``): gradio offers every named
      endpoint; one left out is unknown to ``tools/call`` as well.
    * **No tool that is not there**: gradio's description of a tool with a file argument tells
      the agent to use an ``upload_file_to_gradio`` tool, which this server does not offer;
      the image argument's own text says what to send (``get_fn_description``).
    * **Free-text choices stay free** (``get_input_schema``): a dropdown that takes any value
      (the target class: a name or an index) would be an ``enum`` of its 1001 entries in the
      tool's schema, and the MCP server refuses any other value ("tabby") before the call.
    * The calls themselves: ``_adapt_calls``.

    Wrapped once per process at class level, as ``ui.server.refuse_server_paths`` does;
    without the ``mcp`` extra there is nothing to change.
    """
    try:
        from gradio.components import State
        from gradio.mcp import GradioMCPServer
    except ImportError:
        return
    if getattr(GradioMCPServer, "rde_adapted", False):
        return
    tool_to_endpoint = GradioMCPServer.get_tool_to_endpoint
    input_schema = GradioMCPServer.get_input_schema
    fn_description = GradioMCPServer.get_fn_description

    def get_tool_to_endpoint(self: Any) -> dict[str, str]:
        tools = tool_to_endpoint(self)
        if not _ours(self):
            return tools
        return {name: endpoint for name, endpoint in tools.items() if endpoint.lstrip("/") in self.blocks.rde_tools}

    def get_input_schema(self: Any, tool_name: str, parameters: dict[str, str] | None = None) -> Any:
        schema, positions = input_schema(self, tool_name, parameters)
        block_fn = self.get_block_fn_from_endpoint_name(self.tool_to_endpoint.get(tool_name, ""))
        if _ours(self) and block_fn is not None:
            inputs = [c for c in block_fn.inputs if not isinstance(c, State)]
            for prop, component in zip(schema.get("properties", {}).values(), inputs):
                if getattr(component, "allow_custom_value", False):
                    prop.pop("enum", None)
        return schema, positions

    def get_fn_description(self: Any, block_fn: Any, tool_name: str) -> tuple[str, dict[str, str]]:
        description, parameters = fn_description(self, block_fn, tool_name)
        if _ours(self):  # it names a tool this server does not have; the image argument says what to send
            description = description.replace(self._file_data_tool_description, "").replace(".. Returns:",
                                                                                           ". Returns:")
        return description, parameters

    GradioMCPServer.get_tool_to_endpoint = get_tool_to_endpoint  # type: ignore[method-assign]
    GradioMCPServer.get_input_schema = get_input_schema  # type: ignore[method-assign]
    GradioMCPServer.get_fn_description = get_fn_description  # type: ignore[method-assign]
    _adapt_calls(GradioMCPServer)
    GradioMCPServer.rde_adapted = True  # type: ignore[attr-defined]


def _ours(server: Any) -> bool:
    return getattr(server.blocks, "rde_tools", None) is not None


def _bounded(create: Any) -> Any:
    """``GradioMCPServer.create_mcp_server`` whose tool calls are counted in ``Guard.calls`` (see ``_adapt_calls``)."""
    from zoo.limits import LimitError

    from .guard import VISITOR_HEADER
    from .server import COUNTED

    def create_mcp_server(self: Any) -> Any:
        server = create(self)
        call = server.request_handlers.get(self.types.CallToolRequest)
        if not _ours(self) or call is None:
            return server

        async def bounded(req: Any) -> Any:
            request = server.request_context.request
            if request is not None and request.scope.get(COUNTED):  # streamable HTTP: counted by ui.server
                return await call(req)
            visitor = (request.headers.get(VISITOR_HEADER) or getattr(request.client, "host", None) or "unknown") \
                if request is not None else "unknown"
            try:
                with self.blocks.rde_context.guard.calls.hold(visitor):
                    return await call(req)
            except LimitError as e:
                return server._make_error_result(str(e))

        server.request_handlers[self.types.CallToolRequest] = bounded
        return server

    return create_mcp_server


def _adapt_calls(cls: Any) -> None:
    """How gradio's MCP server makes and answers a tool call, for apps built here.

    * **Bounded before any thread** (``create_mcp_server``): each tool call holds server
      threads while it waits for its loopback request, so a call is counted per visitor and
      in all (``Guard.calls``, ``zoo.limits.InFlight``) before it starts; the excess is
      answered at once with the tool's error. A streamable-HTTP request is counted earlier
      still, by ``ui.server``'s middleware (its POST lasts as long as the call); the SSE
      transport's calls (a POST that returns at once) are counted here.
    * **Whose call it is** (``_get_or_create_client``): the loopback client sends the app's
      secret (``RELAY_HEADER``), beside the visitor that ``ui.server`` set on the tool call,
      so the gate and the upload budget count the caller, whatever headers it sent. Its
      thread pools are sized to the calls that can be in flight.
    * **20 MB images**: the MCP library refuses bodies over 4 MiB; its limit is ``MCP_MAX_BODY``
      (``ui.server`` refuses larger ones first).
    * **One content per output, pictures as images, no server path** (``postprocess_output_data``,
      ``_execute_tool_without_progress``): gradio returned a gallery as the text of a Python
      list naming files in its temporary folder, and each picture with an "Image URL" naming
      its path; now pictures are image contents, other files embedded resources named by
      file name, data JSON text (``_contents``).
    """
    import functools
    import inspect
    from concurrent.futures import ThreadPoolExecutor

    from .guard import RELAY_HEADER
    from .server import MCP_MAX_BODY

    get_client = cls._get_or_create_client
    for name in ("StreamableHTTPSessionManager", "SseServerTransport"):
        transport = getattr(cls, name, None)
        if transport is not None and "max_request_body_size" in inspect.signature(transport).parameters:
            setattr(cls, name, functools.partial(transport, max_request_body_size=MCP_MAX_BODY))

    def get_or_create_client(self: Any) -> Any:
        client = get_client(self)
        if _ours(self) and RELAY_HEADER not in client.headers:  # just made: no job has run on it yet
            guard = self.blocks.rde_context.guard
            client.headers[RELAY_HEADER] = guard.relay_secret
            # Its pools keep their threads: sized to the calls that can be in flight (gradio's: 40 and 80).
            for pool, workers in (("executor", guard.calls.total), ("helper_executor", 2 * guard.calls.total)):
                getattr(client, pool).shutdown(wait=False)
                setattr(client, pool, ThreadPoolExecutor(workers, thread_name_prefix=f"rde-mcp-{pool}"))
        return client

    async def execute_without_progress(self: Any, job: Any) -> list[Any]:
        from anyio.to_thread import run_sync

        result = await run_sync(job.result)
        return list(result) if _ours(self) and isinstance(result, tuple) else [result]

    postprocess = cls.postprocess_output_data

    def postprocess_output_data(self: Any, data: Any, root_url: str) -> list[Any]:
        if not _ours(self):
            return postprocess(self, data, root_url)
        return [c for item in data for c in _contents(self.types, item)]

    cls.create_mcp_server = _bounded(cls.create_mcp_server)
    cls._get_or_create_client = get_or_create_client
    cls._execute_tool_without_progress = execute_without_progress
    cls.postprocess_output_data = postprocess_output_data
