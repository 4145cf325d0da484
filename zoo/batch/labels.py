"""Labels of a batch: a class name, any WordNet synonym or id, or an index -> class index.

The label text comes from the folder that holds an image (ImageFolder layout) or a
``file,label`` CSV (see ``inputs``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from ..inference import MAX_TARGET_CHARS
from ..models import imagenet_labels
from .inputs import Item


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
        if len(t) > MAX_TARGET_CHARS:  # int() of over 4,300 digits raises; no class name is this long
            return None, f"a label of {len(t)} characters is not a class (at most {MAX_TARGET_CHARS})"
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
