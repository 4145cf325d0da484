"""What the Robustness tab shows, from the feature's results (``zoo.features.robustness``): tables,
sentences, CSV and chart arguments, as plain values; the tab wraps them in components.

Tested without building the page (tests/test_views_robustness.py).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from zoo.explain import METHODS
from zoo.features import robustness as feature
from zoo.render import Scale, overlay_crop, save_jpeg, save_png
from zoo.robustness import CORRUPTIONS
from zoo.robustness_folder import FolderSummary, SampleResult
from zoo.robustness_sweep import Live, Sweep, SweepProgress, Verdict

from .. import format as fmt
from .. import robustness_plots as rplots
from ..charts import depth_label

LABELS = {c.name: c.label for c in CORRUPTIONS}
LIVE_HEADERS = ["model", "top-1", "top-2", "top-3", "p(class)"]
FOLDER_COST = ("Cost: per image and depth, one forward for the clean crop and one per corruption and severity. "
               "Pick the images to see the total.")

INTRO = """\
**How to read it.** Each corruption is one of ImageNet-C's (Hendrycks and Dietterich, [*Benchmarking Neural Network \
Robustness to Common Corruptions and Perturbations*](https://arxiv.org/abs/1903.12261), ICLR 2019; the last four of \
the list are the paper's extra ones), applied as the benchmark does: to the 224×224 crop the model sees, at \
severity 1 (mild) to 5 (harsh); 0 is the clean crop. Random corruptions (noise, snow, glass blur...) are seeded from \
the seed below, so a run reproduces exactly. **Live** shows one corruption: the crop, every depth's answer and its \
map on that crop (does the map drift before the answer flips?). **Sweep** runs all 19 × 5 on every depth: the \
heatmaps colour the probability of one class (blank: the one most depths pick on the clean crop) per corruption and \
severity, the line chart follows it for the corruption chosen above (a cross: that depth's top-1 changed), and the \
table gives each depth's *breaking point*, the lowest severity at which its top-1 is no longer its clean top-1. \
**What the paper found**: deeper ResNets degrade more gracefully: the mean corruption error (mCE, errors relative \
to AlexNet's) falls from ResNet-18 to ResNet-152, although much of the gain follows clean accuracy.
"""


def top_text(p: Any) -> str:
    return f"{p.label} ({p.prob:.2f})"


def live_rows(live: Live) -> list[list[str]]:
    """Per depth: its top-3 on the corrupted crop, and the shown class's probability."""
    rows = []
    for r in live.results:
        run = getattr(r, "run", r)  # a Result (with a map) or a Classification
        preds = run.predictions
        rows.append([run.model, *[top_text(p) for p in preds[:3]], *[""] * (3 - len(preds[:3])),
                     f"{float(run.probs[live.target]):.3f}"])
    return rows


def breaking_rows(sweep: Sweep) -> list[list[str]]:
    """Corruption x depth: the lowest severity at which the depth's top-1 changed; "kept" if it never did."""
    points = sweep.breaking_points()
    rows = []
    for c, name in enumerate(sweep.corruptions):
        row = [LABELS.get(name, name)]
        for m in range(len(sweep.models)):
            p = int(points[m, c])
            scored = bool(np.all(sweep.top1[m, c] >= 0))
            row.append(str(p) if p > 0 else "kept" if scored else "…")
        rows.append(row)
    return rows


def verdict_text(sweep: Sweep, v: Verdict) -> str:
    """``Verdict.sentence`` as the page words it: depths as "ResNet-152"; one depth by its name."""
    text = dataclasses.replace(v, best=depth_label(v.best), worst=depth_label(v.worst)).sentence()
    if len(sweep.models) == 1:
        text = text.replace(": every depth broke at the same severity", "").replace(
            "Every depth", depth_label(sweep.models[0]))
    return text


def verdict_markdown(sweep: Sweep, corruption: str | None) -> str:
    """The sweep in a sentence or two: the corruption where depth mattered most, and the chosen one."""
    lines = []
    for name in dict.fromkeys([None, corruption if corruption in sweep.corruptions else None]):
        v = sweep.verdict(name)
        if v is not None:
            lines.append(f"**{verdict_text(sweep, v)}**" if name is None else verdict_text(sweep, v))
    return "\n\n".join(dict.fromkeys(lines))


def sweep_markdown(sweep: Sweep, corruption: str | None) -> str:
    head = (f"**Partial results: {sweep.done} of {sweep.total} corrupted crops scored by every depth.**\n\n"
            if sweep.partial else "")
    chosen = "the class you chose" if sweep.chosen == "given" else "the class most depths pick on the clean crop"
    clean = ", ".join(f"{m} {sweep.labels[int(t)]} ({float(p):.2f})"
                      for m, t, p in zip(sweep.models, sweep.clean_top1, sweep.clean_top1_p))
    text = (f"{head}{verdict_markdown(sweep, corruption)}\n\nShown: p({sweep.target_label}), {chosen}. Clean top-1: "
            f"{clean}. {len(sweep.corruptions)} corruptions × severities "
            f"{', '.join(map(str, sweep.severities))}, seed {sweep.seed}, on {sweep.device} ({sweep.precision})"
            + ("" if sweep.partial else f", {fmt.duration(sweep.seconds)}") + ".")
    return text


def sweep_csv(sweep: Sweep) -> str:
    """Every scored cell of the sweep (and each depth's clean crop), one row each."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "corruption", "severity", "seed", "top1_index", "top1_label", "top1_prob",
                "target_index", "target_label", "target_prob", "top1_changed"])
    for m, model in enumerate(sweep.models):
        clean = int(sweep.clean_top1[m])
        w.writerow([model, "clean", 0, sweep.seed, clean, sweep.labels[clean], f"{float(sweep.clean_top1_p[m]):.6f}",
                    sweep.target, sweep.target_label, f"{float(sweep.clean_target_p[m]):.6f}", "no"])
        for c, name in enumerate(sweep.corruptions):
            for s, sev in enumerate(sweep.severities):
                t = int(sweep.top1[m, c, s])
                if t < 0:
                    continue
                w.writerow([model, name, sev, sweep.seed, t, sweep.labels[t], f"{float(sweep.top1_p[m, c, s]):.6f}",
                            sweep.target, sweep.target_label, f"{float(sweep.target_p[m, c, s]):.6f}",
                            "yes" if t != clean else "no"])
    return buf.getvalue()


def _pct(v: float) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.1f} %"


def _num(v: Any) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.3f}"


CE_LABEL = "Corruption error (CE) per corruption, ÷ the shallowest depth"


def summary_headers(s: FolderSummary) -> list[str]:
    return ["model", "clean top-1", "mean top-1 corrupted", f"mCE (÷ {s.reference})", "mCE (÷ AlexNet)"]


def summary_rows(s: FolderSummary) -> list[list[str]]:
    rows = []
    for m, model in enumerate(s.models):
        with np.errstate(all="ignore"):
            mean = float(np.nanmean(s.accuracy[m])) if s.accuracy[m].size else float("nan")
        alex = s.mce_alexnet[m] if s.mce_alexnet is not None else None
        rows.append([model, _pct(s.clean_accuracy[m]), _pct(mean), _num(s.mce[m]), _num(alex)])
    return rows


CHANGED_HEADERS = ["model", "top-1 changed (mean)"]
CHANGED_LABEL = "Top-1 changed from the clean crop's, per corruption (mean over the severities)"


def changed_summary(s: FolderSummary) -> list[list[str]]:
    """Without labels, per depth: how often a corruption changed the clean top-1 (what the CLI prints)."""
    return [[model, _pct(float(np.nanmean(s.changed[m]))) if s.changed is not None and s.changed[m].size else "–"]
            for m, model in enumerate(s.models)]


def changed_rows(s: FolderSummary) -> list[list[str]]:
    """Without labels, corruption x depth: the share of images whose top-1 changed, mean over the severities."""
    return [[LABELS.get(name, name), *[_pct(float(s.changed[m, c].mean())) if s.changed is not None else "–"
                                       for m in range(len(s.models))]] for c, name in enumerate(s.corruptions)]


def ce_rows(s: FolderSummary) -> list[list[str]]:
    """Corruption x depth: CE relative to the shallowest depth of the run (1.000 for it)."""
    return [[LABELS.get(name, name), *[_num(s.ce[m, c]) for m in range(len(s.models))]]
            for c, name in enumerate(s.corruptions)]


def folder_markdown(s: FolderSummary) -> str:
    head = f"**Partial results: the {s.images} images done so far.**\n\n" if s.partial else ""
    text = (f"{head}{s.images} image{'' if s.images == 1 else 's'} ({s.labelled} labelled) × {len(s.corruptions)} "
            f"corruption{'' if len(s.corruptions) == 1 else 's'} × severities {', '.join(map(str, s.severities))} × "
            f"{len(s.models)} depth{'' if len(s.models) == 1 else 's'}, seed {s.seed}, on {s.device} ({s.precision})"
            + ("" if s.partial else f", {fmt.duration(s.seconds)}") + ".")
    if s.labelled:
        text += (f" CE = a depth's errors summed over the severities ÷ {s.reference}'s (the shallowest depth of the "
                 "run); mCE = its mean over the corruptions: below 1 is more robust than the reference.")
        if s.mce_alexnet is None and not any("AlexNet" in n for n in s.notes):
            text += (" mCE ÷ AlexNet (the paper's figure) needs ImageNet labels, all five severities and at least one "
                     "of the 15 benchmark corruptions.")
    else:
        text += (" **No labels**, so what is shown is what needs none: how often each corruption changes a depth's "
                 "top-1 from the one it gives the clean crop (a stable depth changes less; it does not say which is "
                 "right). Labels would add accuracy, CE and mCE (folders in the zip named after ImageNet classes, or "
                 "a CSV of file,label rows).")
    for note in s.notes:
        text += f"\n\n{note}"
    if s.skipped:
        text += "\n\nSkipped: " + "; ".join(f"{getattr(k, 'name', k)} ({getattr(k, 'reason', '')})"
                                            for k in s.skipped[:20])
    return text


def live_info(live: Live) -> str:
    """The sentence above the live view: what the depths saw, and which maps."""
    what = ("the clean crop" if live.severity == 0
            else f"{LABELS.get(live.corruption, live.corruption)} at severity {live.severity} (seed {live.seed})")
    return (f"Every depth on {what}; maps of {live.target_label} "
            + (f"by {METHODS[live.method].label}, on one colour scale." if live.method else "not asked for."))


def live_caption(live: Live, r: Any) -> str:
    """A map's caption in the gallery: the depth, its top-1, the shown class's probability."""
    return (f"{r.run.model} · top-1 {top_text(r.run.predictions[0])} · "
            f"p({live.target_label}) = {float(r.run.probs[live.target]):.2f}")


def running_text(event: SweepProgress, text: str) -> str:
    """The sweep's status while it runs, above the last partial result's text."""
    # The message says what runs; the corruption is named only when it does not (a batch can
    # mix corruptions: "the clean crop (… Impulse noise …)" misnamed one).
    running = LABELS.get(event.corruption or "")
    what = event.message if not running or running in event.message else f"{running}: {event.message}"
    return f"*Running: {what}*\n\n{text}"


def sweep_charts(sweep: Sweep, corruption: str | None) -> tuple[Any, Any]:
    """The heatmaps of p(target), and the chosen corruption's curves (the first one if it did not run)."""
    heat = rplots.probability_heatmaps(sweep.models, sweep.corruptions, sweep.severities, sweep.clean_target_p,
                                       sweep.target_p, sweep.top1, sweep.labels, sweep.target_label, LABELS)
    c = sweep.corruptions.index(corruption) if corruption in sweep.corruptions else 0
    lines = rplots.severity_lines(sweep.models, sweep.severities, LABELS.get(sweep.corruptions[c]),
                                  sweep.clean_target_p, sweep.target_p[:, c], sweep.clean_top1, sweep.top1[:, c],
                                  sweep.labels, sweep.target_label)
    return heat, lines


def folder_tables(s: FolderSummary) -> tuple[tuple[list, list[str]], tuple[list, list[str], str], Any]:
    """The per-depth table, the per-corruption table (rows, headers, label) and the chart of a folder run.

    Without labels only dashes would show: how often the top-1 changed instead, as the CLI prints.
    """
    if not s.labelled:
        chart = None if s.changed is None else rplots.changed_lines(s.models, s.severities, s.changed, s.corruptions)
        return ((changed_summary(s), CHANGED_HEADERS), (changed_rows(s), ["corruption", *s.models], CHANGED_LABEL),
                chart)
    return ((summary_rows(s), summary_headers(s)), (ce_rows(s), ["corruption", *s.models], CE_LABEL),
            rplots.accuracy_lines(s.models, s.severities, s.clean_accuracy, s.accuracy, s.corruptions))


# --- files a result leaves (under a request's own output folder) -------------------------------------

def live_pictures(live: Live, folder: Path) -> tuple[str, list[tuple[str, str]]]:
    """The corrupted crop as PNG, and each depth's map on it (one colour scale) with its caption."""
    crop = str(save_png(np.asarray(live.crop.convert("RGB")), folder / f"{live.corruption}-{live.severity}.png"))
    gallery = []
    maps = [r for r in live.results if hasattr(r, "explanation")]
    if maps:
        scale = Scale.of(*[r.explanation.raw for r in maps])  # one scale: magnitudes compare across depths
        signed = METHODS[maps[0].method].signed
        for r in maps:
            path = save_jpeg(overlay_crop(r.run, r.explanation.raw, "jet", 0.5, scale, size=320, signed=signed),
                             folder / f"{r.run.model}-{live.corruption}-{live.severity}.jpg")
            gallery.append((str(path), live_caption(live, r)))
    return crop, gallery


def sweep_files(sweep: Sweep, folder: Path) -> list[str]:
    """The sweep as CSV (every scored cell) and JSON (its ``to_json``)."""
    path, js = folder / "robustness-sweep.csv", folder / "robustness-sweep.json"
    path.write_text(sweep_csv(sweep), encoding="utf-8")
    js.write_text(json.dumps(sweep.to_json()), encoding="utf-8")
    return [str(path), str(js)]


def folder_files(summary: FolderSummary, samples: list[SampleResult], labels: tuple[str, ...],
                 folder: Path) -> list[str]:
    """Every prediction as the CLI's --json prints them (the feature's one writer), and the summary's JSON."""
    lines, js = folder / "robustness-predictions.jsonl", folder / "robustness-summary.json"
    lines.write_text(feature.json_lines(samples, summary, labels), encoding="utf-8")
    js.write_text(json.dumps(summary.to_json()), encoding="utf-8")
    return [str(lines), str(js)]
