"""Compare depths: a ``zoo.features.compare.Comparison`` as the tab shows it (tables, text, maps,
charts), as plain functions: no gradio here, so each is tested without building the page."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from zoo.explain import METHODS
from zoo.features.compare import Comparison
from zoo.render import Scale, overlay_crop, save_jpeg

from .. import charts
from ..format import road_text


def compare_table(cmp: Comparison) -> list[list[Any]]:
    """Rows: rank 1..k; columns: one per model, 'label (p%)'."""
    k = max(len(r.run.predictions) for r in cmp.results)
    rows = []
    for rank in range(k):
        row: list[Any] = [rank + 1]
        for r in cmp.results:
            p = r.run.predictions[rank] if rank < len(r.run.predictions) else None
            row.append(f"{p.label} ({p.prob * 100:.1f}%)" if p else "")
        rows.append(row)
    return rows


def agreement_markdown(cmp: Comparison) -> str:
    """How far the depths agree, which class the maps show and why, and each model's time."""
    a = cmp.agreement
    labels = cmp.results[0].run.labels
    n, total, top1 = a["top1_majority_count"], a["models"], a["top1"]
    firsts = Counter(top1.values())
    if a["top1_unanimous"]:
        head = f"All {total} models agree: **{labels[a['top1_majority']]}**."
    elif n == 1:
        head = (f"The {total} models put {len(firsts)} different classes first: "
                + ", ".join(f"{m}: {labels[c]}" for m, c in top1.items()) + ".")
    else:
        head = (f"{n} of {total} models put **{labels[a['top1_majority']]}** first; "
                + ", ".join(f"{m}: {labels[c]}" for m, c in top1.items() if c != a["top1_majority"]) + ".")
    common = a["top5_common"]
    tail = (f" {len(common)} class(es) appear in every top-5: " + ", ".join(labels[c] for c in common) + "."
            if common else " No class is in every model's top-5.")
    shown = f" Maps show **{cmp.target_label}** (class {cmp.target}) for every model"
    if cmp.chosen == "given":
        target = shown + ": the class you picked."
    elif a["top1_unanimous"]:
        target = shown + ": every model's first choice."
    elif sum(1 for v in firsts.values() if v == n) == 1:
        target = shown + f": the class most models put first ({n} of {total}). Pick a target class to see another."
    else:  # a tie on first places: zoo.features.compare.consensus breaks it by probability
        target = (shown + f": no class leads on first places ({n} each), so it is the tied class with the highest "
                  "probability summed over the models. Pick a target class to see another.")
    flat = [r for r in cmp.results if r.explanation.notes]
    if flat:  # all-zero or constant maps look like a real answer; say which and why
        target += (f" **{', '.join(r.run.model for r in flat)}: flat map.** "
                   + flat[0].explanation.notes[0])
    times = " Time: " + ", ".join(f"{r.run.model} {r.seconds * 1000:.0f} ms" for r in cmp.results) + "."
    paths = Counter(r.run.trunk for r in cmp.results)  # the classifying forwards: compiled or eager trunk
    times += (f" Trunks: all {next(iter(paths))}." if len(paths) == 1 else
              " Trunks: " + ", ".join(f"{r.run.model} {r.run.trunk}" for r in cmp.results) + ".")
    return head + tail + target + times


def model_title(name: str) -> str:
    """``resnet152`` -> ``ResNet-152``; any other name as it is."""
    m = re.fullmatch(r"resnet(\d+)", name)
    return f"ResNet-{m.group(1)}" if m else name


def map_agreement_markdown(cmp: Comparison) -> str:
    """One sentence on whether the first and last depths look at the same place, then the extremes."""
    m = cmp.map_agreement
    n = len(m.models)
    if n < 2:
        return ""
    label = cmp.target_label
    a, b = m.models[0], m.models[-1]
    rho, iou = m.pair(a, b)
    overlap = "" if iou != iou else f" (their top-20 % regions overlap with IoU {iou:.2f})"
    if rho != rho:  # NaN: a flat map has no order to compare
        head = f"{model_title(a)} and {model_title(b)} cannot be compared: one of their maps is flat."
    elif rho >= 0.7:
        head = f"{model_title(a)} and {model_title(b)} agree on where the {label} is: ρ = {rho:.2f}{overlap}."
    elif rho >= 0.3:
        head = (f"{model_title(a)} and {model_title(b)} partly agree on where the {label} is: ρ = {rho:.2f}"
                f"{overlap}.")
    else:
        head = (f"{model_title(a)} and {model_title(b)} look at different places for {label}: ρ = {rho:.2f}"
                f"{overlap}.")
    pairs = [(m.spearman[i, j], m.models[i], m.models[j]) for i in range(n) for j in range(i + 1, n)
             if m.spearman[i, j] == m.spearman[i, j]]
    extremes = ""
    if n > 2 and pairs:
        hi, lo = max(pairs), min(pairs)
        extremes = (f" Most alike: {model_title(hi[1])} and {model_title(hi[2])} (ρ = {hi[0]:.2f}); least alike: "
                    f"{model_title(lo[1])} and {model_title(lo[2])} (ρ = {lo[0]:.2f}).")
    return (f"**{head}**{extremes} ρ is Spearman's rank correlation of two maps as drawn on the crop (1: they rank "
            "the pixels alike, 0: unrelated); IoU is the overlap of their top-20 % regions (1: the same region).")


def compare_column_widths(models: int) -> list[int]:
    """The top-5 table: rank, then one column per depth; five depths fit the Compare tab at 1400 px."""
    return [56] + [146] * models  # 786 px: the box is 798 px wide at 1400 px


FAITHFULNESS_COLUMN_WIDTHS = [110, 190, 200, 130, 110, 110]


def faithfulness_table(cmp: Comparison) -> list[list[Any]]:
    """One row per depth: its map's two areas for the shared target."""
    return [[r.run.model, f"{r.faithfulness.deletion_auc:.3f}", f"{r.faithfulness.insertion_auc:.3f}",
             road_text(r.faithfulness), f"{r.explanation.target.prob:.3f}",
             f"{(r.faithfulness.seconds + (r.faithfulness.road.seconds if r.faithfulness.road else 0)) * 1000:.0f}"]
            for r in cmp.results if r.faithfulness is not None]


FAITHFULNESS_HEADERS = ["model", "deletion AUC (lower is better)", "insertion AUC (higher is better)",
                        "ROAD (higher is better)", "p(target)", "scoring ms"]


def top5_headers(cmp: Comparison) -> list[str]:
    return ["rank"] + [r.run.model for r in cmp.results]


def gallery(cmp: Comparison, cmap: str, alpha: float, shared: bool, folder: Path) -> list[tuple[str, str]]:
    """Each depth's map on its crop, saved as a JPEG in ``folder``, with a short caption (the top-1s
    are in the table and the times in the text); ``shared``: one colour scale for every depth."""
    scale = Scale.of(*[r.explanation.raw for r in cmp.results]) if shared else None
    signed = METHODS[cmp.results[0].method].signed  # diverging colours centred on 0 (zoo.render.map_style)
    return [(str(save_jpeg(overlay_crop(r.run, r.explanation.raw, cmap, alpha, scale, size=320, signed=signed),
                           folder / f"{r.run.model}-{cmp.target}.jpg")),
             f"{r.run.model} · p({cmp.target_label}) = {r.explanation.target.prob:.2f}"
             + (" · flat map (see the text)" if r.explanation.notes else ""))
            for r in cmp.results]


def scores(cmp: Comparison) -> tuple[list[list[Any]], Any]:
    """The faithfulness table's rows and every depth's curves on one plot; no rows: not scored."""
    rows = faithfulness_table(cmp)
    if not rows:
        return [], None
    curves = [(r.run.model, r.faithfulness) for r in cmp.results]
    return rows, charts.faithfulness_curves(curves, cmp.target_label, name=f"compare-curves-{cmp.target}")


def map_agreement(cmp: Comparison) -> tuple[str, Any]:
    """Do the depths look at the same place: a sentence and the depth x depth heatmap."""
    m = cmp.map_agreement.to_json()
    return map_agreement_markdown(cmp), charts.map_agreement_heatmap(m["models"], m["spearman"], m["iou_top20"])


def cached_table(cmp: Comparison) -> dict[str, Any]:
    """The top-5 table as a plain value (gradio's example cache stores values, not component updates)."""
    return {"headers": top5_headers(cmp), "data": compare_table(cmp)}


def transfer(cmp: Comparison) -> tuple[str, Any]:
    """The evidence-transfer reading and heatmap (``ui.views.transfer``); ("", None) when not asked for."""
    from .transfer import transfer_heatmap, transfer_markdown

    if cmp.transfer is None:
        return "", None
    t = cmp.transfer.to_json()
    return transfer_markdown(t), transfer_heatmap(t)
