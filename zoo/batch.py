"""Many images at once: any set of zoo models over files, folders, globs or one zip.

``gather`` turns what a user names into a list of ``Item``s (nothing decoded yet) and
checks zips before reading a byte of their members. ``stream`` decodes each image once
in a small thread pool (so decoding overlaps the forwards), preprocesses it once per
distinct ``spec.preprocessing``, runs batched forwards for every model, and yields one
``ImageResult`` per image as it is done, then the ``BatchResult``. Memory stays bounded:
only a few batches of tensors are in flight, and each image leaves behind its top-k only
(plus a small thumbnail when asked for).

Labels are optional: the folder that holds an image (ImageFolder layout; a class name,
any of its WordNet synonyms, or a WordNet id like ``n02123045``), or a ``file,label`` CSV.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import heapq
import io
import os
import re
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .cancel import Cancelled, check
from .errors import ImageError, ZooError
from .images import load_image, model_crop, to_tensor
from .models import LoadedModel, imagenet_labels
from .registry import Preprocessing

ProgressFn = Callable[[float | None, str], None]

# Zips come from strangers on a public Space: refuse what would cost memory or disk
# out of proportion before any member is read. Members are read into memory, never
# extracted, so no name in a zip can reach the file system.
MAX_ZIP_MEMBERS = 2000  # files (directories aside)
MAX_ZIP_ENTRIES = 2 * MAX_ZIP_MEMBERS  # everything in the central directory
MAX_ZIP_TOTAL = 1 << 30  # uncompressed bytes, all members together
MAX_ZIP_RATIO = 100  # uncompressed / compressed, per member ...
RATIO_FLOOR = 2 << 20  # ... once a member is larger than this (tiny files compress well honestly)
MAX_FILE_BYTES = 100 << 20  # one image file or zip member
MAX_LABELS_BYTES = 16 << 20  # a labels CSV
MAX_MATTERED = 12  # "where depth mattered": how many images to keep
HIDDEN = re.compile(r"(^|/)(\.|__MACOSX/)")  # .DS_Store, ._resource forks, __MACOSX/


class BatchInputError(ZooError):
    """What was named cannot be used as a batch: missing, an unsafe zip, too many files."""


class NoImagesError(ZooError):
    """Not one of the files could be classified."""


# --- inputs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ZipMember:
    archive: Path
    member: str


@dataclass(frozen=True)
class Item:
    """One file to classify: its name as shown, where its bytes are, and its label text."""

    name: str  # relative path as the user named it; never a server's temporary path
    source: Path | ZipMember
    folder: str | None = None  # the folder holding it, inside what was named: ImageFolder label
    label_text: str | None = None  # from a labels CSV; wins over ``folder``


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class Progress:
    """How far the run is, yielded before each model's forward on each chunk: a consumer
    that is itself a generator (a web handler) can be stopped there."""

    fraction: float
    message: str


@dataclass
class BatchInput:
    items: list[Item]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def gather(paths: Sequence[str | os.PathLike], *, names: Sequence[str] | None = None,
           labels_csv: str | os.PathLike | None = None, max_images: int | None = None,
           globs: bool = True) -> BatchInput:
    """The files behind ``paths``: image files, folders (walked), globs, ``.zip`` files.

    ``names`` (one per path) replaces how a path is shown, e.g. an upload's original
    name instead of its temporary path. ``max_images`` caps the number of files.
    """
    if not paths:
        raise BatchInputError("Name at least one image, folder or .zip file.")
    if names is not None and len(names) != len(paths):
        raise ValueError("names must match paths one to one")
    items: list[Item] = []
    skipped: list[Skipped] = []
    for i, raw in enumerate(paths):
        text = os.fspath(raw)
        shown = names[i] if names is not None else text
        if globs and glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise BatchInputError(f"No files match {text}.")
            root = _literal_prefix(text)
            for m in matches:
                p = Path(m)
                if p.is_dir():
                    items += _walk(p, m)
                elif not HIDDEN.search(p.name):
                    items.append(Item(m, p, _folder(p, root)))
            continue
        p = Path(text)
        if p.is_dir():
            found = _walk(p, shown)
            if not found:
                raise BatchInputError(f"{shown} holds no files.")
            items += found
        elif p.is_file():
            if p.suffix.lower() == ".zip":
                zitems, zskipped = zip_items(p, shown)
                items += zitems
                skipped += zskipped
            else:
                items.append(Item(shown, p))
        else:
            raise BatchInputError(f"{shown} does not exist.")
        if max_images is not None and len(items) > max_images:
            break  # no need to list the rest of a huge folder to say it is too many
    if max_images is not None and len(items) > max_images:
        count = f"{len(items)}" if i == len(paths) - 1 else f"more than {max_images}"
        raise BatchInputError(f"Too many files: {count} given, and this app classifies at most {max_images} "
                              "images per request. Send fewer (or split the set), or run `python -m zoo batch` "
                              "on your own machine, which has no limit.")
    if not items and not skipped:
        raise BatchInputError("No files found in " + ", ".join(map(os.fspath, names or paths)) + ".")
    # The same file named twice (a folder and a glob inside it) is classified once.
    seen: set[Path | ZipMember] = set()
    unique = []
    for it in items:
        key = it.source.resolve() if isinstance(it.source, Path) else it.source
        if key not in seen:
            seen.add(key)
            unique.append(it)
    items = unique
    inp = BatchInput(items, skipped)
    if labels_csv is not None:
        attach_labels(inp, read_labels_csv(labels_csv))
    return inp


def _walk(root: Path, shown: str) -> list[Item]:
    """Every visible file under ``root``, sorted; the holding folder is the label candidate."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not HIDDEN.search(d + "/"))
        for f in sorted(filenames):
            if HIDDEN.search(f):
                continue
            p = Path(dirpath) / f
            rel = p.relative_to(root)
            out.append(Item(str(Path(shown) / rel), p, rel.parent.name or None))
    return out


def _literal_prefix(pattern: str) -> Path:
    """The folder before a glob's first wildcard: ``val/*/*.JPEG`` -> ``val``."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _folder(path: Path, root: Path) -> str | None:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    return rel.parent.name or None


# --- zips ---------------------------------------------------------------------------------

def zip_items(path: Path, shown: str | None = None) -> tuple[list[Item], list[Skipped]]:
    """The members of a zip as items, after checking the whole archive is safe to read.

    Refused outright (``BatchInputError``): too many entries, absolute or ``..`` names,
    symbolic links, more than ``MAX_ZIP_TOTAL`` bytes uncompressed, a member compressed
    beyond ``MAX_ZIP_RATIO``:1 (a zip bomb). Encrypted members are skipped.
    """
    shown = shown or path.name
    declared = _declared_entries(path)
    if declared is not None and declared > MAX_ZIP_ENTRIES:
        raise BatchInputError(f"{shown} has {declared} entries; the limit is {MAX_ZIP_MEMBERS} files. "
                              "Split it into smaller zips.")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise BatchInputError(f"{shown} is not a readable zip file ({e}).") from None
    files = [i for i in infos if not i.is_dir()]
    if len(infos) > MAX_ZIP_ENTRIES or len(files) > MAX_ZIP_MEMBERS:
        raise BatchInputError(f"{shown} has {len(files)} files; the limit is {MAX_ZIP_MEMBERS}. "
                              "Split it into smaller zips.")
    total = 0
    for info in infos:
        if _unsafe_name(info.filename):
            raise BatchInputError(f"{shown} contains a member named {info.filename[:80]!r}: absolute paths and "
                                  "'..' are refused. Zip the folder itself, with relative names.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BatchInputError(f"{shown} contains a symbolic link ({info.filename[:80]!r}); links are refused. "
                                  "Zip the files themselves.")
        total += info.file_size
        ratio = info.file_size // max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and ratio > MAX_ZIP_RATIO:
            raise BatchInputError(f"{shown}: {info.filename[:80]!r} expands {ratio}-fold "
                                  f"({info.file_size / 1e6:.0f} MB); more than {MAX_ZIP_RATIO}:1 looks like a "
                                  "zip bomb and is refused.")
    if total > MAX_ZIP_TOTAL:
        raise BatchInputError(f"{shown} would expand to {total / 1e9:.1f} GB; the limit is "
                              f"{MAX_ZIP_TOTAL / 1e9:.1f} GB. Split it into smaller zips.")
    items, skipped = [], []
    for info in files:
        name = info.filename
        if HIDDEN.search(name):
            continue
        if info.flag_bits & 0x1:
            skipped.append(Skipped(name, "encrypted in the zip; zip it without a password"))
        elif info.file_size > MAX_FILE_BYTES:
            skipped.append(Skipped(name, f"{info.file_size / 1e6:.0f} MB; files over "
                                         f"{MAX_FILE_BYTES >> 20} MB are skipped"))
        else:
            folder = PurePosixPath(name.replace("\\", "/")).parent.name or None
            items.append(Item(name, ZipMember(path, name), folder))
    return items, skipped


def _unsafe_name(name: str) -> bool:
    parts = re.split(r"[\\/]", name)
    return (name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name)) or ".." in parts
            or "\x00" in name)


def _declared_entries(path: Path) -> int | None:
    """The entry count in the end-of-central-directory record, read before zipfile parses
    the whole directory (a crafted one could list millions of entries)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 65_557))  # the record (22 bytes) plus the longest comment
        tail = f.read()
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) < i + 22:
        return None
    n = struct.unpack_from("<H", tail, i + 10)[0]
    if n == 0xFFFF:  # zip64: the count is in the zip64 end record just before
        j = tail.rfind(b"PK\x06\x06", 0, i)
        if j >= 0 and len(tail) >= j + 56:
            n = struct.unpack_from("<Q", tail, j + 32)[0]
    return n


class Reader:
    """Reads items' bytes; keeps each zip open once for the whole run (thread-safe)."""

    def __init__(self) -> None:
        self._zips: dict[Path, zipfile.ZipFile] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            for zf in self._zips.values():
                zf.close()
            self._zips.clear()

    def read(self, item: Item) -> Path | bytes:
        src = item.source
        if isinstance(src, Path):
            try:
                size = src.stat().st_size
            except OSError as e:
                raise ImageError(f"{item.name} cannot be read ({e.strerror}).") from None
            if size > MAX_FILE_BYTES:
                raise ImageError(f"{item.name} is {size / 1e6:.0f} MB; files over {MAX_FILE_BYTES >> 20} MB "
                                 "are skipped.")
            return src
        # zipfile's shared file handle is safe across threads only for whole reads; a
        # lock keeps it simple (inflating a member is fast next to decoding it).
        with self._lock:
            try:
                zf = self._zips.get(src.archive) or self._zips.setdefault(src.archive, zipfile.ZipFile(src.archive))
                with zf.open(src.member) as f:
                    data = f.read(MAX_FILE_BYTES + 1)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError,
                    KeyError, ValueError) as e:
                raise ImageError(f"{item.name} could not be read from the zip ({e}).") from None
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{item.name} is over {MAX_FILE_BYTES >> 20} MB; skipped.")
        return data


def read_source(source: Path | ZipMember) -> Path | bytes:
    """The bytes (or path) of one item again, e.g. to open it in another view."""
    with Reader() as r:
        return r.read(Item(source.member if isinstance(source, ZipMember) else source.name, source))


# --- labels -------------------------------------------------------------------------------

def read_labels_csv(path: str | os.PathLike, name: str | None = None) -> dict[str, str]:
    """``file,label`` rows (a header row is optional; a label may hold commas when quoted)."""
    p = Path(path)
    shown = name or p.name
    try:
        size = p.stat().st_size
    except OSError:
        raise BatchInputError(f"Labels file {shown} does not exist.") from None
    if size > MAX_LABELS_BYTES:
        raise BatchInputError(f"Labels file {shown} is {size / 1e6:.0f} MB; the limit is "
                              f"{MAX_LABELS_BYTES >> 20} MB.")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BatchInputError(f"Labels file {shown} is not UTF-8 text; save it as a UTF-8 CSV.") from None
    out: dict[str, str] = {}
    try:
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise BatchInputError(f"Labels file {shown}, line {lineno}: expected 'file,label', "
                                      f"got {row[0][:60]!r}.")
            file, label = row[0].strip(), ",".join(row[1:]).strip()
            if lineno == 1 and file.lower() in ("file", "filename", "path", "image") and \
                    label.lower() in ("label", "class", "target"):
                continue
            out[_key(file)] = label
    except csv.Error as e:
        raise BatchInputError(f"Labels file {shown} is not a valid CSV ({e}).") from None
    if not out:
        raise BatchInputError(f"Labels file {shown} has no 'file,label' rows.")
    return out


def _key(name: str) -> str:
    return name.replace("\\", "/").removeprefix("./").strip()


def attach_labels(inp: BatchInput, labels: dict[str, str]) -> None:
    """Give each item the CSV label of its path, or of any tail of it (``cat/1.jpg``, ``1.jpg``)."""
    used: set[str] = set()
    for i, item in enumerate(inp.items):
        parts = _key(item.name).split("/")
        for j in range(len(parts)):
            key = "/".join(parts[j:])
            if key in labels:
                inp.items[i] = Item(item.name, item.source, item.folder, labels[key])
                used.add(key)
                break
    unused = len(labels) - len(used)
    if unused:
        inp.notes.append(f"{unused} row(s) of the labels file name files that are not in the batch.")


def _norm(text: str) -> str:
    return " ".join(text.replace("_", " ").lower().split())


@lru_cache(maxsize=1)
def _imagenet_synsets() -> tuple[tuple[str, str], ...]:
    """(WordNet id, "name, synonym, ...") for the 1000 classes, in index order, from timm."""
    from timm.data import ImageNetInfo  # heavy import; only when labels are given

    info = ImageNetInfo()
    return tuple((info.index_to_label_name(i), info.index_to_description(i)) for i in range(1000))


class LabelIndex:
    """Class names, WordNet synonyms and ids (ImageNet models), or indices -> class index."""

    def __init__(self, labels: tuple[str, ...]):
        self.labels = labels
        self._map: dict[str, set[int]] = {}
        for i, lab in enumerate(labels):
            self._add(lab, i)
        self.imagenet = labels == imagenet_labels()
        if self.imagenet:
            for i, (wnid, desc) in enumerate(_imagenet_synsets()):
                self._add(wnid, i)
                self._add(desc, i)
                for syn in desc.split(","):
                    self._add(syn, i)

    def _add(self, text: str, i: int) -> None:
        self._map.setdefault(_norm(text), set()).add(i)

    def resolve(self, text: str) -> tuple[int | None, str | None]:
        """(index, None), or (None, why not)."""
        t = text.strip()
        if t.isdigit():
            i = int(t)
            return (i, None) if i < len(self.labels) else (None, f"class {i} is out of range 0..{len(self.labels) - 1}")
        hits = self._map.get(_norm(t), set())
        if len(hits) == 1:
            return next(iter(hits)), None
        if hits:
            which = ", ".join(f"{i} {self.labels[i]}" + (f" ({_imagenet_synsets()[i][0]})" if self.imagenet else "")
                              for i in sorted(hits))
            return None, f"{t!r} names {len(hits)} classes ({which}); use the WordNet id or the class index"
        what = "an ImageNet class name, synonym or WordNet id" if self.imagenet else "one of this model's classes"
        return None, f"{t!r} is not {what}"


def resolve_labels(items: Sequence[Item], labels: tuple[str, ...]) -> tuple[list[int | None], list[str]]:
    """The class index of every item (None: unlabelled), and notes on labels that did not resolve.

    A folder name that is not a class just means "no label" (photos/, holiday/); a CSV
    label that does not resolve is reported, since it was given on purpose.
    """
    if not any(it.label_text or it.folder for it in items):
        return [None] * len(items), []
    index = LabelIndex(labels)
    cache: dict[str, tuple[int | None, str | None]] = {}
    out: list[int | None] = []
    bad_folders: dict[str, tuple[str, int]] = {}
    bad_csv: dict[str, tuple[str, int]] = {}
    resolved_folders = 0
    for it in items:
        text, from_csv = (it.label_text, True) if it.label_text else (it.folder, False)
        if not text:
            out.append(None)
            continue
        idx, why = cache.get(text) or cache.setdefault(text, index.resolve(text))
        out.append(idx)
        if idx is None:
            bad = bad_csv if from_csv else bad_folders
            bad[text] = (why or "", bad.get(text, ("", 0))[1] + 1)
        elif not from_csv:
            resolved_folders += 1
    notes = [f"Label {why}: {n} image(s) left unlabelled." for why, n in bad_csv.values()]
    # Folder names only matter when the layout looks like ImageFolder (some folders are classes).
    if resolved_folders:
        notes += [f"Folder {why}: its {n} image(s) are unlabelled." for why, n in bad_folders.values()]
    return out, notes


# --- results ------------------------------------------------------------------------------

@dataclass
class ImageResult:
    """One image through every model: top-k per model (rows in the batch's model order)."""

    index: int  # position among the items
    name: str
    label: int | None
    top: np.ndarray  # (models, k) class indices, most probable first
    probs: np.ndarray  # (models, k) float32
    label_probs: np.ndarray | None  # (models,) probability each model gives the label
    source: Path | ZipMember = field(repr=False)
    thumbnail: Image.Image | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    def top1(self, m: int) -> int:
        return int(self.top[m, 0])

    def correct(self, m: int, k: int = 1) -> bool | None:
        return None if self.label is None else bool(self.label in self.top[m, :k])

    @property
    def agree(self) -> bool:
        return len(set(self.top[:, 0].tolist())) == 1


@dataclass
class ModelSummary:
    name: str
    depth: int
    images: int = 0
    labelled: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    confidence_sum: float = 0.0
    seconds: float = 0.0  # forwards only: host-to-device copy, network, softmax, top-k

    @property
    def top1(self) -> float | None:
        return self.top1_correct / self.labelled if self.labelled else None

    @property
    def top5(self) -> float | None:
        return self.top5_correct / self.labelled if self.labelled else None

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.images if self.images else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"model": self.name, "depth": self.depth, "images": self.images, "labelled": self.labelled,
                "top1": self.top1, "top1_correct": self.top1_correct, "top5": self.top5,
                "top5_correct": self.top5_correct, "mean_confidence": round(self.mean_confidence, 6),
                "images_per_s": round(self.images_per_s, 2), "seconds": round(self.seconds, 4)}


@dataclass
class Mattered:
    """An image on which depth made a difference, and in what way."""

    image: ImageResult
    reason: str


@dataclass
class BatchResult:
    models: list[str]
    labels: tuple[str, ...] = field(repr=False)
    top_k: int
    per_model: list[ModelSummary]
    agreement: np.ndarray  # (models, models): share of images with the same top-1
    mattered: list[Mattered]
    images: list[ImageResult]  # empty when the run was asked not to keep them
    skipped: list[Skipped]
    notes: list[str]
    n_images: int
    n_labelled: int
    device: str
    precision: str
    batch_size: int
    seconds: float
    partial: bool = False  # the images done so far, while the run goes on (or after it was stopped)

    def predictions(self) -> Iterator[dict[str, Any]]:
        """One record per image and model: what the CSV and JSON downloads hold."""
        for img in self.images:
            yield from prediction_records(img, self.models, self.labels, self.top_k)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(csv_header(self.top_k))
        for rec in self.predictions():
            w.writerow(csv_row(rec, self.top_k))
        return buf.getvalue()

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.n_images, "labelled": self.n_labelled, "device": self.device,
            "precision": self.precision, "batch_size": self.batch_size, "seconds": round(self.seconds, 3),
            "models": [s.to_json() for s in self.per_model],
            "agreement": {"models": self.models, "matrix": np.round(self.agreement, 6).tolist()},
            "mattered": [{"file": m.image.name, "reason": m.reason,
                          "label": self.labels[m.image.label] if m.image.label is not None else None,
                          "top1": {name: self.labels[m.image.top1(i)] for i, name in enumerate(self.models)}}
                         for m in self.mattered],
            "skipped": [{"file": s.name, "reason": s.reason} for s in self.skipped],
            "notes": self.notes,
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "predictions": list(self.predictions())}


def prediction_records(img: ImageResult, models: Sequence[str], labels: tuple[str, ...],
                       top_k: int) -> Iterator[dict[str, Any]]:
    for m, name in enumerate(models):
        yield {
            "file": img.name, "model": name,
            "label": labels[img.label] if img.label is not None else None, "label_index": img.label,
            "correct": img.correct(m, 1), "correct_top5": img.correct(m, 5),
            "predictions": [{"index": int(i), "label": labels[int(i)], "prob": round(float(p), 6)}
                    for i, p in zip(img.top[m, :top_k], img.probs[m, :top_k])],
        }


def csv_header(top_k: int) -> list[str]:
    ranks = [f"top{r}_{what}" for r in range(1, top_k + 1) for what in ("index", "label", "prob")]
    return ["file", "model", "label", "label_index", "correct", "correct_top5", *ranks]


def csv_row(rec: dict[str, Any], top_k: int) -> list[Any]:
    flag = lambda v: "" if v is None else int(v)  # noqa: E731
    row = [rec["file"], rec["model"], rec["label"] or "", "" if rec["label_index"] is None else rec["label_index"],
           flag(rec["correct"]), flag(rec["correct_top5"])]
    for p in rec["predictions"][:top_k]:
        row += [p["index"], p["label"], f"{p['prob']:.6f}"]
    return row


class _Tally:
    """Running totals, so a run over a whole dataset keeps counts, not every image."""

    def __init__(self, models: Sequence[LoadedModel], keep_images: bool):
        self.per_model = [ModelSummary(lm.spec.name, lm.spec.depth) for lm in models]
        self.names = [lm.spec.name for lm in models]
        # "Deeper" follows depth, whatever order the models were picked in.
        self.by_depth = sorted(range(len(models)), key=lambda m: models[m].spec.depth)
        self.same = np.zeros((len(models), len(models)), dtype=np.int64)
        self.heap: list[tuple[tuple, int, Mattered]] = []
        self.images: list[ImageResult] = []
        self.keep = keep_images
        self.n = self.n_labelled = 0

    def add(self, img: ImageResult) -> None:
        self.n += 1
        self.n_labelled += img.label is not None
        top1 = img.top[:, 0]
        self.same += top1[:, None] == top1[None, :]
        for m, s in enumerate(self.per_model):
            s.images += 1
            s.confidence_sum += float(img.probs[m, 0])
            if img.label is not None:
                s.labelled += 1
                s.top1_correct += bool(img.correct(m, 1))
                s.top5_correct += bool(img.correct(m, 5))
        scored = self.depth_mattered(img)
        if scored is not None:
            entry = (scored[0], -img.index, Mattered(img, scored[1]))
            (heapq.heappush if len(self.heap) < MAX_MATTERED else heapq.heappushpop)(self.heap, entry)
        if self.keep:
            self.images.append(img)

    def depth_mattered(self, img: ImageResult) -> tuple[tuple, str] | None:
        """(score, reason) when depth made a difference on ``img``; higher scores first.

        Labelled: the right/wrong pattern along depth differs; "only the deeper ones are
        right" ranks first. Otherwise: how many different top-1 classes the depths give.
        """
        top1 = [img.top1(m) for m in self.by_depth]
        distinct = len(set(top1))
        majority = max(top1.count(c) for c in top1) / len(top1)
        spread = (distinct, 1 - majority)
        if img.label is not None:
            right = [bool(img.correct(m)) for m in self.by_depth]
            if any(right) and not all(right):
                first, first_wrong = right.index(True), right.index(False)
                if all(right[first:]):  # wrong up to some depth, right from there on
                    return (2, *spread), f"only {self.names[self.by_depth[first]]} and deeper are right"
                if not any(right[first_wrong:]):  # right, then wrong from some depth on
                    return (1, *spread), f"only {self.names[self.by_depth[first_wrong - 1]]} and shallower are right"
                return (1, *spread), "right: " + ", ".join(self.names[m] for m, r in zip(self.by_depth, right) if r)
        if distinct > 1:
            return (0, *spread), f"{distinct} different top-1 classes across {len(top1)} models"
        return None

    def result(self, labels: tuple[str, ...], top_k: int, skipped: list[Skipped], notes: list[str],
               device: str, precision: str, batch_size: int, seconds: float, partial: bool = False) -> BatchResult:
        agreement = self.same / self.n if self.n else np.eye(len(self.names))
        mattered = [m for _, _, m in sorted(self.heap, reverse=True)]
        # A partial result shares nothing mutable with the tally that goes on counting.
        copy = (lambda xs: list(xs)) if partial else (lambda xs: xs)
        per_model = [dataclasses.replace(m) for m in self.per_model] if partial else self.per_model
        return BatchResult(self.names, labels, top_k, per_model, agreement.copy(), mattered, copy(self.images),
                           skipped, notes, self.n, self.n_labelled, device, precision, batch_size, seconds, partial)


# --- the work -----------------------------------------------------------------------------

def default_batch_size(device: torch.device) -> int:
    """Large enough to fill the device, small enough to keep memory modest."""
    return {"cuda": 64, "mps": 32}.get(device.type, 16)


@torch.inference_mode()
def classify_batch(lm: LoadedModel, x: torch.Tensor, k: int,
                   targets: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Top-``k`` (indices, probabilities) of a normalised CPU batch (N, 3, H, W), and the
    probability of each ``targets`` class (for "where depth mattered")."""
    _, logits = lm.forward(lm.to_input(x))
    probs = torch.softmax(logits, dim=1)
    top = torch.topk(probs, k, dim=1)
    target_p = None
    if targets is not None:
        target_p = probs.gather(1, targets.to(probs.device).clamp(min=0)[:, None])[:, 0].cpu().numpy()
    return top.indices.cpu().numpy(), top.values.cpu().numpy(), target_p


@dataclass
class _Decoded:
    index: int
    item: Item
    tensors: dict[Preprocessing, torch.Tensor] | None = None  # (3, H, W) per preprocessing
    thumbnail: Image.Image | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _decode(reader: Reader, index: int, item: Item, pres: Sequence[Preprocessing], thumb: int) -> _Decoded:
    """Decode once, preprocess once per distinct preprocessing (runs in a pool thread)."""
    try:
        loaded = load_image(reader.read(item), name=item.name)
    except ImageError as e:
        return _Decoded(index, item, error=_reason(str(e), item.name))
    tensors, thumbnail = {}, None
    for pre in pres:
        crop = model_crop(loaded.image, pre)
        tensors[pre] = to_tensor(crop, pre)[0]
        if thumb and thumbnail is None:  # what the first model saw, small
            thumbnail = crop.resize((thumb, thumb), Image.Resampling.BILINEAR)
    return _Decoded(index, item, tensors, thumbnail, loaded.notes)


def _reason(message: str, name: str) -> str:
    """"x.png is not an image ..." -> "not an image ...": the file is named beside it."""
    if message.startswith(name + " "):
        message = message[len(name) + 1:].removeprefix("is ")
    return message


def _decoded_chunks(pool: ThreadPoolExecutor, reader: Reader, items: Sequence[Item], pres: Sequence[Preprocessing],
                    thumb: int, batch_size: int, ahead: int = 2) -> Iterator[list[_Decoded]]:
    """Chunks of ``batch_size`` decoded items, in order; up to ``ahead`` more chunks are
    decoding in the pool meanwhile, so decoding overlaps the forwards and memory is bounded."""
    pending: deque[Future[_Decoded]] = deque()
    todo = iter(enumerate(items))

    def fill() -> None:
        while len(pending) < batch_size * (ahead + 1):
            nxt = next(todo, None)
            if nxt is None:
                return
            pending.append(pool.submit(_decode, reader, nxt[0], nxt[1], pres, thumb))

    fill()
    while pending:
        chunk = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
        fill()
        yield chunk


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA …"
    s = int(round(seconds))
    return f"ETA {s} s" if s < 90 else f"ETA {s // 60} min {s % 60:02d} s"


@contextlib.contextmanager
def _counted(say: Callable[[], str]) -> Iterator[None]:
    """A stop (``zoo.cancel.Cancelled``) inside the block says how far the batch got."""
    try:
        yield
    except Cancelled as e:
        raise Cancelled(f"{e} {say()}", e.reason) from None


def stream(inp: BatchInput, models: Sequence[LoadedModel], *, top_k: int = 5, batch_size: int | None = None,
           workers: int | None = None, thumbnails: int = 0, progress: ProgressFn | None = None,
           keep_images: bool = True, partial_every_s: float | None = None,
           ) -> Iterator[ImageResult | Skipped | Progress | BatchResult]:
    """Every model over every item: yields ``Skipped`` and ``ImageResult`` in input order as
    they are done (and ``Progress`` before each forward), then the ``BatchResult``.

    With ``partial_every_s``, also a ``BatchResult`` with ``partial=True`` of the images done
    so far, at most that often: a front end shows it, and keeps it when the run is stopped.
    The request's cancellation token (``zoo.cancel``) is checked before every forward;
    closing the generator stops the work too."""
    if not models:
        raise ZooError("Pick at least one model.")
    labels = models[0].labels
    if any(lm.labels != labels for lm in models):
        raise ZooError(f"Models {', '.join(lm.spec.name for lm in models)} do not share one label set; run "
                       "models that predict the same classes together.")
    targets, label_notes = resolve_labels(inp.items, labels)
    keep = max(1, min(max(int(top_k), 5), len(labels)))  # top-5 accuracy needs five, whatever is shown
    top_k = max(1, min(int(top_k), keep))
    bs = max(1, int(batch_size or default_batch_size(models[0].device)))
    pres = list(dict.fromkeys(lm.spec.preprocessing for lm in models))
    tally = _Tally(models, keep_images)
    skipped = list(inp.skipped)
    yield from inp.skipped
    total = len(inp.items)
    # Progress counts work, weighting each model by its multiply-adds, so the ETA holds
    # while the cheap and the expensive depths take turns on each chunk.
    weights = [lm.spec.arch.paper_flops for lm in models]
    total_work, done_work = total * sum(weights) or 1.0, 0.0
    t_start = last_partial = time.perf_counter()
    done = 0
    pool = ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1), thread_name_prefix="zoo-decode")
    try:
        with Reader() as reader, _counted(lambda: f"{done} of {total} images were done."):
            for chunk in _decoded_chunks(pool, reader, inp.items, pres, thumbnails, bs):
                ok = [d for d in chunk if d.error is None]
                end = done + len(chunk)
                tgt = None
                if any(targets[d.index] is not None for d in ok):
                    tgt = torch.tensor([-1 if targets[d.index] is None else targets[d.index] for d in ok])
                outs = []
                stacked: dict[Preprocessing, torch.Tensor] = {}
                for m, lm in enumerate(models):
                    check()
                    if ok:
                        elapsed = time.perf_counter() - t_start
                        frac = done_work / total_work
                        eta = elapsed * (1 - frac) / frac if frac > 0 else None
                        step = Progress(frac, f"{lm.spec.name}: {end} of {total} images · {eta_text(eta)}")
                        if progress:
                            progress(step.fraction, step.message)
                        yield step
                        pre = lm.spec.preprocessing
                        if pre not in stacked:
                            stacked[pre] = torch.stack([d.tensors[pre] for d in ok])  # type: ignore[index]
                        t0 = time.perf_counter()
                        outs.append(classify_batch(lm, stacked[pre], keep, tgt))
                        tally.per_model[m].seconds += time.perf_counter() - t0
                    done_work += weights[m] * len(chunk)
                done = end
                for d in chunk:
                    if d.error is not None:
                        skipped.append(Skipped(d.item.name, d.error))
                        yield skipped[-1]
                        continue
                    j = ok.index(d)
                    img = ImageResult(
                        d.index, d.item.name, targets[d.index],
                        np.stack([o[0][j] for o in outs]).astype(np.int32),
                        np.stack([o[1][j] for o in outs]).astype(np.float32),
                        np.array([o[2][j] for o in outs], dtype=np.float32) if tgt is not None
                        and targets[d.index] is not None else None,
                        d.item.source, d.thumbnail, d.notes)
                    tally.add(img)
                    yield img
                if partial_every_s is not None and tally.n and time.perf_counter() - last_partial >= partial_every_s:
                    last_partial = time.perf_counter()
                    yield tally.result(labels, top_k, list(skipped), inp.notes + label_notes, str(models[0].device),
                                       models[0].precision_name, bs, last_partial - t_start, partial=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if tally.n == 0:
        why = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3])
        raise NoImagesError(f"None of the {total} file(s) could be classified ({why}"
                            f"{'; …' if len(skipped) > 3 else ''}).")
    if progress:
        progress(1.0, f"done: {tally.n} images")
    lm0 = models[0]
    yield tally.result(labels, top_k, skipped, inp.notes + label_notes, str(lm0.device), lm0.precision_name, bs,
                       time.perf_counter() - t_start)


def run(inp: BatchInput, models: Sequence[LoadedModel], **kwargs: Any) -> BatchResult:
    """``stream`` to the end; the ``BatchResult``."""
    result = None
    for result in stream(inp, models, **kwargs):
        pass
    assert isinstance(result, BatchResult)
    return result

