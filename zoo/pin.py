"""``python -m zoo pin``: read each model's current commit, size and sha256 from the Hub, print lines to paste.

The built-ins pin a commit, a size and an LFS sha256 (``zoo/registry.py``). A wrong digest is silent in the
tests (they serve generated weights) and fatal on a real Space (every download of that depth is refused), so
the values are read where the Hub defines them, ``huggingface_hub.model_info(repo, files_metadata=True)``,
stamped with where and when they were read, compared with what the registry holds, and printed as the exact
registry lines (a TOML fragment for zoo-file entries) and ``preload_from_hub`` lines to paste.

Nothing here writes a file: a maintainer reads the differences, then pastes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from .errors import GatedRepoError, NotFoundOnHubError, WeightsUnavailableError, ZooError
from .registry import ModelSpec, Provenance

PIN_CALL = "python -m zoo pin: huggingface_hub.model_info(files_metadata=True)"
# The registry's layout: BUILTIN entries are indented 4, their arguments aligned under "_tv_entry(".
_INDENT = " " * 4
_ARGS = " " * len(_INDENT + "_tv_entry(")
_PROV_ARGS = " " * len(_ARGS + "read=Provenance(")


@dataclass(frozen=True)
class HubFile:
    """One model file as the Hub describes it now."""

    repo: str
    filename: str
    ref: str  # the branch or tag that was read
    commit: str  # the commit ``ref`` points at
    size: int | None
    sha256: str | None  # the LFS sha256 (the ETag ``hf_hub_download`` checks); None for a file not in LFS
    endpoint: str

    def provenance(self, today: dt.date) -> Provenance:
        return Provenance(today.isoformat(), f"{PIN_CALL} on {self.endpoint}, {self.ref} at {self.commit}")


@dataclass(frozen=True)
class Field:
    """One pinned value: what the registry holds beside what the Hub says."""

    name: str  # "revision", "size" or "sha256"
    registry: str | int | None
    hub: str | int | None

    @property
    def same(self) -> bool:
        return self.registry == self.hub

    def line(self) -> str:
        if self.same:
            return f"#   same     {self.name}: {self.hub}"
        held = "nothing" if self.registry is None else "main (not pinned)" if self.registry == "main" else self.registry
        return f"#   DIFFERS  {self.name}: registry {held}, Hub {self.hub if self.hub is not None else 'nothing'}"


def require_online() -> None:
    """``pin`` has nothing to read in offline mode: say so once, before trying any model."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise WeightsUnavailableError(
            "`python -m zoo pin` reads the Hub, and offline mode is on (HF_HUB_OFFLINE=1). Unset it and run again "
            "on a machine with network.")


def read_hub_file(spec: ModelSpec, *, endpoint: str | None = None) -> HubFile:
    """``spec``'s file as the Hub has it now: on the branch or tag ``spec`` follows, or on ``main`` when it
    pins a commit (the question is then whether ``main`` moved). Raises ``ZooError`` subclasses."""
    from huggingface_hub import HfApi, constants

    if spec.repo is None:
        raise ZooError(f"{spec.name} is a local file ({spec.path}), not a Hub repo: there is nothing to pin.")
    require_online()
    ref = "main" if spec.pinned else spec.revision
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    what = f"{spec.name} ({spec.repo}, {ref})"
    info = _model_info(HfApi(endpoint=endpoint), spec.repo, ref, what, endpoint)
    sibling = next((s for s in info.siblings or () if s.rfilename == spec.filename), None)
    if sibling is None:
        raise NotFoundOnHubError(f"{what}: the repo has no file {spec.filename!r} at {ref}. Check 'filename'.")
    if not info.sha:
        raise WeightsUnavailableError(f"{what}: the Hub ({endpoint}) did not say which commit {ref} is at.")
    lfs = sibling.lfs
    size = sibling.size if sibling.size is not None else (lfs.size if lfs else None)
    return HubFile(spec.repo, spec.filename, ref, info.sha, size, lfs.sha256 if lfs else None, endpoint)


def _model_info(api, repo: str, ref: str, what: str, endpoint: str):
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError as HfGatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return api.model_info(repo, revision=ref, files_metadata=True, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfGatedRepoError:
        raise GatedRepoError(f"{what} is gated: accept its terms at {endpoint}/{repo} and set HF_TOKEN.") from None
    except RepositoryNotFoundError:
        mirror = "" if endpoint.rstrip("/") == constants._HF_DEFAULT_ENDPOINT else (
            f" A mirror must answer the Hub's API as well as its downloads: pinning reads "
            f"{endpoint}/api/models/{repo}/revision/{ref} (the commit and each file's sha256), which many mirrors "
            "do not serve. Run it against https://huggingface.co (HF_ENDPOINT unset) or a mirror that does.")
        raise NotFoundOnHubError(f"{what}: the repo does not exist on {endpoint}, or it is private (set "
                                 "HF_TOKEN)." + mirror) from None
    except RevisionNotFoundError:
        raise NotFoundOnHubError(f"{what}: the repo has no branch or tag {ref!r}.") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise WeightsUnavailableError(f"The Hub ({endpoint}) answered HTTP {status} for {what}; try again in a "
                                      "few minutes.") from None
    except (OfflineModeIsEnabled, httpx2.HTTPError, OSError) as e:
        raise WeightsUnavailableError(
            f"Cannot reach the Hub ({endpoint}) for {what}: {type(e).__name__}. `python -m zoo pin` needs the "
            "network (or HF_ENDPOINT set to a mirror).") from None


def compare(spec: ModelSpec, hub: HubFile) -> list[Field]:
    return [Field("revision", spec.revision, hub.commit), Field("size", spec.size_bytes, hub.size),
            Field("sha256", spec.sha256, hub.sha256)]


def _lit(value: str | int | None) -> str:
    return json.dumps(value) if value is not None else "None"  # a Python literal, double-quoted like the registry


def registry_lines(spec: ModelSpec, hub: HubFile, today: dt.date) -> list[str]:
    """The ``BUILTIN`` entry of ``zoo/registry.py`` for ``spec`` with the Hub's values, as it is to be pasted."""
    prov = hub.provenance(today)
    head, _, tail = prov.where.partition(" on ")
    return [
        f"{_INDENT}_tv_entry({_lit(spec.arch.name)}, {spec.top1!r}, {spec.top5!r},",
        f"{_ARGS}revision={_lit(hub.commit)}, size={_lit(hub.size)},",
        f"{_ARGS}sha256={_lit(hub.sha256)},",
        f"{_ARGS}read=Provenance({_lit(prov.read_on)},",
        f"{_PROV_ARGS}{_lit(head)}",
        f"{_PROV_ARGS}{_lit(' on ' + tail)})),",
    ]


def toml_lines(spec: ModelSpec, hub: HubFile) -> list[str]:
    """The same values for a zoo-file entry (TOML has no field for the source: keep it in a comment)."""
    lines = [f"# {PIN_CALL} on {hub.endpoint}, {hub.ref} at {hub.commit}", f"revision = {_lit(hub.commit)}"]
    if hub.size is not None:
        lines.append(f"size_bytes = {hub.size}")
    if hub.sha256 is not None:
        lines.append(f"sha256 = {_lit(hub.sha256)}")
    return lines


def front_matter_line(hub: HubFile) -> str:
    """One ``preload_from_hub`` line of the README's front matter: repo, file, commit."""
    return f"  - {hub.repo} {hub.filename} {hub.commit}"


def report(spec: ModelSpec, hub: HubFile, today: dt.date) -> tuple[list[str], list[str]]:
    """The lines printed for one model, and the names of the values that differ from the registry."""
    fields = compare(spec, hub)
    differ = [f.name for f in fields if not f.same]
    out = [f"# {spec.name}: {hub.repo} {hub.filename}, {hub.ref} is at {hub.commit}"
           + (" (no LFS sha256: not an LFS file)" if hub.sha256 is None else "")]
    out += [f.line() for f in fields]
    if differ == ["revision"] and spec.pinned:
        out.append("#   only the commit moved; the file is the one pinned, so re-pinning is optional")
    if spec.builtin:
        out.append("# zoo/registry.py, in BUILTIN:")
        out += registry_lines(spec, hub, today)
    else:
        out.append(f"# your zoo file, in the [[model]] named {spec.name!r}:")
        out += toml_lines(spec, hub)
    return out, differ
