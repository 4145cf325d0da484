"""Turn ``zoo`` results into what Gradio components show. Presentation only."""

from __future__ import annotations

from typing import Any, Callable

from zoo.batch import BatchResult, Mattered
from zoo.explain import METHODS
from zoo.service import Comparison, Result
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
        f"**{result.run.model}** on `{result.run.device}` · {result.seconds * 1000:.0f} ms "
        f"(classify {result.run.seconds * 1000:.0f} ms, {m.label} {result.explanation.seconds * 1000:.0f} ms)",
        f"Map for **{t.label}** (class {t.index}, p = {t.prob:.3f}) · raw map {result.explanation.raw.shape[0]}"
        f"×{result.explanation.raw.shape[1]} · cost: {m.cost}",
    ]
    if m.signed:
        lines.append("Signed map: positive values support the class, negative values count against it.")
    lines += [f"Note: {n}." for n in result.run.notes]
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


def agreement_markdown(cmp: Comparison) -> str:
    a = cmp.agreement
    labels = cmp.results[0].run.labels
    n, total = a["top1_majority_count"], a["models"]
    head = (f"All {total} models agree: **{labels[a['top1_majority']]}**." if a["top1_unanimous"] else
            f"{n} of {total} models put **{labels[a['top1_majority']]}** first; "
            + ", ".join(f"{m}: {labels[c]}" for m, c in a["top1"].items() if c != a["top1_majority"]) + ".")
    common = a["top5_common"]
    tail = (f" {len(common)} class(es) appear in every top-5: " + ", ".join(labels[c] for c in common) + "."
            if common else " No class is in every model's top-5.")
    target = f" Maps show **{cmp.target_label}** (class {cmp.target}) for every model."
    times = " Time: " + ", ".join(f"{r.run.model} {r.seconds * 1000:.0f} ms" for r in cmp.results) + "."
    return head + tail + target + times


def zoo_table(rows: list[ZooRow], cached: dict[str, bool]) -> list[list[Any]]:
    out = []
    for r in rows:
        lat = f"{r.latency.median_ms:.1f} ({r.latency.p10_ms:.1f}–{r.latency.p90_ms:.1f})" if r.latency else "–"
        out.append([
            r.name, r.layers, "-".join(map(str, r.blocks_per_stage)), r.block, f"{r.params / 1e6:.2f} M",
            f"{r.macs / 1e9:.2f}", f"{r.paper_flops / 1e9:.1f}", f"{r.flops / 1e9:.2f}",
            f"{r.size_bytes / 1e6:.1f}" if r.size_bytes else "–",
            f"{r.top1:.2f}" if r.top1 is not None else "–", f"{r.top5:.2f}" if r.top5 is not None else "–",
            lat, "yes" if cached.get(r.name) else "no",
        ])
    return out


ZOO_HEADERS = ["model", "layers", "blocks", "block", "params", "GMACs (measured)", "GMACs (paper)", "GFLOPs",
               "file MB", "top-1 %", "top-5 %", "latency ms (p10–p90)", "cached"]
STAGE_HEADERS = ["stage", "output", "layout", "params", "MMACs", "share"]


def stage_table(rows: list[StageStats]) -> list[list[Any]]:
    return [[r.stage, f"{r.output_size}×{r.output_size}", r.layout, f"{r.params:,}", f"{r.macs / 1e6:.1f}",
             f"{r.share * 100:.1f}%"] for r in rows]


# --- Batch tab -----------------------------------------------------------------------------

BATCH_MODEL_HEADERS = ["model", "top-1", "top-5", "mean confidence", "images/s"]


def batch_model_table(result: BatchResult) -> list[list[Any]]:
    """Per model: accuracy with counts (when labelled), mean confidence, throughput."""
    def acc(v: float | None, n: int, of: int) -> str:
        return "–" if v is None else f"{v * 100:.1f}% ({n} of {of})"

    return [[s.name, acc(s.top1, s.top1_correct, s.labelled), acc(s.top5, s.top5_correct, s.labelled),
             f"{s.mean_confidence * 100:.1f}%", f"{s.images_per_s:.1f}"] for s in result.per_model]


def batch_headers(result: BatchResult) -> list[str]:
    return ["", "file", *(["label"] if result.n_labelled else []), *result.models, "depths"]


def batch_rows(result: BatchResult, thumbnail_uri: Callable[[Any], str]) -> list[list[Any]]:
    """One row per image: thumbnail, file, label, each model's top-1 (✓/✗ when labelled), agreement."""
    mark = {True: " ✓", False: " ✗", None: ""}
    rows = []
    for img in result.images:
        cells = [f"{result.labels[img.top1(m)]} ({img.probs[m, 0] * 100:.0f}%){mark[img.correct(m)]}"
                 for m in range(len(result.models))]
        label = [result.labels[img.label] if img.label is not None else ""] if result.n_labelled else []
        rows.append([thumbnail_uri(img.thumbnail) if img.thumbnail is not None else "", img.name, *label, *cells,
                     "agree" if img.agree else "≠ disagree"])
    return rows


def batch_markdown(result: BatchResult, max_listed: int = 30) -> str:
    s = result
    lines = [f"**{s.n_images} images** classified by {len(s.models)} model(s) on `{s.device}` ({s.precision}, "
             f"batches of {s.batch_size}) in {s.seconds:.1f} s · labels for {s.n_labelled}"
             + (f" · **{len(s.skipped)} skipped**" if s.skipped else "") + "."]
    lines += [f"Note: {n}" for n in s.notes]
    if s.skipped:
        lines.append("Skipped:\n" + "\n".join(f"* `{k.name}`: {k.reason}" for k in s.skipped[:max_listed])
                     + (f"\n* … and {len(s.skipped) - max_listed} more" if len(s.skipped) > max_listed else ""))
    return "\n\n".join(lines)


def mattered_caption(result: BatchResult, m: Mattered) -> str:
    img = m.image
    label = f" [{result.labels[img.label]}]" if img.label is not None else ""
    picks = " · ".join(f"{name}: {result.labels[img.top1(i)]}" for i, name in enumerate(result.models))
    return f"{img.name}{label}: {m.reason}. {picks}"
