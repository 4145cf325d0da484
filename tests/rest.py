"""Endpoints as an anonymous visitor calls them: raw HTTP, no gradio_client and none of its checks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx


def upload(url: str, path: Path) -> dict[str, Any]:
    """A file sent the way the page and gradio_client send it: the upload route, then FileData."""
    return upload_many(url, [path])[0]


def upload_many(url: str, paths: list[Path]) -> list[dict[str, Any]]:
    files = [("files", (p.name, p.read_bytes())) for p in paths]
    r = httpx.post(f"{url}/gradio_api/upload", files=files, timeout=60)
    r.raise_for_status()
    return [{"path": p, "orig_name": src.name, "meta": {"_type": "gradio.FileData"}}
            for p, src in zip(r.json(), paths)]


def call(url: str, api: str, data: list[Any], timeout: float = 600) -> tuple[str, Any]:
    """POST /gradio_api/call/<api>, then read its server-sent events: ("complete"|"error", data)."""
    r = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=min(timeout, 60))
    r.raise_for_status()
    event_id = r.json()["event_id"]
    event = ""
    deadline = time.monotonic() + timeout  # heartbeats keep the stream alive: a read timeout never fires
    with httpx.stream("GET", f"{url}/gradio_api/call/{api}/{event_id}", timeout=timeout) as s:
        for line in s.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = json.loads(line.split(":", 1)[1])
                return event, data["error"] if event == "error" and isinstance(data, dict) else data
            if time.monotonic() > deadline:
                return "timeout", f"no answer from {api} within {timeout:.0f} s"
    raise AssertionError(f"no result for {api}")


def result(url: str, api: str, data: list[Any], timeout: float = 600) -> Any:
    """``call``'s data, which must be a result, not an error."""
    event, payload = call(url, api, data, timeout)
    assert event == "complete", payload
    return payload
