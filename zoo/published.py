"""Published ImageNet-variant figures of the built-in weights: registry data, each with its source.

Shown beside the user's own figures (Model zoo table, "Which depth should I ship?"), always
labelled as published: they are ImageNet figures, never the user's data. A custom zoo entry
may carry the same fields in a ``[model.published]`` table (``from_table``).

Top-1 (%) at 224 px of the rows ``resnetNN.tv_in1k`` of timm's results CSVs, copied from
huggingface/pytorch-image-models at commit aa4b5850c1543fa488abf260f18390eda46cf85d
(2026-08-08), ``results/<file>.csv``. ImageNet-C mCE (%, lower is better, AlexNet = 100):
Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations", ICLR 2019, for ResNet-50 only; no source seen gives it for the other depths.
timm's ImageNet-A file has no ``resnet50.tv_in1k`` row at that commit: left empty, not guessed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

TIMM_COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
TIMM_URL = f"https://github.com/huggingface/pytorch-image-models/blob/{TIMM_COMMIT}/results/"
FILES = {"imagenet_v2": "results-imagenetv2-matched-frequency.csv", "imagenet_real": "results-imagenet-real.csv",
         "imagenet_r": "results-imagenet-r.csv", "imagenet_sketch": "results-sketch.csv",
         "imagenet_a": "results-imagenet-a.csv"}
MCE_SOURCE = ("Hendrycks & Dietterich, Benchmarking Neural Network Robustness to Common Corruptions and "
              "Perturbations, ICLR 2019 (https://arxiv.org/abs/1903.12261): ResNet-50 mCE 76.7")
FIELDS = (*FILES, "imagenet_c_mce")
LABELS = {"imagenet_v2": "ImageNet-V2 (matched frequency) top-1 %", "imagenet_real": "ImageNet-ReaL top-1 %",
          "imagenet_r": "ImageNet-R top-1 %", "imagenet_sketch": "ImageNet-Sketch top-1 %",
          "imagenet_a": "ImageNet-A top-1 %", "imagenet_c_mce": "ImageNet-C mCE % (lower is better)"}


@dataclass(frozen=True)
class Published:
    """Published figures of one set of weights (None: no source gives it), and where they come from."""

    imagenet_v2: float | None = None
    imagenet_real: float | None = None
    imagenet_r: float | None = None
    imagenet_sketch: float | None = None
    imagenet_a: float | None = None
    imagenet_c_mce: float | None = None
    source: str = ""
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _timm(row: str, *, mce: float | None = None) -> str:
    files = ", ".join(f"{TIMM_URL}{f}" for f in FILES.values())
    return f"timm results CSVs, rows {row} at 224 px: {files}" + (f"; ImageNet-C mCE: {MCE_SOURCE}" if mce else "")


def _entry(arch: str, v2: float, real: float, r: float, sketch: float, a: float | None,
           mce: float | None = None, notes: str = "") -> Published:
    return Published(v2, real, r, sketch, a, mce, _timm(f"{arch}.tv_in1k", mce=mce), notes)


# Copied from the CSVs named above (columns top1), 2026-12-06.
BUILTIN: dict[str, Published] = {
    "resnet18": _entry("resnet18", 57.350, 77.291, 33.023, 20.238, 1.120),
    "resnet34": _entry("resnet34", 61.210, 80.396, 36.140, 23.494, 1.840),
    "resnet50": _entry("resnet50", 63.190, 82.969, 36.157, 24.064, None, 76.7,
                       notes="ImageNet-A: timm's results-imagenet-a.csv has no resnet50.tv_in1k row at this commit"),
    "resnet101": _entry("resnet101", 65.940, 83.863, 39.297, 26.974, 4.560),
    "resnet152": _entry("resnet152", 67.040, 84.815, 41.340, 28.550, 6.053),
}


def from_table(value: Any, fail: Callable[[str], Exception]) -> Published | None:
    """A zoo file's ``[model.published]`` table: any of ``FIELDS`` (numbers, percent) and a ``source``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("field 'published' must be a table, written [model.published].")
    unknown = set(value) - {*FIELDS, "source", "notes"}
    if unknown:
        raise fail(f"unknown field(s) {sorted(unknown)} in 'published'. Allowed: {', '.join((*FIELDS, 'source'))}.")
    out: dict[str, Any] = {}
    for key in FIELDS:
        v = value.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or not 0 <= v <= 100 + 900 * (key == "imagenet_c_mce")):
            raise fail(f"published '{key}' must be a percentage, got {v!r}.")
        out[key] = None if v is None else float(v)
    for key in ("source", "notes"):
        if not isinstance(value.get(key, ""), str):
            raise fail(f"published '{key}' must be a string.")
    if not value.get("source"):
        raise fail("published figures need a 'source': where they were read (a paper, a results file).")
    return Published(**out, source=value["source"], notes=value.get("notes", ""))
