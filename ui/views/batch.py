"""What the Batch tab shows of a ``BatchResult`` and its decision: tables, markdown, Plotly figures.

Plain functions (no gradio), unit-tested in tests/test_views_batch.py.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Callable

import plotly.graph_objects as go
from PIL import Image

from zoo.batch import BatchResult, Mattered

from .. import charts
from ..charts import Chart

MODEL_HEADERS = ["model", "top-1", "top-5", "mean confidence", "images/s"]
DECISION_HEADERS = ["model", "top-1 [95 %]", "top-5 [95 %]", "ECE", "NLL", "Brier", "ms/image at batch 1",
                    "ms/image in the run", "images/s", "peak MB", "params (M)", "GMACs", "mode"]
PUBLISHED_HEADERS = ["model", "ImageNet-V2 (MF)", "ImageNet-ReaL", "ImageNet-R", "ImageNet-Sketch", "ImageNet-A",
                     "ImageNet-C mCE"]
GREY = "#b0b0b0"
NO_LABELS = ("**Which depth should I ship?** needs labels: with folders named after classes inside the zip, or a "
             "`file,label` CSV, this section shows each depth's accuracy with its 95 % interval, paired McNemar "
             "tests between depths, error consistency, calibration and a recommended depth. Without labels it "
             "shows how far the depths' answers agree and what each costs here.")


def thumbnail_uri(img: Image.Image) -> str:
    """A small JPEG inline (markdown, data URI): the table shows it without serving files."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "![](data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii") + ")"


# --- the run ---------------------------------------------------------------------------------

def model_table(result: BatchResult) -> list[list[Any]]:
    """Per model: accuracy with counts (when labelled), mean confidence, throughput."""
    def acc(v: float | None, n: int, of: int) -> str:
        return "–" if v is None else f"{v * 100:.1f}% ({n} of {of})"

    return [[s.name, acc(s.top1, s.top1_correct, s.labelled), acc(s.top5, s.top5_correct, s.labelled),
             f"{s.mean_confidence * 100:.1f}%", f"{s.images_per_s:.1f}"] for s in result.per_model]


def headers(result: BatchResult) -> list[str]:
    return ["", "file", *(["label"] if result.n_labelled else []), *result.models, "depths"]


def rows(result: BatchResult, thumbnail: Callable[[Any], str] = thumbnail_uri) -> list[list[Any]]:
    """One row per image: thumbnail, file, label, each model's top-1 (✓/✗ when labelled), agreement."""
    mark = {True: " ✓", False: " ✗", None: ""}
    out = []
    for img in result.images:
        cells = [f"{result.labels[img.top1(m)]} ({img.probs[m, 0] * 100:.0f}%){mark[img.correct(m)]}"
                 for m in range(len(result.models))]
        label = [result.labels[img.label] if img.label is not None else ""] if result.n_labelled else []
        out.append([thumbnail(img.thumbnail) if img.thumbnail is not None else "", img.name, *label, *cells,
                    "agree" if img.agree else "≠ disagree"])
    return out


def markdown(result: BatchResult, max_listed: int = 30) -> str:
    s = result
    lines = [f"**{s.n_images} images** classified by {len(s.models)} model(s) on `{s.device}` ({s.precision}, "
             f"batches of {s.batch_size}) in {s.seconds:.1f} s · labels for {s.n_labelled}"
             + (f" · **{len(s.skipped)} skipped**" if s.skipped else "") + "."]
    lines += [f"Note: {n}" for n in s.notes]
    if s.skipped:
        lines.append("Skipped:\n" + "\n".join(f"* `{k.name}`: {k.reason}" for k in s.skipped[:max_listed])
                     + (f"\n* … and {len(s.skipped) - max_listed} more" if len(s.skipped) > max_listed else ""))
    if s.partial:
        lines.insert(0, f"**Partial results: the {s.n_images} images done so far.**")
    return "\n\n".join(lines)


def mattered_caption(result: BatchResult, m: Mattered) -> str:
    img = m.image
    label = f" [{result.labels[img.label]}]" if img.label is not None else ""
    picks = " · ".join(f"{name}: {result.labels[img.top1(i)]}" for i, name in enumerate(result.models))
    return f"{img.name}{label}: {m.reason}. {picks}"


# --- the decision ----------------------------------------------------------------------------

def _pct(v: float | None, ci: list[float] | None = None) -> str:
    if v is None:
        return "–"
    return f"{v * 100:.1f}%" + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def _num(v: float | None, fmt: str) -> str:
    return "–" if v is None else format(v, fmt)


def decision_markdown(d: Any) -> str:
    """The recommendation and the pairs in words; what labels would add on an unlabelled run."""
    if d is None:
        return ""
    if not d.n:
        return NO_LABELS
    head = d.recommendation["reason"]
    pick = d.recommendation["model"]
    lines = [f"### Recommended: {pick}" if pick else "### No recommendation", head,
             f"Figures rest on **{d.n} labelled images**; intervals are 95 % percentile bootstraps over the images "
             f"(2,000 resamples, seed {d.seed}); pairs use McNemar's exact test at level {d.recommendation['level']:g} "
             "on the same images. The published columns are ImageNet figures, not your data."]
    lines += [f"* {s}" for s in d.sentences()[1:]]
    if d.robustness:
        for r in d.robustness["results"]:
            lines.append(f"* Under **{r['corruption']}**, severity {r['severity']} ({r['n']} images): " + ", ".join(
                f"{m} {_pct(r['top1'][m], r['top1_ci'][m])}" for m in d.models))
    return "\n\n".join(lines)


def decision_table(d: Any) -> list[list[Any]]:
    """One row per depth: accuracy with intervals, calibration, cost here."""
    out = []
    for m in d.models:
        a, c, k = d.accuracy.get(m, {}), d.calibration.get(m, {}), d.cost.get(m, {})
        out.append([m, _pct(a.get("top1"), a.get("top1_ci")), _pct(a.get("top5"), a.get("top5_ci")),
                    _num(c.get("ece"), ".3f"), _num(c.get("nll"), ".3f"), _num(c.get("brier"), ".3f"),
                    _num(k.get("ms_batch1"), ".1f"), _num(k.get("ms_per_image"), ".1f"),
                    _num(k.get("images_per_s"), ".1f"), _num(k.get("peak_mb"), ".0f"),
                    _num(None if k.get("params") is None else k["params"] / 1e6, ".1f"),
                    _num(None if k.get("macs") is None else k["macs"] / 1e9, ".2f"), k.get("mode", "–")])
    return out


def published_table(d: Any) -> list[list[Any]]:
    """The registry's published top-1 (%) on ImageNet variants and ImageNet-C mCE, labelled as published."""
    keys = ("imagenet_v2", "imagenet_real", "imagenet_r", "imagenet_sketch", "imagenet_a", "imagenet_c_mce")
    out = []
    for m in d.models:
        p = d.published.get(m) or {}
        out.append([m, *(_num(p.get(k), ".2f") for k in keys)])
    return out


def accuracy_latency(d: Any) -> Chart | None:
    """Top-1 (95 % interval as error bars) against ms per image at batch 1; dominated depths grey."""
    if not d.n:
        return None
    grey = set(d.recommendation.get("dominated", []))
    pick = d.recommendation.get("model")
    fig = charts.figure("decision-accuracy-latency", "Accuracy against latency here",
                       "ms per image at batch 1 (this machine)", "top-1 on your images (%)")
    for i, m in enumerate(d.models):
        a, ms = d.accuracy[m], d.cost.get(m, {}).get("ms_batch1")
        if ms is None:
            continue
        lo, hi = a["top1_ci"]
        colour = GREY if m in grey else charts.color(i)
        fig.add_trace(go.Scatter(
            x=[ms], y=[a["top1"] * 100], mode="markers+text", text=[m + (" ★" if m == pick else "")],
            textposition="top center", name=m + (" (dominated)" if m in grey else ""),
            marker=dict(size=12 if m == pick else 9, color=colour),
            error_y=dict(type="data", symmetric=False, array=[(hi - a["top1"]) * 100],
                         arrayminus=[(a["top1"] - lo) * 100], color=colour),
            hovertemplate=f"<b>{m}</b><br>top-1 %{{y:.1f}} % [{lo * 100:.1f}, {hi * 100:.1f}]<br>"
                          "%{x:.1f} ms per image<extra></extra>"))
    budget = d.recommendation.get("budget_ms")
    if budget is not None:
        fig.add_vline(x=budget, line_dash="dash", line_color="#cc0000", annotation_text=f"budget {budget:g} ms")
    return fig


def reliability(d: Any) -> Chart | None:
    """Reliability diagram: accuracy against mean confidence per bin, every depth on one chart."""
    if not d.n:
        return None
    fig = charts.figure("decision-reliability", "Reliability (calibration)", "confidence (top-1 probability)",
                       "accuracy in the bin")
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line=dict(dash="dot", color="#999999"), hoverinfo="skip"))
    for m in d.models:
        bins = [b for b in d.calibration[m]["bins"] if b["n"]]
        fig.add_trace(go.Scatter(
            x=[b["confidence"] for b in bins], y=[b["accuracy"] for b in bins], mode="lines+markers",
            name=f"{m} (ECE {d.calibration[m]['ece']:.3f})", customdata=[[b["n"], b["lo"], b["hi"]] for b in bins],
            hovertemplate=f"<b>{m}</b><br>confidence %{{x:.2f}} (bin %{{customdata[1]:.2f}}–%{{customdata[2]:.2f}})"
                          "<br>accuracy %{y:.2f} on %{customdata[0]} images<extra></extra>"))
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    return fig


def kappa_heatmap(d: Any) -> Chart | None:
    """Depth x depth error consistency (Cohen's kappa of the right/wrong patterns)."""
    if not d.n or d.error_consistency.get("kappa") is None:
        return None
    if all(v is None for row in d.error_consistency["kappa"] for v in row):
        return None  # every depth all right or all wrong: kappa is undefined (c_exp = 1)
    models = d.error_consistency["models"]
    z = [[None if v is None else float(v) for v in row] for row in d.error_consistency["kappa"]]
    fig = charts.figure("decision-kappa", "Error consistency (κ)", height=340 + 40 * len(models))
    fig.add_trace(go.Heatmap(z=z, x=list(models), y=list(models), zmin=-1.0, zmax=1.0, colorscale="RdBu",
                             reversescale=True, name="κ", texttemplate="%{z:.2f}", textfont=dict(size=12),
                             colorbar=dict(title=dict(text="κ", side="top"), thickness=12),
                             hovertemplate="<b>%{y} and %{x}</b><br>error consistency κ = %{z:.3f}<extra></extra>"))
    charts._heatmap_axes(fig, list(models))
    return fig
