"""What the Sanity check tab shows, from the feature's result (``zoo.features.sanity.Checks``): the
strips (one picture wide, one for a phone), the similarity chart, the verdicts, as plain values.

Tested without building the page (tests/test_views_sanity.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.explain import METHODS
from zoo.render import save_png, stack, strip
from zoo.sanity import PASS_BELOW

from .. import format as fmt
from .. import plots

# The strips as a phone shows them: the picture is scaled to the screen's width (about 360 px),
# so 8 cells a row would draw the labels at 5 px. Four larger cells a row, larger labels:
# about 11 px on screen. Shown instead of the wide picture under 640 px (ui/app.py's CSS).
NARROW = {"per_row": 4, "cell": 128, "font_size": 17}

ABOUT = (fmt.SANITY_NOTE + f"\n\nA method **passes** when, with fc and layer4 random, its map keeps "
         f"less than {PASS_BELOW} of its similarity with the original, both by rank (Spearman of |map|) "
         "and by structure (SSIM), as in Adebayo et al., [Sanity Checks for Saliency Maps]"
         "(https://arxiv.org/abs/1810.03292) (NeurIPS 2018). The check runs on a private copy of the "
         "weights, re-initialised with torchvision's rules from a fixed seed; the shared model is "
         "never touched.")


def step_title(name: str) -> str:
    """A strip cell's title: cumulative steps read "+layer4" (fc already random)."""
    return "original" if name == "none" else f"+{name}"


def maps_text(maps: int, methods: int, models: int) -> str:
    """The line before an estimate: how many maps the check draws."""
    if models > 1:
        return f"{maps} maps over {models} depths. "
    per = maps // max(methods, 1)
    return f"{per} maps per method (the original, then {per - 1} randomization steps), {maps} in all. "


def render(reports: list[Any], folder: Path, total: int, by_depth: bool = False) -> tuple:
    """One picture of every strip (a row per method, or per depth: the paper's Fig. 2 on this image),
    the similarity chart, the verdicts so far, the chart's data files and the phone's picture."""
    rows, narrow, series, verdicts = [], [], [], []
    for r in reports:
        for m in r.methods:
            cells = (r.run.crop, m.heats, [step_title(s.randomized) for s in m.steps], fmt.sanity_notes(m))
            heading = fmt.sanity_caption(m, r.model)
            rows.append(strip(*cells, heading=heading))
            narrow.append(strip(*cells, heading=heading, **NARROW))
            series.append((r.model if by_depth else METHODS[m.method].label, m.steps))
            verdicts.append(m.verdict_at)
    done = sum(len(m.steps) for r in reports for m in r.methods)
    path = save_png(stack(rows), folder / f"sanity-{reports[0].model}-{done}.png")
    # Room at the top: on a phone gradio's image buttons would cover the first row's last titles.
    phone = save_png(stack(narrow, top=28), folder / f"sanity-{reports[0].model}-{done}-narrow.png")
    chart = plots.sanity_chart(series, verdicts, PASS_BELOW, name=f"sanity-{reports[0].model}-{done}")
    # The chart's data as CSV beside the picture (its camera icon saves the chart as PNG).
    return (str(path), chart, fmt.sanity_markdown(reports, total, by_depth), plots.csv_files([chart], folder),
            str(phone))
