"""What a batch run reads: files, folders, globs or one zip, and a labels CSV.

``gather`` turns what a user names into a list of ``Item``s (nothing decoded yet) and
checks zips before reading a byte of their members.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
import stat
import struct
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..errors import ImageError, ZooError
from ..files import open_regular
from ..images import decode_seconds as image_decode_seconds
from ..images import header


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


    def head(self, item: Item) -> tuple[str, int] | None:
        """(format, pixels) of ``item`` from its header; a zip member is inflated only as far
        as its header (Pillow's lazy open); None for an unreadable item or a non-image."""
        src = item.source
        if isinstance(src, Path):
            try:
                with open_regular(src) as f:
                    return header(f)
            except OSError:
                return None
        with self._lock:
            try:
                zf = self._zips.get(src.archive) or self._zips.setdefault(src.archive, zipfile.ZipFile(src.archive))
                with zf.open(src.member) as f:
                    return header(f)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError,
                    KeyError, ValueError):
                return None


def decode_seconds(items: Sequence[Item]) -> float:
    """What decoding ``items`` will cost here, priced from their headers (``zoo.images.decode_seconds``)."""
    total = 0.0
    with Reader() as reader:
        for item in items:
            head = reader.head(item)
            if head is not None:
                total += image_decode_seconds(*head)
    return total


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
