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
  and is refused over ``MCP_MAX_BODY``. Gradio's MCP server then calls the endpoint over
  HTTP on loopback; the visitor's address travels with that call in ``VISITOR_HEADER``
  (set here, trusted only from a loopback peer), so the gate's turns are the caller's own,
  and the file that loopback client uploads for it is not counted twice.
* **Disk.** Every ``CACHE_SWEEP_S`` the per-request output folders older than
  ``OUTPUT_MAX_AGE_S`` are removed (gradio's ``delete_cache`` does the same for its
  copies and the uploads), so what the app keeps on disk is bounded by what was asked of
  it in the last quarter of an hour.
"""

from __future__ import annotations

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

from .guard import VISITOR_HEADER, client_address, is_loopback

# The API's named calls. (``/gradio_api/run/predict`` is the page's own route for events
# outside the queue, such as a cached example, and is left to gradio.)
_ENDPOINT = re.compile(r"/gradio_api/call/(?:v2/)?([^/]+)/?$")
# Gradio's MCP routes: streamable HTTP (/mcp, /mcp/http) and the SSE transport (/mcp/sse, /mcp/messages/).
_MCP = re.compile(r"/gradio_api/mcp(?:/http|/sse|/messages)?/?$")
# A tool call with a 20 MB image as a data URL (base64: 4/3 of the bytes) and the JSON around it.
MCP_MAX_BODY = 28 * 1024 * 1024


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
        scope = _relay_visitor(scope, ctx, bool(_MCP.search(path)))
        if ctx is not None and method == "POST" and _MCP.search(path):
            refusal = self._mcp_refusal(scope, ctx)
            if refusal is not None:
                return await refusal(scope, receive, send)
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
        if is_loopback(peer) and headers.get("x-gradio-user") == "mcp" and headers.get(VISITOR_HEADER) is None:
            # gradio's MCP server uploading a tool call's data URL: that body was counted on the MCP route.
            if scope.get("path", "").rstrip("/").endswith("/gradio_api/upload"):
                return None
        visitor = client_address(headers, peer, ctx.guard.trust_proxy)
        length = headers.get("content-length")
        if length is None or not length.isdigit():
            return PlainTextResponse("Uploads must state their length (Content-Length).", status_code=411)
        try:
            budget.take(visitor, int(length))
        except LimitError as e:
            return PlainTextResponse(str(e), status_code=429)
        return None


def _relay_visitor(scope: dict, ctx: Any, mcp: bool) -> dict:
    """``scope`` with ``VISITOR_HEADER`` set to the visitor's address on an MCP request, and removed
    from any other request that does not come from loopback (only the app's own MCP client may send it)."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != VISITOR_HEADER.encode()]
    peer = (scope.get("client") or (None,))[0]
    if mcp and ctx is not None:
        visitor = client_address(Headers(raw=headers), peer, ctx.guard.trust_proxy)
        return {**scope, "headers": [*headers, (VISITOR_HEADER.encode(), visitor.encode("latin-1"))]}
    if is_loopback(peer) or len(headers) == len(scope.get("headers", [])):
        return scope
    return {**scope, "headers": headers}


def refuse_server_paths() -> None:
    """Gradio's refusal of a payload naming a file it did not write, as the app's one refusal.

    Gradio checks such a path (``processing_utils._check_allowed``) before any handler
    runs and raises ``InvalidPathError`` with the absolute path in its text. With
    ``show_error`` off that text is not sent, but the visitor would get a bare "error"
    where every other refused payload gets ``UPLOAD_REFUSED``: this wraps gradio's check so
    both say the same. A private function of gradio 6; where it is missing, nothing changes.
    """
    import gradio as gr
    from gradio import processing_utils
    from gradio.exceptions import InvalidPathError

    from .common import UPLOAD_REFUSED

    original = getattr(processing_utils, "_check_allowed", None)
    if original is None or getattr(original, "rde_refusal", False):
        return

    def check_allowed(path: Any, check_in_upload_folder: bool) -> Any:
        try:
            return original(path, check_in_upload_folder)
        except InvalidPathError:
            raise gr.Error(UPLOAD_REFUSED, print_exception=False) from None

    check_allowed.rde_refusal = True  # type: ignore[attr-defined]
    processing_utils._check_allowed = check_allowed


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
