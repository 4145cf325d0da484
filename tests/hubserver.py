"""A loopback HTTP server that answers ``hf_hub_download`` and ``model_info`` the way the Hub does.

``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}`` with ``X-Repo-Commit``,
``ETag: "<sha256>"`` and ``Content-Length``; ranges for resumed downloads; errors as
a status plus ``X-Error-Code``. ``GET /api/models/{repo_id}[/revision/{revision}]``
answers ``huggingface_hub.model_info`` (with ``?blobs=true``, each file's size, blob id
and LFS sha256, as ``files_metadata=True`` asks). Knobs let a test break it: answer
500, cut a body off midway, gate a repo, or serve other bytes than the ETag promises.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class HostedFile:
    path: Path
    sha256: str
    size: int


@dataclass
class Repo:
    commit: str
    files: dict[str, HostedFile] = field(default_factory=dict)
    gated: bool = False


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.fail_status: int | None = None  # answer every request with this status
        self.cut_after: int | None = None  # GET bodies stop after this many bytes
        self.serve_instead: dict[str, bytes] = {}  # repo_id -> other bytes (same ETag)
        self.answering = threading.Event()  # cleared: every request waits until it is set (a slow Hub)
        self.answering.set()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeHub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, commit: str, filename: str, path: Path) -> HostedFile:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        hosted = HostedFile(path, h.hexdigest(), path.stat().st_size)
        self.repos.setdefault(repo_id, Repo(commit)).files[filename] = hosted
        return hosted

    def reset(self) -> None:
        self.fail_status = None
        self.cut_after = None
        self.serve_instead.clear()
        self.answering.set()
        for r in self.repos.values():
            r.gated = False
        self.clear_log()

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def _log(self, method: str, path: str) -> None:
        with self._lock:
            self.requests.append((method, path))

    def _handler(hub) -> type[BaseHTTPRequestHandler]:  # noqa: N805 - closes over the hub
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _error(self, status: int, code: str | None, commit: str | None = None) -> None:
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                    self.send_header("X-Error-Message", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, body: bool) -> None:
                hub._log(self.command, self.path)
                hub.answering.wait(300)
                if hub.fail_status:
                    return self._error(hub.fail_status, None)
                path = unquote(urlparse(self.path).path).lstrip("/")
                if path.startswith("api/models/"):
                    return self._model_info(path.removeprefix("api/models/"), body)
                repo_id, sep, rest = path.partition("/resolve/")
                if not sep:
                    return self._error(404, None)
                repo_id = repo_id.removeprefix("models/")
                revision, _, filename = rest.partition("/")
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound")
                if repo.gated:
                    return self._error(403, "GatedRepo")
                if revision not in ("main", repo.commit):
                    return self._error(404, "RevisionNotFound")
                hosted = repo.files.get(filename)
                if hosted is None:
                    return self._error(404, "EntryNotFound", repo.commit)
                data_override = hub.serve_instead.get(repo_id)
                size = len(data_override) if data_override is not None else hosted.size
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and body:
                    start = int(rng[6:].split("-")[0] or 0)
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", repo.commit)
                self.send_header("ETag", f'"{hosted.sha256}"')
                self.send_header("Content-Length", str(size - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if not body:
                    return
                limit = size if hub.cut_after is None else min(size, hub.cut_after)
                if data_override is not None:
                    self.wfile.write(data_override[start:limit])
                    return
                with open(hosted.path, "rb") as f:
                    f.seek(start)
                    left = limit - start
                    while left > 0 and (chunk := f.read(min(1 << 20, left))):
                        self.wfile.write(chunk)
                        left -= len(chunk)
                if limit < size:
                    self.close_connection = True

            def _model_info(self, rest: str, body: bool) -> None:
                """``model_info``: the repo's commit and files; sizes and LFS digests with ``blobs=true``."""
                repo_id, sep, revision = rest.partition("/revision/")
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound")
                if repo.gated:
                    return self._error(403, "GatedRepo")
                if sep and revision not in ("main", repo.commit):
                    return self._error(404, "RevisionNotFound")
                blobs = parse_qs(urlparse(self.path).query).get("blobs", [""])[0].lower() == "true"
                siblings = []
                for name, hosted in repo.files.items():
                    entry: dict = {"rfilename": name}
                    if blobs:  # an LFS file: the Hub gives the pointer's git oid and the content's sha256
                        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{hosted.sha256}\n" \
                                  f"size {hosted.size}\n".encode()
                        entry.update(size=hosted.size, blobId=hashlib.sha1(b"blob %d\0" % len(pointer) + pointer)
                                     .hexdigest(), lfs={"sha256": hosted.sha256, "size": hosted.size,
                                                        "pointerSize": len(pointer)})
                    siblings.append(entry)
                data = json.dumps({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                                   "gated": False, "siblings": siblings}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler
