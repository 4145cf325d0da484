"""Fetch weights from the Hugging Face Hub with ``huggingface_hub``, and prove them.

The download itself is ``hf_hub_download`` (it honours ``HF_ENDPOINT``, ``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN``). What we add:

* a cache-first look-up, so a warm cache never touches the network, even for
  entries that follow a branch;
* a sha256 check against the registry's digest, or the Hub's ETag (for LFS files
  the ETag *is* the sha256, and the cache names the blob after it);
* a small "verified" record per blob (size + mtime), so a verified file is not
  re-hashed at every start, while a file changed on disk afterwards is;
* eviction of a file that fails the check, so no later run can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Callable

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError as HfGatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import tqdm as hf_tqdm

from .errors import (
    ChecksumError,
    GatedRepoError,
    NotFoundOnHubError,
    WeightsUnavailableError,
)
from .files import NotRegularFileError, check_regular
from .registry import ModelSpec

# progress(fraction in [0, 1] or None when unknown, message)
ProgressFn = Callable[[float | None, str], None]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HASH_CHUNK = 8 << 20
# A flaky or down Hub gets a few quick, announced retries, then a clear error; left to
# itself huggingface_hub would back off silently for ~25 s before failing.
RETRY_WAITS = (1.0, 2.0)
_RETRY_STATUS = (408, 429, 500, 502, 503, 504)


def hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Hub cache in use: the argument, else ``HF_HUB_CACHE`` (under ``HF_HOME``)."""
    return Path(cache_dir or os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def cached_path(spec: ModelSpec, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The cached weights file for ``spec``, or None. Never uses the network."""
    if spec.path is not None:
        return Path(spec.path) if Path(spec.path).is_file() else None
    found = try_to_load_from_cache(spec.repo, spec.filename, cache_dir=hub_cache_dir(cache_dir),
                                   revision=spec.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def fetch_weights(spec: ModelSpec, *, progress: ProgressFn | None = None,
                  cache_dir: str | os.PathLike | None = None) -> Path:
    """Return a local path to ``spec``'s verified weights, downloading if needed.

    Raises ``WeightsUnavailableError`` (and subclasses) or ``ChecksumError``.
    """
    cache = hub_cache_dir(cache_dir)
    if spec.path is not None:
        local = Path(spec.path)
        try:
            check_regular(local)  # a FIFO would block the reads below forever
        except FileNotFoundError:
            raise WeightsUnavailableError(
                f"{spec.name}: the local weights file {local} named in the zoo file does not exist.") from None
        except NotRegularFileError as e:
            raise WeightsUnavailableError(
                f"{spec.name}: the local weights path {local} named in the zoo file is {e.kind}, not a regular "
                "file. Point 'path' at a .safetensors file.") from None
        except OSError as e:
            raise WeightsUnavailableError(
                f"{spec.name}: cannot read the local weights file {local} ({e.strerror}).") from None
        _verify(local, spec, cache, progress, evict=False)
        return local

    found = cached_path(spec, cache)
    if found is not None:
        try:
            _verify(found, spec, cache, progress, evict=True)
            return found
        except ChecksumError:
            # The cached copy was damaged after it was verified; it is gone now, so
            # fetch it again rather than fail a user who did nothing wrong.
            if progress:
                progress(None, f"{spec.name}: cached file was corrupted; downloading it again")

    path = Path(_download(spec, cache, progress))
    _verify(path, spec, cache, progress, evict=True)
    return path


def _download(spec: ModelSpec, cache: Path, progress: ProgressFn | None) -> str:
    what = f"{spec.name} ({spec.repo}, revision {spec.revision}, file {spec.filename})"
    endpoint = constants.ENDPOINT
    if progress:
        progress(0.0, f"Downloading {spec.name} weights")
    try:
        if not constants.HF_HUB_OFFLINE:
            _preflight(spec, progress)
        return hf_hub_download(
            spec.repo, spec.filename, revision=spec.revision, cache_dir=cache,
            tqdm_class=_progress_tqdm(progress, spec.name) if progress else None,
        )
    except HfGatedRepoError:
        raise GatedRepoError(
            f"{what} is gated: accept its terms at {endpoint}/{spec.repo} and set HF_TOKEN to a token "
            "that has access.") from None
    except RepositoryNotFoundError:
        raise NotFoundOnHubError(
            f"{what}: the repo does not exist on {endpoint}, or it is private (set HF_TOKEN). "
            "Check 'repo' in the registry or your zoo file.") from None
    except RevisionNotFoundError:
        raise NotFoundOnHubError(
            f"{what}: the revision does not exist in the repo. Check 'revision' in your zoo file.") from None
    except RemoteEntryNotFoundError:
        raise NotFoundOnHubError(
            f"{what}: the file does not exist at that revision. Check 'filename' in your zoo file.") from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, httpx2.ConnectError, httpx2.TimeoutException) as e:
        if constants.HF_HUB_OFFLINE:
            raise WeightsUnavailableError(
                f"Offline mode is on (HF_HUB_OFFLINE=1) and the weights of {what} are not in the cache "
                f"{cache}. Unset HF_HUB_OFFLINE to download them, or run `python -m zoo download "
                f"{spec.name}` once while online.") from None
        raise WeightsUnavailableError(
            f"Cannot reach the Hugging Face Hub ({endpoint}) to download {what}, and it is not in "
            f"the cache {cache}. Check your network connection (or HF_ENDPOINT) and try again. "
            f"({_short(e)})") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise WeightsUnavailableError(
            f"The Hub ({endpoint}) answered HTTP {status} for {what}. It may be down; try again "
            "in a few minutes.") from None
    except (httpx2.HTTPError, OSError) as e:
        raise WeightsUnavailableError(
            f"Downloading {what} failed midway ({_short(e)}). Nothing broken was kept; run it again "
            "to resume.") from None


def _preflight(spec: ModelSpec, progress: ProgressFn | None) -> None:
    """Ask the Hub for the file's metadata, retrying briefly (and saying so) on faults."""
    url = hf_hub_url(spec.repo, spec.filename, revision=spec.revision)
    for attempt, wait in enumerate((*RETRY_WAITS, None), start=1):
        try:
            get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
            return
        except (httpx2.ConnectError, httpx2.TimeoutException, HfHubHTTPError) as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            transient = not isinstance(e, HfHubHTTPError) or status in _RETRY_STATUS
            if wait is None or not transient:
                raise
            why = f"HTTP {status}" if status else "no connection"
            if progress:
                progress(None, f"The Hub did not answer for {spec.name} ({why}); retrying in {wait:.0f} s "
                               f"(attempt {attempt + 1} of {len(RETRY_WAITS) + 1})")
            time.sleep(wait)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _progress_tqdm(progress: ProgressFn, name: str) -> type[hf_tqdm]:
    """A huggingface_hub tqdm that draws nothing itself and reports the bytes to ``progress``.

    Bytes are counted here, not read from ``self.n``: a disabled tqdm (no terminal, or
    ``HF_HUB_DISABLE_PROGRESS_BARS``) returns from ``update`` without counting.
    """

    class _Tqdm(hf_tqdm):
        def __init__(self, *args, **kwargs) -> None:
            # ``progress`` is the one reporter (the command line draws its own bar on a
            # terminal): a second bar from huggingface_hub would fight it for the line.
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self.bytes_done = int(kwargs.get("initial") or 0)  # a resumed download starts part-way

        def update(self, n: float | None = 1) -> bool | None:
            self.bytes_done += int(n or 0)  # negative when a resume is rolled back
            out = super().update(n)
            if self.total:
                done = min(max(self.bytes_done, 0), int(self.total))
                progress(done / self.total, f"Downloading {name}: {done / 1e6:.0f} / {self.total / 1e6:.0f} MB")
            return out

        # Xet downloads: with these two, huggingface_hub reports on this one bar (file bytes
        # via ``update``) instead of opening a second bar for network bytes.
        def update_transfer(self, n: float | None = 1) -> None:
            pass

        def set_transfer_postfix_str(self, s: str = "", refresh: bool = True) -> None:
            pass

    return _Tqdm


# --- verification --------------------------------------------------------------------

def expected_sha256(spec: ModelSpec, path: Path) -> list[str]:
    """Digests the file must have: the registry's, and the Hub's ETag (the blob's name)."""
    digests = [spec.sha256] if spec.sha256 else []
    blob = Path(os.path.realpath(path)).name
    if spec.path is None and _SHA256.fullmatch(blob):
        digests.append(blob)
    return digests


def weights_identity(spec: ModelSpec, path: Path | None = None,
                     cache_dir: str | os.PathLike | None = None) -> dict[str, str | None]:
    """Which bytes ``spec`` names here: the sha256 of its weights file and the commit it came from.

    ``path``: the file loaded (else the cached one; never the network). The sha256 is the
    blob's name in the Hub cache (an LFS file's ETag is its sha256), else the registry's pin,
    else the file's hash; the commit is the cache's snapshot folder, else a pinned revision.
    None where nothing here says (a run's journal compares what both sides know).
    """
    path = path or cached_path(spec, cache_dir)
    sha: str | None = spec.sha256
    revision: str | None = spec.revision if spec.pinned else None
    if path is not None and Path(path).is_file():
        real = Path(os.path.realpath(path))
        if spec.path is None and _SHA256.fullmatch(real.name):
            sha = real.name
        elif sha is None:
            sha = sha256_file(real)
        if Path(path).parent.parent.name == "snapshots":
            revision = Path(path).parent.name
    return {"sha256": sha, "revision": None if spec.path is not None else revision}


def sha256_file(path: Path, progress: ProgressFn | None = None, label: str = "") -> str:
    h = hashlib.sha256()
    total = max(path.stat().st_size, 1)
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done / total, f"Verifying {label} (sha256)")
    return h.hexdigest()


def _record_path(cache: Path, digest: str) -> Path:
    return cache / ".resnet-depth-explorer" / "verified" / f"{digest}.json"


def _fingerprint(path: Path) -> dict[str, int]:
    st = os.stat(os.path.realpath(path))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _verify(path: Path, spec: ModelSpec, cache: Path, progress: ProgressFn | None, *, evict: bool) -> None:
    digests = expected_sha256(spec, path)
    if not digests:
        return  # a local file with no sha256 given: the user vouches for it
    if len(set(digests)) > 1:
        if evict:
            _evict(path)
        raise ChecksumError(
            f"{spec.name}: the Hub serves {spec.repo}/{spec.filename} with sha256 {digests[1]}, but the "
            f"registry pins {digests[0]}. The file changed upstream; pin a revision in your zoo file, "
            "or update the sha256 if you trust the new file.")
    record = _record_path(cache, digests[0])
    fp = _fingerprint(path)
    try:
        if json.loads(record.read_text()) == fp:
            return  # verified before, untouched since
    except (OSError, ValueError):
        pass
    actual = sha256_file(path, progress, spec.name)
    if actual != digests[0]:
        if evict:
            _evict(path)
        record.unlink(missing_ok=True)
        raise ChecksumError(
            f"{spec.name}: sha256 mismatch for {spec.source}: expected {digests[0]}, got {actual}. "
            + ("The bad file was removed from the cache; run again to download it afresh."
               if evict else "Check the file, or the sha256 in your zoo file."))
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(fp))
    os.replace(tmp, record)


def evict(spec: ModelSpec, cache_dir: str | os.PathLike | None = None) -> bool:
    """Remove ``spec``'s cached file (pointer and blob). True if something was removed."""
    found = cached_path(spec, cache_dir)
    if found is None or spec.path is not None:
        return False
    _evict(found)
    return True


def _evict(path: Path) -> None:
    """Remove a cached file: the blob it points to and the snapshot pointer."""
    blob = Path(os.path.realpath(path))
    for p in {blob, Path(path)}:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
