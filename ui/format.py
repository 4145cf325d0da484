"""Turn ``zoo`` results into what Gradio components show. Presentation only."""

from __future__ import annotations

from typing import Any

from zoo.explain import METHODS, STAGES, stage_channels
from zoo.faithfulness import Faithfulness
from zoo.registry import ModelSpec
from zoo.service import Comparison, Ranked, Ranking, Result
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
        f"(classify {result.run.seconds * 1000:.0f} ms, {m.label} {result.explanation.seconds * 1000:.0f} ms"
        + (f", scoring {result.faithfulness.seconds * 1000:.0f} ms" if result.faithfulness else "") + ")",
        f"Map for **{t.label}** (class {t.index}, p = {t.prob:.3f}) · raw map {result.explanation.raw.shape[0]}"
        f"×{result.explanation.raw.shape[1]}"
        + (f" from {result.explanation.layer}" if result.explanation.layer else "") + f" · cost: {m.cost}",
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


# --- faithfulness ---------------------------------------------------------------------

FAITHFULNESS_NOTE = "deletion: lower is better; insertion: higher is better; costs about 40 forwards"


def faithfulness_markdown(f: Faithfulness) -> str:
    """The two areas with how to read them, and what they cost."""
    return (f"**Deletion AUC {f.deletion_auc:.3f}** (lower is better: removing the map's top pixels first should "
            f"make the class fall fast) · **Insertion AUC {f.insertion_auc:.3f}** (higher is better: restoring "
            f"them first should bring it back fast) · {f.steps} steps, {f.forwards} forwards, "
            f"{f.seconds * 1000:.0f} ms")


def faithfulness_table(cmp: Comparison) -> list[list[Any]]:
    """One row per depth: its map's two areas for the shared target."""
    return [[r.run.model, f"{r.faithfulness.deletion_auc:.3f}", f"{r.faithfulness.insertion_auc:.3f}",
             f"{r.explanation.target.prob:.3f}", f"{r.faithfulness.seconds * 1000:.0f}"]
            for r in cmp.results if r.faithfulness is not None]


FAITHFULNESS_HEADERS = ["model", "deletion AUC (lower is better)", "insertion AUC (higher is better)",
                        "p(target)", "scoring ms"]


def method_choice(name: str, spec: ModelSpec | None = None, layer: str = STAGES[-1]) -> tuple[str, str]:
    """(label, name) for a method picker; Score-CAM's label counts its forwards for ``spec``."""
    m = METHODS[name]
    if name == "scorecam" and spec is not None:
        channels = stage_channels(spec.arch, layer)
        return f"{m.label} — {channels + 2} forwards ({channels} channels of {layer}, + 2)", name
    return f"{m.label} — {m.cost}", name


def rank_caption(place: int, r: Ranked) -> str:
    f = r.faithfulness
    # Short: a thumbnail shows ~40 characters; the table beside it has the full labels.
    return (f"{place}. {r.method}: deletion {f.deletion_auc:.3f}, insertion {f.insertion_auc:.3f} "
            f"({r.explanation.seconds:.1f} s + {f.seconds:.1f} s scoring)")


def rank_table(entries: list[Ranked]) -> list[list[Any]]:
    return [[i + 1, METHODS[r.method].label, f"{r.faithfulness.deletion_auc:.3f}",
             f"{r.faithfulness.insertion_auc:.3f}", f"{r.explanation.seconds:.2f}", f"{r.faithfulness.seconds:.2f}"]
            for i, r in enumerate(entries)]


RANK_HEADERS = ["rank", "method", "deletion AUC (lower is better)", "insertion AUC (higher is better)", "map s",
                "scoring s"]


def ranking_markdown(ranking: Ranking, total: int, by: str) -> str:
    t = ranking.target
    done = len(ranking.entries)
    head = (f"**{ranking.run.model}** · maps for **{t.label}** (class {t.index}, p = {t.prob:.3f}) · "
            f"{done} of {total} methods scored")
    key = ("deletion AUC, lowest first (the class falls fastest when the map's top pixels are removed)"
           if by == "deletion" else
           "insertion AUC, highest first (the class returns fastest when the map's top pixels are restored)")
    return f"{head} · sorted by {key}. Each score costs about 40 forwards."
