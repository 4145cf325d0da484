"""The HTTP side of a public app: middleware in front of gradio's routes, and the disk kept bounded.

* **Upload budget.** ``POST /gradio_api/upload`` counts the bytes each visitor sends
  (``zoo.limits.UploadBudget``, keyed like the request gate: ``ui.guard.client_address``);
  over the budget the upload is refused with 429 and a message saying when to retry.
  With a budget on, an upload must say its length (browsers and gradio_client do).
* **Unknown endpoints** (``/gradio_api/call/NAME``) get 404 and the list of the real
  ones, instead of gradio's 500.
* **Server paths.** A payload naming a file gradio did not write is refused by gradio
  before our handlers see it, with a message that holds the absolute path; that refusal
  becomes the app's one refusal for every such payload (``refuse_server_paths``).
* **MCP tools** (``python app.py --mcp``, ``ui.mcp``): a tool call's body carries its image
  (a data URL) or a URL, so it counts against the visitor's upload budget like an upload,
  and is refused over ``MCP_MAX_BODY``; a refusal is a JSON-RPC error the MCP client shows.
  Gradio's MCP server then calls the endpoint over HTTP on loopback, forwarding the
  caller's headers; the visitor's address (from the connection, or the trusted proxy's
  header: never a header the caller sets) travels with that call in ``VISITOR_HEADER``,
  believed only beside the app's secret (``RELAY_HEADER``, which only the app's own MCP
  client sends), so the gate's turns are the caller's own, and the file that client
  uploads for the call is not counted twice. uvicorn's own reading of X-Forwarded-For is
  switched off (``distrust_forwarded_headers``): it trusts it from 127.0.0.1, where every
  loopback call of gradio's MCP client comes from, carrying the caller's forged header.
* **Disk.** Every ``CACHE_SWEEP_S`` the per-request output folders older than
  ``OUTPUT_MAX_AGE_S`` are removed (gradio's ``delete_cache`` does the same for its
  copies and the uploads), so what the app keeps on disk is bounded by what was asked of
  it in the last quarter of an hour.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse

from zoo.limits import LimitError

from .guard import RELAY_HEADER, VISITOR_HEADER, client_address, relayed

# The API's named calls. (``/gradio_api/run/predict`` is the page's own route for events
# outside the queue, such as a cached example, and is left to gradio.)
_ENDPOINT = re.compile(r"/gradio_api/call/(?:v2/)?([^/]+)/?$")
# Gradio's MCP routes: streamable HTTP (/mcp, /mcp/http) and the SSE transport (/mcp/sse, /mcp/messages/).
_MCP = re.compile(r"/gradio_api/mcp(?:/http|/sse|/messages)?/?$")
_STREAMABLE = re.compile(r"/gradio_api/mcp(?:/http)?/?$")  # a POST here lasts as long as its call
COUNTED = "rde_counted"  # in a scope whose MCP request ``Guard.calls`` already counts (ui.mcp reads it)
# A tool call with a 20 MB image as a data URL (base64: 4/3 of the bytes) and the JSON around it;
# the MCP library's own limit (4 MiB by default) is raised to this (ui.mcp).
MCP_MAX_BODY = 28 * 1024 * 1024
# A JSON-RPC request's id: the last member of the body (as the MCP client writes it), or else its first.
_JSONRPC_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,200}")\s*}\s*$')
_JSONRPC_ID_FIRST = re.compile(rb'^\s*{\s*"(?:jsonrpc"\s*:\s*"2.0"\s*,\s*")?id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,200}")')


class Guardrails:
    """Pure ASGI middleware (it must not buffer gradio's streaming responses)."""

    def __init__(self, app: Any, demo: Any):
        self.app = app
        self.demo = demo

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "")
        ctx = getattr(self.demo, "rde_context", None)
        mcp = bool(_MCP.search(path))
        scope = _relay_visitor(scope, ctx, mcp)
        if ctx is not None and method == "POST" and mcp:
            refusal = self._mcp_refusal(scope, ctx)
            if refusal is not None:
                return await _jsonrpc_refusal(refusal, scope, receive, send)
            if _STREAMABLE.search(path):
                return await self._mcp_call(scope, receive, send, ctx)
        if ctx is not None and method == "POST" and path.rstrip("/").endswith("/gradio_api/upload"):
            refusal = self._upload_refusal(scope, ctx)
            if refusal is not None:
                return await refusal(scope, receive, send)
        m = _ENDPOINT.search(path) if method == "POST" else None
        if m is not None:
            names = sorted(fn.api_name for fn in self.demo.fns.values()
                           if fn.api_name and getattr(fn, "api_visibility", "public") != "private")
            if m.group(1) not in names:
                return await JSONResponse({"error": f"No endpoint named /{m.group(1)[:60]}.",
                                           "endpoints": [f"/{n}" for n in names]},
                                          status_code=404)(scope, receive, send)
        await self.app(scope, receive, send)

    async def _mcp_call(self, scope: dict, receive: Any, send: Any, ctx: Any) -> None:
        """A streamable-HTTP MCP request, counted in ``Guard.calls`` for as long as it runs (its
        response is the call's whole answer); beyond the visitor's share it is refused at once,
        before the MCP library parses it or gradio's MCP server takes a thread for it."""
        visitor = Headers(scope=scope).get(VISITOR_HEADER, "unknown")
        try:
            ctx.guard.calls.take(visitor)
        except LimitError as e:
            return await _jsonrpc_refusal(PlainTextResponse(str(e), status_code=429), scope, receive, send)
        try:
            await self.app({**scope, COUNTED: True}, receive, send)
        finally:
            ctx.guard.calls.give(visitor)

    def _mcp_refusal(self, scope: dict, ctx: Any) -> Any:
        """A tool call's body: at most ``MCP_MAX_BODY``, and counted against the visitor's upload budget."""
        length = Headers(scope=scope).get("content-length")
        if length is None or not length.isdigit():
            return PlainTextResponse("MCP requests must state their length (Content-Length).", status_code=411)
        if int(length) > MCP_MAX_BODY:
            return PlainTextResponse(f"This request is larger than {MCP_MAX_BODY // (1024 * 1024)} MB; images may "
                                     "be at most 20 MB.", status_code=413)
        return self._upload_refusal(scope, ctx)

    def _upload_refusal(self, scope: dict, ctx: Any) -> Any:
        budget = ctx.guard.uploads
        if budget.limit is None:
            return None
        headers = Headers(scope=scope)
        peer = (scope.get("client") or (None,))[0]
        if relayed(headers, peer, ctx.guard.relay_secret) and scope.get("path", "").rstrip("/").endswith(
                "/gradio_api/upload"):
            return None  # the app's MCP client uploading a tool call's data URL: counted on the MCP route
        visitor = client_address(headers, peer, ctx.guard.trust_proxy, ctx.guard.relay_secret)
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            return PlainTextResponse("Uploads must state their length (Content-Length).", status_code=411)
        try:
            budget.take(visitor, int(length))
        except LimitError as e:
            return PlainTextResponse(str(e), status_code=429)
        return None


async def _jsonrpc_refusal(refusal: Any, scope: dict, receive: Any, send: Any) -> None:
    """``refusal`` (a plain response) as the JSON-RPC error of the request, when its id can be read.

    An MCP client takes an HTTP error status as a broken transport, not as an answer: the
    agent would see a stack trace, or wait. A JSON-RPC error with the request's id is shown
    as the tool's error. The id is the body's last member (the MCP client writes method,
    params, jsonrpc, id): the body is read through, keeping only its end, and at most
    ``MCP_MAX_BODY`` of it (a larger one gets the plain refusal).
    """
    head, tail, read = b"", b"", 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        read += len(chunk)
        head = head or chunk[:256]
        tail = (tail + chunk)[-256:]
        if not message.get("more_body") or read > MCP_MAX_BODY:
            break
    m = _JSONRPC_ID.search(tail) if read <= MCP_MAX_BODY else None
    m = m or (_JSONRPC_ID_FIRST.search(head) if read <= MCP_MAX_BODY else None)
    if m is None:
        return await refusal(scope, receive, send)
    error = {"jsonrpc": "2.0", "id": json.loads(m.group(1)),
             "error": {"code": -32000 - refusal.status_code, "message": refusal.body.decode()}}
    await JSONResponse(error, status_code=200)(scope, receive, send)


def _relay_visitor(scope: dict, ctx: Any, mcp: bool) -> dict:
    """``scope`` with ``VISITOR_HEADER`` set to the visitor's address on an MCP request; from any request
    but the app's own MCP client's (``relayed``), ``VISITOR_HEADER`` and ``RELAY_HEADER`` are removed."""
    if ctx is None:
        return scope
    raw = scope.get("headers", [])
    peer = (scope.get("client") or (None,))[0]
    if not mcp and relayed(Headers(raw=raw), peer, ctx.guard.relay_secret):
        return scope
    ours = (VISITOR_HEADER.encode(), RELAY_HEADER.encode())
    headers = [(k, v) for k, v in raw if k.lower() not in ours]
    if mcp:
        visitor = client_address(Headers(raw=headers), peer, ctx.guard.trust_proxy)
        headers.append((VISITOR_HEADER.encode(), visitor.encode("latin-1")))
    return scope if headers == raw else {**scope, "headers": headers}


def distrust_forwarded_headers() -> None:
    """Switch off uvicorn's reading of X-Forwarded-For (``FORWARDED_ALLOW_IPS``), unless it is set.

    uvicorn (which gradio starts, with no way to pass ``forwarded_allow_ips``) believes the
    header from 127.0.0.1 and rewrites the connection's address before this app sees it;
    gradio's MCP server calls the app from 127.0.0.1 with the caller's headers, so any
    caller could name itself anew in each call. The app reads the header itself, and only
    behind a proxy it was told to trust (``--trust-proxy``): ``ui.guard.client_address``.
    Read when uvicorn's Config is made (at launch).
    """
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")


URL_REFUSED = ("This server could not download that image. It fetches only http(s) URLs on public addresses that "
               "answer with the file (not this server, nor a private or local address). Send the image itself "
               "instead, as a data URL (data:image/png;base64,...) or an upload.")


def refuse_server_paths() -> None:
    """Gradio's refusals of a payload, as the app's own messages.

    * A payload naming a file gradio did not write: gradio checks such a path
      (``processing_utils._check_allowed``) before any handler runs and raises
      ``InvalidPathError`` with the absolute path in its text. With ``show_error`` off that
      text is not sent, but the visitor would get a bare "error" where every other refused
      payload gets ``UPLOAD_REFUSED``: this wraps gradio's check so both say the same.
    * A URL gradio will not or cannot fetch (its SSRF protection refuses loopback and private
      addresses; or the download fails): gradio raises a plain exception, which a visitor saw
      as "set show_error=True in launch()"; it becomes ``URL_REFUSED``.

    Private functions of gradio 6; where one is missing, nothing changes for it.
    """
    import gradio as gr
    from gradio import processing_utils
    from gradio.exceptions import InvalidPathError

    from .common import UPLOAD_REFUSED

    original = getattr(processing_utils, "_check_allowed", None)
    if original is not None and not getattr(original, "rde_refusal", False):
        def check_allowed(path: Any, check_in_upload_folder: bool) -> Any:
            try:
                return original(path, check_in_upload_folder)
            except InvalidPathError:
                raise gr.Error(UPLOAD_REFUSED, print_exception=False) from None

        check_allowed.rde_refusal = True  # type: ignore[attr-defined]
        processing_utils._check_allowed = check_allowed
    download = getattr(processing_utils, "async_ssrf_protected_download", None)
    if download is not None and not getattr(download, "rde_refusal", False):
        async def fetch(url: str, cache_dir: str) -> str:
            try:
                return await download(url, cache_dir)
            except Exception:  # noqa: BLE001 - any refusal or failure: one message, no address or reason
                raise gr.Error(URL_REFUSED, print_exception=False) from None

        fetch.rde_refusal = True  # type: ignore[attr-defined]
        processing_utils.async_ssrf_protected_download = fetch


def middleware(demo: Any) -> list[Middleware]:
    """For ``demo.launch(app_kwargs={"middleware": ...})`` (see ``ui.app.launch_options``)."""
    return [Middleware(Guardrails, demo=demo)]


def prune(root: Path, max_age_s: float) -> int:
    """Remove the output folders under ``root`` older than ``max_age_s``; how many went."""
    cutoff, removed = time.time() - max_age_s, 0
    for old in list(root.iterdir()) if root.exists() else []:
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
                removed += 1
        except FileNotFoundError:  # removed by a request meanwhile
            pass
    return removed


def start_pruning(root: Path, every_s: float, max_age_s: float) -> threading.Event:
    """Prune ``root`` every ``every_s`` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            prune(root, max_age_s)

    threading.Thread(target=loop, name="rde-prune", daemon=True).start()
    return stop
