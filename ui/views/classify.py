"""What the Classify & explain tab shows, from ``zoo.features.classify``'s results: plain functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.explain import METHODS, ONE_PASS, STAGES
from zoo.features.classify import Result, Stages
from zoo.render import overlay_crop, save_jpeg

from ..format import faithfulness_markdown
from ..charts import csv_file, faithfulness_curves

STAGES_WHY = ("Earlier stages see small, less abstract features (edges and textures at layer1, 56×56 cells) and "
              "later ones whole parts and objects (layer4, 7×7 cells). Each map is that stage's own evidence for "
              "the class, weighted by the gradient reaching it, so a region can be evidence *for* the class at one "
              "stage and not (or against it) at another: maps can flip between stages without either being wrong.")


def label_dict(result: Result) -> dict[str, float]:
    """Top-k for ``gr.Label``; ImageNet repeats a few names, so repeats get their index."""
    out: dict[str, float] = {}
    for p in result.run.predictions:
        key = p.label if p.label not in out else f"{p.label} (class {p.index})"
        out[key] = p.prob
    return out


def result_markdown(result: Result, load_note: str = "") -> str:
    """The result's line: model, device, times, the class mapped, the map's size and cost, notes."""
    t = result.explanation.target
    m = METHODS[result.method]
    lines = [
        f"**{result.run.model}** on `{result.run.device}` ({result.run.precision}, {result.run.trunk} trunk) · "
        f"{result.seconds * 1000:.0f} ms "
        f"(classify {result.run.seconds * 1000:.0f} ms, {m.label} {result.explanation.seconds * 1000:.0f} ms"
        + (f", scoring {result.faithfulness.seconds * 1000:.0f} ms" if result.faithfulness else "")
        + (f", ROAD {result.faithfulness.road.seconds * 1000:.0f} ms"  # ROAD's share was missing from the parts
           if result.faithfulness and result.faithfulness.road else "") + ")",
        f"Map for **{t.label}** (class {t.index}, p = {t.prob:.3f}) · raw map {result.explanation.raw.shape[0]}"
        f"×{result.explanation.raw.shape[1]}"
        + (f" from {result.explanation.layer}" if result.explanation.layer else "") + f" · cost: {m.cost}",
    ]
    if m.signed:
        lines.append("Signed map: positive values support the class, negative values count against it. Drawn "
                     "in a diverging colormap centred on 0 (red: for, blue: against), whichever colormap is picked.")
    lines += [f"Note: {n}." for n in result.run.notes]
    lines += [f"**Note:** {n}" for n in result.explanation.notes]  # e.g. an all-zero map, and why
    if load_note:
        lines.append(load_note)
    return "\n\n".join(lines)


def curves(result: Result) -> Any:
    """The scored map's deletion and insertion curves (a Plotly chart); None when unscored."""
    if result.faithfulness is None:
        return None
    return faithfulness_curves([(result.method, result.faithfulness)], result.explanation.target.label,
                               name=f"{result.run.model}-{result.method}-{result.explanation.target.index}-curves")


def scores(result: Result) -> tuple[str, Any]:
    """The scores' text and chart; empty when the map was not scored."""
    if result.faithfulness is None:
        return "", None
    return faithfulness_markdown(result.faithfulness), curves(result)


def downloads(result: Result, png: str, npy: str) -> list[str]:
    """The overlay PNG, the raw map and, once the map is scored, its curves' data (CSV)."""
    paths = [png, npy]
    if result.faithfulness is not None:
        paths.append(csv_file(curves(result), Path(png).parent))
    return paths


def seen_and_mapped(result: Result, overlay: str) -> tuple[str, str]:
    """The slider's two pictures: the crop the model saw, and the same crop under the map
    (``overlay``, as shown above). Opacity 0 draws the crop alone, at the overlay's size."""
    plain = Path(overlay).with_name(f"{result.run.model}-crop.jpg")
    save_jpeg(overlay_crop(result.run, result.explanation.raw, alpha=0.0), plain)
    return str(plain), overlay


# --- every stage ----------------------------------------------------------------------------

def stages_gallery(stages: Stages, cmap: str, alpha: float, folder: Path) -> list[tuple[str, str]]:
    """One overlay per stage, finest first, captioned with its stage and map size."""
    items = []
    for ex in stages.explanations:
        h, w = ex.raw.shape
        path = save_jpeg(overlay_crop(stages.run, ex.raw, cmap, alpha, size=320),
                         Path(folder) / f"{stages.run.model}-{stages.method}-{ex.layer}.jpg")
        items.append((str(path), f"{ex.layer} · {h}×{w}"))
    return items


def stages_markdown(stages: Stages) -> str:
    """What the maps show, how they were computed, and each stage's notes."""
    t = stages.explanations[0].target
    how = "one forward and one backward for all four stages" if stages.method in ONE_PASS else "one run per stage"
    notes = [f"**Note ({ex.layer}):** {n}" for ex in stages.explanations for n in ex.notes]
    return "\n\n".join([f"{METHODS[stages.method].label} for **{t.label}** (class {t.index}) at "
                        f"{', '.join(STAGES)}, each map on its own colour scale; {how}.", *notes])
