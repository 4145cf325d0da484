"""Turn ``zoo`` results into what Gradio components show. Presentation only."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from zoo.analysis import Analysis
from zoo.explain import METHODS, STAGES, stage_channels
from zoo.faithfulness import Faithfulness
from zoo.limits import Limits, duration_text, seconds_of
from zoo.landscape import Landscape
from zoo.registry import ModelSpec
from zoo.service import Comparison, Estimate, Ranked, Ranking, Result
from zoo.stats import StageStats, ZooRow


def label_dict(result: Result) -> dict[str, float]:
    """Top-k for ``gr.Label``; ImageNet repeats a few names, so repeats get their index."""
    out: dict[str, float] = {}
    for p in result.run.predictions:
        key = p.label if p.label not in out else f"{p.label} (class {p.index})"
        out[key] = p.prob
    return out


def result_markdown(result: Result, load_note: str = "") -> str:
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


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {seconds:.0f} s" if seconds >= 10 else f"about {seconds:.1f} s"
    return f"about {seconds / 60:.0f} min"


def estimate_markdown(est: Estimate, device: str, limits: Limits | None = None) -> str:
    """The cost of a run before it starts: seconds on this device when a forward was timed here,
    and whether this server's ceiling (``zoo.limits``) will refuse it."""
    passes = f"{est.forwards} forward pass{'' if est.forwards == 1 else 'es'}"  # a backward counts as two
    if est.seconds is None:
        text = f"Cost: {passes}. The time in seconds shows once a model has run on this device."
    else:
        text = f"Estimated time on {device}: **{duration(est.seconds)}** ({passes}, from {est.basis})."
    ceiling = limits.max_request_seconds if limits is not None else None
    if ceiling is not None and seconds_of(est.forwards, est.seconds)[0] > ceiling:
        text += (f" **Over this server's limit of {duration_text(ceiling)} per run: it will be refused.** Choose a "
                 "cheaper setting, or run the app on your own machine.")
    return text


def download_note(spec: ModelSpec) -> str:
    """After an estimate: a model not in the cache yet is downloaded first, which the estimate leaves out."""
    from zoo.hub import cached_path

    if cached_path(spec) is not None:
        return ""
    size = f" ({spec.size_bytes / 1e6:.0f} MB)" if spec.size_bytes else ""
    return (f" Not counted: {spec.name}'s weights{size} are not downloaded yet; its first use downloads them "
            "first, with a progress bar.")


def depth_lab_estimate(signal: Estimate, lesion: Estimate, device: str) -> str:
    """Under the Depth lab's buttons: what each of its two runs costs."""
    return (f"Signal analysis: {estimate_markdown(signal, device)}\n\n"
            f"Lesion study: {estimate_markdown(lesion, device)}")


def batch_estimate_markdown(est: Estimate | None, device: str, limits: Limits | None = None) -> str:
    """Under the Batch tab's Run button; ``est`` is None until files are picked."""
    if est is None:
        return "Cost: one forward pass per image and model. Pick the images to see the total."
    text = estimate_markdown(est, device, limits)
    if est.seconds is not None:  # priced from single-image forwards; batches amortise them
        text += " Batched forwards usually take less per image, so the run is likely shorter."
    return text


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
    else:  # a tie on first places: zoo.service.consensus breaks it by probability
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


PAPER_RESOLUTION = 224  # the paper's Table 1 counts multiply-adds for 224x224 inputs


def paper_scale(resolution: int) -> float:
    """How many times the multiply-adds grow from 224x224 to ``resolution`` (the pixel count; fc aside)."""
    return (resolution / PAPER_RESOLUTION) ** 2


def zoo_headers(resolution: int) -> list[str]:
    """Short headers, so that all 13 columns fit at 1400 px; the resolution is in the measured one."""
    return ["model", "layers", "blocks", "block", "params", f"GMACs at {resolution} px",
            f"paper GMACs (at {PAPER_RESOLUTION} px)", "GFLOPs", "file MB", "top-1 %", "top-5 %",
            "latency ms (p10–p90)", "cached"]


ZOO_HEADERS = zoo_headers(PAPER_RESOLUTION)
# Column widths, in pixels: gradio applies them to the header and the body alike (so they
# stay aligned) and wraps text between words inside them (wrap=True). Percentages were
# shares of the table's box: on a 400 px phone they gave 33 px columns that broke every word
# ("m o d e l"). Fixed widths fit the 1400 px page and, on a phone, the table scrolls
# sideways inside its box with its first column pinned. Each is at least its longest word.
ZOO_COLUMN_WIDTHS = [104, 72, 100, 118, 88, 84, 124, 76, 80, 80, 80, 124, 72]  # 1202 px; the box: 1214
STAGE_COLUMN_WIDTHS = [88, 96, 440, 110, 90, 80]


def compare_column_widths(models: int) -> list[int]:
    """The top-5 table: rank, then one column per depth; five depths fit the Compare tab at 1400 px."""
    return [56] + [146] * models  # 786 px: the box is 798 px wide at 1400 px


FAITHFULNESS_COLUMN_WIDTHS = [110, 190, 200, 130, 110, 110]
RANK_COLUMN_WIDTHS = [56, 150, 150, 160, 110, 70, 90]  # 786 px: the box is 798 px wide at 1400 px


def zoo_table(rows: list[ZooRow], cached: dict[str, bool]) -> list[list[Any]]:
    out = []
    for r in rows:
        lat = f"{r.latency.median_ms:.1f} ({r.latency.p10_ms:.1f}–{r.latency.p90_ms:.1f})" if r.latency else "–"
        paper = f"{r.paper_flops / 1e9:.1f}"
        if r.resolution != PAPER_RESOLUTION:  # the paper's figure as printed, and scaled to compare
            paper += f" (≈ {r.paper_flops * paper_scale(r.resolution) / 1e9:.1f} at {r.resolution})"
        out.append([
            r.name, r.layers, "-".join(map(str, r.blocks_per_stage)), r.block, f"{r.params / 1e6:.2f} M",
            f"{r.macs / 1e9:.2f}", paper, f"{r.flops / 1e9:.2f}",
            f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "–",
            f"{r.top1:.2f}" if r.top1 is not None else "–", f"{r.top5:.2f}" if r.top5 is not None else "–",
            lat, "yes" if cached.get(r.name) else "no",
        ])
    return out


def resolution_note(resolution: int) -> str:
    """What the numbers are measured at, and how to read the paper's 224-px column beside them."""
    if resolution == PAPER_RESOLUTION:
        return (f"Measured at {resolution}×{resolution}, the resolution of the paper's Table 1, so the measured "
                "and paper columns compare directly.")
    return (f"Measured at **{resolution}×{resolution}**. The paper's figures are for {PAPER_RESOLUTION}×"
            f"{PAPER_RESOLUTION}; multiply-adds grow with the number of pixels, so the paper column also shows "
            f"them scaled by ({resolution}/{PAPER_RESOLUTION})² = {paper_scale(resolution):.2f} (≈; the fc layer "
            "does not grow, but it is under 0.1% of the total). Latency and the plots are at "
            f"{resolution}×{resolution} too; accuracy is as reported, at {PAPER_RESOLUTION}.")


STAGE_HEADERS = ["stage", "output", "layout", "params", "MMACs", "share"]


def stage_table(rows: list[StageStats]) -> list[list[Any]]:
    return [[r.stage, f"{r.output_size}×{r.output_size}", r.layout, f"{r.params:,}", f"{r.macs / 1e6:.1f}",
             f"{r.share * 100:.1f}%"] for r in rows]


def depth_lab_markdown(analyses: list[Analysis]) -> str:
    """Per model: the figures behind each Depth lab chart, and whether the paper's claims hold here."""
    if not analyses:
        return ""
    lesioned = any(a.blocks[0].lesion is not None for a in analyses)
    head = ["model", "blocks", "target (p)", "median response std", "median ‖F‖/‖x‖", "grad norm, first → last"]
    if lesioned:
        head += ["p, an identity block deleted (mean)", "p, a downsampling block deleted (mean)",
                 "top-1 kept, one block deleted"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    medians = []
    for a in analyses:
        stds = sorted(b.response_std for b in a.blocks)
        ratios = sorted(b.residual_ratio for b in a.blocks)
        medians.append(stds[len(stds) // 2])
        row = [a.model, str(a.num_blocks), f"{a.target.label} ({a.target.prob:.2f})", f"{medians[-1]:.3g}",
               f"{ratios[len(ratios) // 2]:.3g}", f"{a.blocks[0].grad_norm:.3g} → {a.blocks[-1].grad_norm:.3g}"]
        if lesioned and a.blocks[0].lesion is not None:
            ident = [b.lesion.prob for b in a.blocks if not b.downsample]
            down = [b.lesion.prob for b in a.blocks if b.downsample]
            kept = sum(b.lesion.top1.index == a.top1.index for b in a.blocks)
            row += [f"{sum(ident) / len(ident):.2f}" if ident else "–", f"{sum(down) / len(down):.2f}" if down else "–",
                    f"{kept} of {a.num_blocks}"]
        elif lesioned:
            row += ["–", "–", "–"]
        lines.append("| " + " | ".join(row) + " |")
    notes = []
    if len(analyses) > 1:
        steps = sum(b < a for a, b in zip(medians, medians[1:]))
        verdict = ("falls at every step, as the paper found" if steps == len(medians) - 1 else
                   f"falls at {steps} of {len(medians) - 1} steps: the paper's trend does not hold fully here")
        notes.append(f"**Responses vs depth**: the median response std ({', '.join(a.model for a in analyses)}) "
                     f"{verdict}.")
    if lesioned:
        notes.append("**Lesions**: dashed lines are the undamaged networks. Veit et al. expect one deleted identity "
                     "block to cost little and a deleted downsampling block (crosses) to cost most.")
    prec = {a.precision for a in analyses if a.blocks[0].lesion is not None or a.deletions}
    if prec:
        notes.append(f"Statistics and gradients in fp32; lesions in {', '.join(sorted(prec))}. "
                     f"Time: {', '.join(f'{a.model} {a.seconds:.1f} s' for a in analyses)}.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)
# --- faithfulness ---------------------------------------------------------------------

FAITHFULNESS_NOTE = ("deletion: lower is better; insertion: higher is better; ROAD: higher is better; costs "
                     "about 50 forwards and ROAD's imputation: up to half a minute on a CPU, the estimate under the button "
                     "counts it")
# When the scores disagree: the README's "Which score to trust" says the same at length.
SCORES_DISAGREE = ("When deletion/insertion and ROAD disagree, trust ROAD: deletion and insertion fill the removed "
                   "pixels with flat mean-colour patches, an input the network never saw in training, so part of "
                   "the drop they measure is the patch itself; ROAD fills them by interpolating the neighbours "
                   "(plus a little noise), which keeps the image plausible. Differences of a few hundredths in "
                   "any of the three are noise.")


def road_text(f: Faithfulness) -> str:
    """ROAD's combined score, or a dash when the map was scored without it."""
    return "–" if f.road is None else f"{f.road.combined:+.3f}"


def faithfulness_markdown(f: Faithfulness) -> str:
    """The two areas with how to read them, and what they cost."""
    return (f"**Deletion AUC {f.deletion_auc:.3f}** (lower is better: removing the map's top pixels first should "
            f"make the class fall fast) · **Insertion AUC {f.insertion_auc:.3f}** (higher is better: restoring "
            f"them first should bring it back fast) · {f.steps} steps, {f.forwards} forwards, "
            f"{f.seconds * 1000:.0f} ms" + ("" if f.road is None else
            f"\n\n**ROAD {f.road.combined:+.3f}** (higher is better: the class should fall when the most relevant "
            f"pixels are imputed, and stay when the least relevant are) · percentiles "
            f"{', '.join(map(str, f.road.percentiles))}, {f.road.forwards} forwards, {f.road.seconds * 1000:.0f} ms"
            f"\n\n{SCORES_DISAGREE}"))


def faithfulness_table(cmp: Comparison) -> list[list[Any]]:
    """One row per depth: its map's two areas for the shared target."""
    return [[r.run.model, f"{r.faithfulness.deletion_auc:.3f}", f"{r.faithfulness.insertion_auc:.3f}",
             road_text(r.faithfulness), f"{r.explanation.target.prob:.3f}",
             f"{(r.faithfulness.seconds + (r.faithfulness.road.seconds if r.faithfulness.road else 0)) * 1000:.0f}"]
            for r in cmp.results if r.faithfulness is not None]


FAITHFULNESS_HEADERS = ["model", "deletion AUC (lower is better)", "insertion AUC (higher is better)",
                        "ROAD (higher is better)", "p(target)", "scoring ms"]


def method_choice(name: str, spec: ModelSpec | None = None, layer: str = STAGES[-1]) -> tuple[str, str]:
    """(label, name) for a method picker; Score-CAM's label counts its forwards for ``spec``."""
    m = METHODS[name]
    if name in ("scorecam", "ablationcam") and spec is not None:
        channels = stage_channels(spec.arch, layer)
        return f"{m.label} — {channels + 2} forwards ({channels} channels of {layer}, + 2)", name
    return f"{m.label} — {m.cost}", name


def rank_caption(place: int, r: Ranked) -> str:
    f = r.faithfulness
    # Short: a thumbnail shows ~40 characters; the table beside it has the full labels.
    return (f"{place}. {r.method}: deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f}, "
            f"ROAD {road_text(f)} ({r.explanation.seconds:.1f} s + {scoring_seconds(f):.1f} s scoring)")


def scoring_seconds(f: Faithfulness) -> float:
    return f.seconds + (f.road.seconds if f.road else 0.0)


def rank_table(entries: list[Ranked]) -> list[list[Any]]:
    return [[i + 1, METHODS[r.method].label, f"{r.faithfulness.deletion_auc:.3f}",
             f"{r.faithfulness.insertion_auc:.3f}", road_text(r.faithfulness), f"{r.explanation.seconds:.2f}",
             f"{scoring_seconds(r.faithfulness):.2f}"]
            for i, r in enumerate(entries)]


RANK_HEADERS = ["rank", "method", "deletion AUC (lower is better)", "insertion AUC (higher is better)",
                "ROAD (higher is better)", "map s", "scoring s"]


def ranking_markdown(ranking: Ranking, total: int, by: str) -> str:
    t = ranking.target
    done = len(ranking.entries)
    head = (f"**{ranking.run.model}** · maps for **{t.label}** (class {t.index}, p = {t.prob:.3f}) · "
            f"{done} of {total} methods scored")
    key = {"deletion": "deletion AUC, lowest first (the class falls fastest when the map's top pixels are removed)",
           "insertion": "insertion AUC, highest first (the class returns fastest when the map's top pixels are "
                        "restored)",
           "road": "ROAD, highest first (imputing the map's top pixels hurts the class most, its bottom pixels "
                   "least)"}[by]
    return (f"{head} · sorted by {key}. Each score costs about 50 forwards and ROAD's imputation.\n\n"
            f"{SCORES_DISAGREE}")
# --- the sanity check ------------------------------------------------------------------------

SANITY_NOTE = ("Each map is computed again after re-initialising the network's weights from the top "
               "(fc, then layer4, layer3, …, the stem), cumulatively. A map that explains *this* network "
               "must change once the weights it reads are random; one that stays the same shows something "
               "the weights do not decide. `edges` (a Sobel edge detector) never reads the network: it is "
               "the control that must fail.")


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def sanity_verdict(check: Any, model: str = "") -> str:
    """One method's verdict in words, with the numbers it rests on."""
    from zoo.sanity import PASS_BELOW

    label = METHODS[check.method].label
    who = f"{label} on {model}" if model else label
    v = check.verdict
    if check.flat_original:
        return f"**{who}: no verdict.** Its original map is flat, so there is nothing to compare."
    if v is None:
        return f"**{who}:** not yet at the step where fc and layer4 are random."
    nums = (f"with fc and all of layer4 random its map keeps a rank correlation of "
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
    return "\n".join(lines)


def sanity_caption(check: Any, model: str = "") -> str:
    verdict = {True: "passes", False: "fails", None: "no verdict yet"}[check.passes]
    head = f"{model} · " if model else ""
    return f"{head}{METHODS[check.method].label}: {verdict}"


def sanity_notes(check: Any) -> list[str]:
    """Under each map of the strip: its rank correlation and SSIM with the original."""
    return [f"r {_num(s.spearman_abs)}  S {s.ssim:.2f}" for s in check.steps]
def landscape_markdown(done: list[Landscape], total: int) -> str:
    """What the error surfaces so far say: each depth's loss at its weights and around them."""
    if not done:
        return ""
    first = done[0]
    shape = f"{len(first.alphas)} × {len(first.betas)}" if first.dims == 2 else f"{len(first.alphas)} points along δ"
    targets = "; ".join(f"{i.name}: **{i.label}** ({'your class' if i.chosen == 'given' else i.chosen})"
                        for i in first.images[:4]) + (" …" if len(first.images) > 4 else "")
    lines = [f"**{len(done)} of {total} depths** · grid {shape}, α, β ∈ [−{first.span:g}, {first.span:g}], seed "
             f"{first.seed}, fp32 on `{first.device}` · targets ({first.model}): {targets}"]
    for ls in done:
        z = [v for row in ls.loss for v in row]
        finite = [v for v in z if v == v and abs(v) != float("inf")]
        edge = max(finite) if finite else float("nan")
        lines.append(f"* **{ls.model}**: loss {ls.center_loss:.3g} at its weights, up to {edge:.3g} on the grid; "
                     f"{ls.points} points, {ls.point_seconds * 1000:.0f} ms each, {ls.seconds:.0f} s in all")
    notes = dict.fromkeys(n for ls in done for n in ls.notes)
    lines += [f"Note: {n}" for n in notes]
    if first.skipped:  # files that were not images: named with the reason, not silently dropped
        lines.append("Skipped: " + "; ".join(f"{s.name} ({s.reason})" for s in first.skipped[:5])
                     + (" …" if len(first.skipped) > 5 else ""))
    return "\n".join(lines)


def selfcheck_markdown(result: Any) -> str:
    """A ``zoo.selfcheck.SelfCheck`` as the page shows it: the health line, then a table per model."""
    mark = {"pass": "passes", "warn": "passes (not pinned)", "fail": "**fails**"}
    failed = [m.model for m in result.models if not m.passed]
    n = len(result.models)
    head = (f"Self-check: {n - len(failed)} of {n} models pass; {', '.join(failed)} "
            f"{'fails' if len(failed) == 1 else 'fail'}." if failed else result.health_line())
    lines = [f"**{head}**", "",
             "| model | result | pin | sha256 | photos (accepted class in top-5) |", "|---|---|---|---|---|"]
    for m in result.models:
        photos = "; ".join(f"{p.file}: {'pass' if p.passed else 'FAIL'}, {p.top5[0]['label']} {p.top5[0]['prob']:.2f}"
                           for p in m.photos) or "–"
        lines.append(f"| {m.model} | {mark[m.status]} | {m.pin} | {m.sha} | {photos} |")
    lines.append("")
    lines += [f"* **{m.model}**: {m.diagnosis}" for m in result.models]
    return "\n".join(lines)
