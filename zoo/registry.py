"""The model registry: every model-specific fact lives here, as data.

Two kinds of frozen record, in the spirit of timm's pretrained configs:

* ``Architecture``: what the paper and torchvision say about a depth (block type,
  blocks per stage, Table 1 figures, torchvision's reported counts). Shared by every
  set of weights of that depth.
* ``ModelSpec``: one set of weights: where it lives on the Hub (pinned), how to check
  it, how to preprocess for it, its labels, its reported accuracy.

Users add or replace entries with a TOML file (``--zoo FILE`` or ``ZOO_FILE``). This
module imports neither torch nor huggingface_hub, so it is cheap to import anywhere.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from .errors import UnknownModelError, ZooFileError
from .files import FileTooLargeError, NotRegularFileError, read_regular
from .published import BUILTIN as PUBLISHED
from .published import Published, from_table

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# A zoo file is a short list of entries; anything bigger is a wrong path (or /dev/zero).
MAX_ZOO_FILE_BYTES = 1 << 20
# Normalisation divides by std: a tiny one turns any image into infinities.
MIN_STD = 1e-3


@dataclass(frozen=True)
class Architecture:
    """One ResNet depth, as the paper (Table 1) and torchvision describe it."""

    name: str  # also the torchvision builder: torchvision.models.<name>
    depth: int
    block: str  # "basic" (two 3x3) or "bottleneck" (1x1, 3x3, 1x1)
    blocks_per_stage: tuple[int, int, int, int]
    paper_flops: float  # Table 1, "FLOPs", which counts multiply-adds


ARCHITECTURES: Mapping[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("resnet18", 18, "basic", (2, 2, 2, 2), 1.8e9),
        Architecture("resnet34", 34, "basic", (3, 4, 6, 3), 3.6e9),
        Architecture("resnet50", 50, "bottleneck", (3, 4, 6, 3), 3.8e9),
        Architecture("resnet101", 101, "bottleneck", (3, 4, 23, 3), 7.6e9),
        Architecture("resnet152", 152, "bottleneck", (3, 8, 36, 3), 11.3e9),
    )
}


@dataclass(frozen=True)
class Preprocessing:
    """Resize the shorter side, center crop, normalise (torchvision's recipe)."""

    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"
    antialias: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class Provenance:
    """Where a built-in's pinned values (commit, size, sha256) were read, and when.

    A pinned value is a claim about bytes on someone else's server: a wrong digest is fatal on a real Space
    (every download refused) and invisible in the tests (they serve generated weights). So every built-in
    value carries this record, and one whose source cannot be shown is not pinned at all
    (``unsourced_pins``; checked by tests/test_registry.py). ``python -m zoo pin`` writes new ones.
    """

    read_on: str  # ISO date, YYYY-MM-DD
    where: str  # the pages or the call the values were read from


@dataclass(frozen=True)
class ModelSpec:
    """Everything about one set of weights. Built-ins and TOML entries alike."""

    name: str
    arch: Architecture
    repo: str | None = None  # Hub repo id; None only for a local ``path``
    revision: str = "main"
    filename: str = "model.safetensors"
    sha256: str | None = None  # None: checked against the Hub's ETag instead
    size_bytes: int | None = None
    path: str | None = None  # a local safetensors file the user named on purpose
    labels: tuple[str, ...] | None = None  # None: the 1000 ImageNet classes
    top1: float | None = None  # reported ImageNet accuracy, %
    top5: float | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    cam_layer: str = "layer4"  # last stage: its output feeds global average pooling
    license: str | None = None
    description: str = ""
    builtin: bool = False
    provenance: Provenance | None = None  # built-ins: where revision, size and sha256 were read
    published: Published | None = None  # published ImageNet-variant figures, with their source (zoo.published)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes this model's outputs name: its own labels, else the 1000 ImageNet classes."""
        if self.labels is not None:
            return self.labels
        from .models import imagenet_labels  # torchvision's metadata: only when a model runs

        return imagenet_labels()

    @property
    def depth(self) -> int:
        return self.arch.depth

    @property
    def num_classes(self) -> int:
        return len(self.labels) if self.labels is not None else 1000

    @property
    def pinned(self) -> bool:
        """True when the revision is a commit hash, so the bytes cannot change."""
        return bool(_COMMIT.fullmatch(self.revision))

    @property
    def source(self) -> str:
        if self.path is not None:
            return self.path
        return f"{self.repo}@{self.revision[:12]}/{self.filename}"


def _tv_entry(arch: str, top1: float, top5: float, *, revision: str = "main", size: int | None = None,
              sha256: str | None = None, read: Provenance | None = None) -> ModelSpec:
    return ModelSpec(
        name=arch,
        arch=ARCHITECTURES[arch],
        repo=f"timm/{arch}.tv_in1k",
        revision=revision,
        sha256=sha256,
        size_bytes=size,
        top1=top1,
        top5=top5,
        license="bsd-3-clause",
        description="Original torchvision ImageNet weights (IMAGENET1K_V1), as published by timm.",
        builtin=True,
        provenance=read,
        published=PUBLISHED.get(arch),
    )


# The original torchvision ImageNet-1k weights as timm publishes them on the Hub. Key names equal
# torchvision's, so strict loading works.
#
# Every pinned value says where it was read and when (``read=``). A value nobody can show a source for is
# left out: that entry follows ``main`` and its file is checked against the sha256 the Hub sends for it
# (the ETag) instead. ``python -m zoo pin`` reads the current commit, size and LFS sha256 of each entry
# from the Hub and prints these lines, stamped with their own source, ready to paste over them.
#
# The values below were read on 2026-11-29 from stored copies of the Hub's own pages (the copies' dates are
# not known) and from other public projects that pin the same values; none was read from the Hub's API.
# Run `python -m zoo pin` with network to replace them with first-hand readings (README, "Deploy").
BUILTIN: tuple[ModelSpec, ...] = (
    _tv_entry("resnet18", 69.76, 89.08,
              revision="bbd144b3e5565108aad885f145491d11bc6ce807", size=46807446,
              sha256="694f673df6520a3158624e8a89af086f59923ee4cd7436fe5bc3bc71d295ad81",
              read=Provenance("2026-11-29",
                              "sha256: https://huggingface.co/timm/resnet18.tv_in1k/blob/main/model.safetensors "
                              "(Git LFS details: this SHA256, 46.8 MB; file last changed in a987fd6 'Add model'); "
                              "commit, size and sha256: the same three values pinned together by independent "
                              "public projects (found by code search)")),
    _tv_entry("resnet34", 73.31, 91.42,
              revision="1b7b21cca82ff974d341713f777bf740c2db38c4", size=87278522,
              sha256="0bb82595a564991a9d424708b33f5d843f5aaed7f6c0886ff10849ff97022235",
              read=Provenance("2026-11-29",
                              "commit, size and sha256: the same three values pinned together by independent "
                              "public projects (found by code search); consistent with "
                              "https://huggingface.co/timm/resnet34.tv_in1k/tree/main (model.safetensors "
                              "87.3 MB, last changed in 'Add model')")),
    _tv_entry("resnet50", 76.13, 92.86,
              revision="78f3ecfdb38e06d9b8397f662e7ab8fee96026fa", size=102469840,
              sha256="5d061a3c593d795bfe682d9b152bafbcf550579873492def3515b46db1189888",
              read=Provenance("2026-11-29",
                              "commit: https://huggingface.co/timm/resnet50.tv_in1k/commit/"
                              "78f3ecfdb38e06d9b8397f662e7ab8fee96026fa ('transformers tag', README.md only); "
                              "sha256: https://huggingface.co/timm/resnet50.tv_in1k/blob/main/model.safetensors "
                              "(this SHA256, 102 MB; file last changed in aa6c2d3 'Add model'); commit, size and "
                              "sha256: pinned together by independent public projects (found by code search)")),
    # Not pinned: no page or project seen shows its full commit (only 54887a0, abbreviated) or its digest.
    _tv_entry("resnet101", 77.37, 93.55),
    # No exact size seen (the pages round it to 241 MB): the size is left out, the commit and digest are pinned.
    _tv_entry("resnet152", 78.31, 94.05,
              revision="1f8fa579af406a6f10e457a6dce6909c9157a70f", size=None,
              sha256="15897077afdf4d6334dc0c3f8e6fb483afb3faa9298c139f3c6eb29bca6ae5b2",
              read=Provenance("2026-11-29",
                              "commit: https://huggingface.co/timm/resnet152.tv_in1k/commit/"
                              "1f8fa579af406a6f10e457a6dce6909c9157a70f ('Fix library_name.', parent 2a9b5c2, "
                              "README.md only) and its tree (model.safetensors 241 MB, last changed in 'Add "
                              "model'); sha256: https://huggingface.co/timm/resnet152.tv_in1k/blob/main/"
                              "model.safetensors (this SHA256, 241 MB; file last changed in 2a9b5c2 'Add "
                              "model'), and the same SHA256 for theunnecessarythings/vision_models "
                              "resnet152.safetensors on the Hub")),
)


def unsourced_pins(spec: ModelSpec, today: dt.date | None = None) -> list[str]:
    """What ``spec`` pins without a usable source: the values a built-in must not hold (empty: all sourced).

    A pinned commit, a size or a sha256 needs a ``Provenance`` that names where it was read and a read date
    that is a real date and not in the future.
    """
    pinned = [what for what, held in (("revision", spec.pinned), ("size_bytes", spec.size_bytes is not None),
                                      ("sha256", spec.sha256 is not None)) if held]
    if not pinned:
        return []
    prov = spec.provenance
    if prov is None or not prov.where.strip():
        return pinned
    try:
        read_on = dt.date.fromisoformat(prov.read_on)
    except (TypeError, ValueError):
        return pinned
    return pinned if read_on > (today or dt.date.today()) else []


_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Hub repo ids: "owner/name" (or a bare legacy "name"); no "..", no slashes beyond one.
_REPO_ID = re.compile(r"(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}")
_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,63}")
# Branch or tag names (git's rules, narrowed) or commit hashes. huggingface_hub writes
# the revision into the cache as a file path (refs/<revision>), so it must stay a name.
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./-]{0,199}")


def valid_revision(revision: str) -> bool:
    """A branch/tag name like ``main`` or ``refs/pr/1``, or a commit hash; never a path trick."""
    return bool(_REVISION.fullmatch(revision)) and not (
        ".." in revision or "//" in revision or revision.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") for part in revision.split("/")))


class Zoo:
    """An ordered, read-only set of ``ModelSpec`` by name."""

    def __init__(self, specs: Iterable[ModelSpec]):
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec  # later entries replace earlier ones

    @classmethod
    def load(cls, zoo_file: str | os.PathLike | None = None) -> "Zoo":
        """Built-ins plus the entries of ``zoo_file`` (default: ``$ZOO_FILE``)."""
        zoo_file = zoo_file or os.environ.get("ZOO_FILE") or None
        extra = parse_zoo_file(zoo_file) if zoo_file else ()
        return cls((*BUILTIN, *extra))

    def get(self, name: str) -> ModelSpec:
        if not isinstance(name, str):  # a raw API call can send anything
            raise UnknownModelError(f"The model must be a name such as {next(iter(self._specs))!r}, not "
                                    f"{type(name).__name__}. Known models: {', '.join(self._specs)}.")
        try:
            return self._specs[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self._specs, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownModelError(
                f"Unknown model {name!r}.{hint} Known models: {', '.join(self._specs)}. "
                "Add your own with --zoo FILE (see README)."
            ) from None

    @property
    def names(self) -> list[str]:
        return list(self._specs)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    @cached_property
    def builtin_depths(self) -> list[ModelSpec]:
        """The five built-in depths as this zoo has them (a zoo file may replace them)."""
        return [self._specs[a] for a in ARCHITECTURES if a in self._specs]


# --- TOML zoo files -----------------------------------------------------------------

_ALLOWED = {
    "name", "arch", "repo", "revision", "filename", "sha256", "size_bytes", "path",
    "labels", "top1", "top5", "license", "description", "published",
    "resize", "crop", "interpolation", "antialias", "mean", "std",
}
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def parse_zoo_file(path: str | os.PathLike) -> tuple[ModelSpec, ...]:
    """Parse a ``[[model]]`` TOML file into specs; ``ZooFileError`` names what is wrong.

    The file is data only: it is never executed, and it can reach a local file only
    through an explicit ``path`` field.
    """
    path = Path(path)
    try:
        text = read_regular(path, MAX_ZOO_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ZooFileError(f"Zoo file {path} does not exist. Check the path given to --zoo or ZOO_FILE.") from None
    except NotRegularFileError as e:
        raise ZooFileError(f"Zoo file {path} is {e.kind}, not a regular file. Give --zoo or ZOO_FILE "
                           "the path of a TOML file.") from None
    except FileTooLargeError:
        raise ZooFileError(f"Zoo file {path} is larger than {MAX_ZOO_FILE_BYTES // 1024} KB; a zoo file lists "
                           "models, not weights. Check the path given to --zoo or ZOO_FILE.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ZooFileError(f"Cannot read zoo file {path}: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:  # its message names line and column
        raise ZooFileError(f"Zoo file {path} is not valid TOML: {e}") from None
    unknown_top = set(data) - {"model"}
    if unknown_top:
        raise ZooFileError(f"Zoo file {path}: unknown top-level key(s) {sorted(unknown_top)}; "
                           "entries go in [[model]] tables.")
    models = data.get("model", [])
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise ZooFileError(f"Zoo file {path}: 'model' must be an array of tables, written [[model]].")
    specs = [_spec_from_table(m, i, path) for i, m in enumerate(models, 1)]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ZooFileError(f"Zoo file {path}: the name {s.name!r} is used twice.")
        seen.add(s.name)
    return tuple(specs)


def _spec_from_table(t: dict[str, Any], i: int, path: Path) -> ModelSpec:
    where = f"Zoo file {path}, model #{i}" + (f" ({t['name']!r})" if isinstance(t.get("name"), str) else "")

    def fail(msg: str) -> ZooFileError:
        return ZooFileError(f"{where}: {msg}")

    def typed(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in t:
            return default
        v = t[key]
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise fail(f"field '{key}' must be a {names}, got {type(v).__name__} {v!r}.")
        return v

    unknown = set(t) - _ALLOWED
    if unknown:
        raise fail(f"unknown field(s) {sorted(unknown)}. Allowed: {', '.join(sorted(_ALLOWED))}.")
    for key in ("name", "arch"):
        if key not in t:
            raise fail(f"required field '{key}' is missing.")
    name = typed("name", str)
    if not _NAME.fullmatch(name):
        raise fail(f"field 'name' {name!r} must be letters, digits, '.', '_' or '-' (at most 64).")
    arch = typed("arch", str)
    if arch not in ARCHITECTURES:
        raise fail(f"field 'arch' is {arch!r}; it must be one of {', '.join(ARCHITECTURES)}.")
    repo = typed("repo", str)
    local = typed("path", str)
    if (repo is None) == (local is None):
        raise fail("give exactly one of 'repo' (a Hub repo id) or 'path' (a local .safetensors file).")
    if repo is not None and (not _REPO_ID.fullmatch(repo) or ".." in repo):
        raise fail(f"field 'repo' {repo!r} is not a Hub repo id like 'owner/name'.")
    revision = typed("revision", str, "main")
    if not valid_revision(revision):
        raise fail(f"field 'revision' {revision!r} must be a branch or tag name (letters, digits, '.', '_', "
                   "'-', '/'; no '..') or a 40-hex commit hash.")
    filename = typed("filename", str, "model.safetensors")
    if filename.startswith(("/", "\\")) or ".." in Path(filename).parts or "\\" in filename:
        raise fail(f"field 'filename' {filename!r} must be a path inside the repo, without '..'.")
    if local is not None:
        local_path = Path(local).expanduser()
        local = str(local_path if local_path.is_absolute() else (path.parent / local_path).resolve())
    if not (local or filename).endswith(".safetensors"):
        raise fail("only .safetensors weights are loaded (pickle files can run code).")
    sha = typed("sha256", str)
    if sha is not None:
        sha = sha.lower()
        if not _SHA256.fullmatch(sha):
            raise fail(f"field 'sha256' must be 64 hex digits, got {t['sha256']!r}.")
    labels = typed("labels", list)
    if labels is not None:
        if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
            raise fail("field 'labels' must be a list of at least two non-empty strings.")
        labels = tuple(labels)
    pre = _preprocessing(t, typed, fail)
    if pre.crop > pre.resize:
        raise fail(f"'crop' ({pre.crop}) cannot exceed 'resize' ({pre.resize}).")
    size = typed("size_bytes", int)
    top1, top5 = typed("top1", (int, float)), typed("top5", (int, float))
    return ModelSpec(name=name, arch=ARCHITECTURES[arch], repo=repo, revision=revision, filename=filename,
                     sha256=sha, size_bytes=size, path=local, labels=labels,
                     top1=float(top1) if top1 is not None else None, top5=float(top5) if top5 is not None else None,
                     preprocessing=pre, license=typed("license", str), description=typed("description", str, ""),
                     published=from_table(t.get("published"), fail))


def _preprocessing(t: dict[str, Any], typed: Callable[..., Any],
                   fail: Callable[[str], ZooFileError]) -> Preprocessing:
    """A zoo file entry's resize, crop, interpolation, antialias, mean and std (``_spec_from_table``'s
    ``typed`` and ``fail`` read and refuse them)."""
    pre_kw: dict[str, Any] = {}
    for key in ("resize", "crop"):
        v = typed(key, int)
        if v is not None:
            if not 16 <= v <= 1024:
                raise fail(f"field '{key}' must be between 16 and 1024, got {v}.")
            pre_kw[key] = v
    interp = typed("interpolation", str)
    if interp is not None:
        if interp not in _INTERPOLATIONS:
            raise fail(f"field 'interpolation' must be one of {', '.join(_INTERPOLATIONS)}.")
        pre_kw["interpolation"] = interp
    if "antialias" in t:
        pre_kw["antialias"] = typed("antialias", bool)
    for key in ("mean", "std"):
        v = typed(key, list)
        if v is not None:
            if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise fail(f"field '{key}' must be a list of three numbers.")
            if not all(math.isfinite(x) for x in v):  # TOML allows nan and inf
                raise fail(f"field '{key}' must be three finite numbers, got {v}.")
            if key == "std" and min(v) < MIN_STD:
                raise fail(f"field 'std' must be at least {MIN_STD:g} per channel (it divides the image), "
                           f"got {v}.")
            pre_kw[key] = tuple(float(x) for x in v)
    return Preprocessing(**pre_kw)
