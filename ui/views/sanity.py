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

from .. import charts

# The strips as a phone shows them: the picture is scaled to the screen's width (about 360 px),
# so 8 cells a row would draw the labels at 5 px. Four larger cells a row, larger labels:
# about 11 px on screen. Shown instead of the wide picture under 640 px (ui/app.py's CSS).
NARROW = {"per_row": 4, "cell": 128, "font_size": 17}

SANITY_NOTE = ("Each map is computed again after re-initialising the network's weights from the top "
               "(fc, then layer4, layer3, …, the stem), cumulatively. A map that explains *this* network "
               "must change once the weights it reads are random; one that stays the same shows something "
               "the weights do not decide. `edges` (a Sobel edge detector) never reads the network: it is "
               "the control that must fail.")


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def random_at_verdict(granularity: str) -> str:
    """What is random at the verdict step of ``granularity`` (zoo.sanity.VERDICT_STEP), in words."""
    if granularity == "residual-branches":
        return "every residual branch"
    return "fc and all of layer4"


def sanity_verdict(check: Any, model: str = "") -> str:
    """One method's verdict in words, with the numbers it rests on."""
    label = METHODS[check.method].label
    who = f"{label} on {model}" if model else label
    v = check.verdict
    random = random_at_verdict(getattr(check, "granularity", "stage"))
    if check.flat_original:
        return f"**{who}: no verdict.** Its original map is flat, so there is nothing to compare."
    if v is None:
        return f"**{who}:** not yet at the step where {random} is random."
    kept = " (stem, shortcuts and fc kept)" if random == "every residual branch" else ""
    nums = (f"with {random} random{kept} its map keeps a rank correlation of "
            f"{_num(v.spearman_abs)} (|map|) and an SSIM of {v.ssim:.2f} with the original")
    if check.method == "edges":
        return (f"**{who} fails, as it must:** {nums}. It never reads the network, so no weight can change it: "
                "a map can look right and prove nothing.")
    if check.passes:
        return f"**{who} passes:** {nums}, both below {PASS_BELOW}: the map depends on the weights it explains."
    return (f"**{who} fails:** {nums}; a pass needs both below {PASS_BELOW}. Much of the map survives random "
            "weights, so it shows something other than what this network learned.")


def sanity_markdown(reports: list[Any], total_steps: int | None = None, by_depth: bool | None = None) -> str:
    """What was checked, how far it got (``total_steps``: maps planned), then a verdict per method or depth."""
    if not reports:
        return ""
    r0 = reports[0]
    t = r0.target
    by_depth = len(reports) > 1 if by_depth is None else by_depth
    lines = []
    what = ", ".join(f"`{r.model}`" for r in reports) if by_depth else f"`{r0.model}`"
    lines.append(f"Sanity check on {what} for **{t.label}** (class {t.index}); granularity *{r0.granularity}*, "
                 f"seed {r0.seed}, fp32 on `{r0.device}`. Maps computed: "
                 f"{sum(len(m.steps) for r in reports for m in r.methods)}"
                 + (f" of {total_steps}" if total_steps else "") + ".")
    for r in reports:
        for m in r.methods:
            lines.append("* " + sanity_verdict(m, r.model if by_depth else ""))
            lines += [f"    * {reading}" for reading in sanity_readings(m)]
    return "\n".join(lines)


def sanity_readings(check: Any) -> list[str]:
    """Under a verdict: the residual-branches answer (what the verdict means for the shortcuts) and
    sMPRT/eMPRT's readings (``MethodCheck.readings``), once the steps they need ran."""
    return list(check.readings()) if hasattr(check, "readings") else []


def sanity_caption(check: Any, model: str = "") -> str:
    verdict = {True: "passes", False: "fails", None: "no verdict yet"}[check.passes]
    head = f"{model} · " if model else ""
    return f"{head}{METHODS[check.method].label}: {verdict}"


def sanity_notes(check: Any) -> list[str]:
    """Under each map of the strip: its rank correlation and SSIM with the original."""
    return [f"r {_num(s.spearman_abs)}  S {s.ssim:.2f}" for s in check.steps]


ABOUT = (SANITY_NOTE + f"\n\nA method **passes** when, with fc and layer4 random, its map keeps "
         f"less than {PASS_BELOW} of its similarity with the original, both by rank (Spearman of |map|) "
         "and by structure (SSIM), as in Adebayo et al., [Sanity Checks for Saliency Maps]"
         "(https://arxiv.org/abs/1810.03292) (NeurIPS 2018). The check runs on a private copy of the "
         "weights, re-initialised with torchvision's rules from a fixed seed; the shared model is "
         "never touched.\n\n"
         "**Residual branches** randomizes only each block's residual branch, from the last block to the first, "
         "and keeps the stem, the shortcuts and fc: with every branch random, does the map still look like the "
         "original? Then it follows what the identity paths carry from the input more than the branches' learned "
         "weights. Under each verdict, Hedström et al.'s (2023) readings: **eMPRT**, the rise in the map's "
         "entropy from the original to the fully randomized model (free), and, with smooth MPRT samples above 0, "
         "**sMPRT**, the similarity of maps averaged over noisy copies of the input (one more map per sample, at "
         "the first and the last step).")


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
            cells = (r.run.crop, m.heats, [step_title(s.randomized) for s in m.steps], sanity_notes(m))
            heading = sanity_caption(m, r.model)
            rows.append(strip(*cells, heading=heading))
            narrow.append(strip(*cells, heading=heading, **NARROW))
            series.append((r.model if by_depth else METHODS[m.method].label, m.steps))
            verdicts.append(m.verdict_at)
    done = sum(len(m.steps) for r in reports for m in r.methods)
    path = save_png(stack(rows), folder / f"sanity-{reports[0].model}-{done}.png")
    # Room at the top: on a phone gradio's image buttons would cover the first row's last titles.
    phone = save_png(stack(narrow, top=28), folder / f"sanity-{reports[0].model}-{done}-narrow.png")
    chart = charts.sanity_chart(series, verdicts, PASS_BELOW, name=f"sanity-{reports[0].model}-{done}")
    # The chart's data as CSV beside the picture (its camera icon saves the chart as PNG).
    return (str(path), chart, sanity_markdown(reports, total, by_depth), charts.csv_files([chart], folder),
            str(phone))
