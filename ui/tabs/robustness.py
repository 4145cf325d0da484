"""Robustness: which depth still sees the cat through fog, noise and JPEG (issue 19).

Three parts, each its own guarded event with its own estimate and Stop:

* **Live**: one corruption at one severity (0 = the clean crop): the corrupted crop every
  depth saw, each depth's prediction and its map on that crop (``Explorer.robustness_live``);
* **Sweep**: every corruption x severity x depth on the image (``Explorer.robustness_sweep``),
  streamed batch by batch: heatmaps of the target's probability, its curve against severity
  for the chosen corruption, the breaking points, one sentence, a CSV;
* **A folder**: images (or one .zip, read as Batch reads them) under the chosen corruptions:
  accuracy, CE and mCE per depth (``Explorer.robustness_stream``).

Endpoints: ``/robustness(files, models, corruptions)``, ``/robustness_live(image, models,
corruption, severity, method)``, ``/robustness_sweep(image, models, corruptions)``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import math
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np

from zoo.batch import Progress
from zoo.errors import ZooError
from zoo.explain import METHODS
from zoo.models import imagenet_labels
from zoo.render import Scale, overlay_crop, save_jpeg, save_png
from zoo.robustness import (CORRUPTIONS, SEVERITIES, FolderSummary, Live, SampleResult, Sweep, SweepProgress,
                            Verdict)

from .. import format as fmt
from .. import robustness_plots as rplots
from ..common import (EXAMPLES, Context, InputFiles, checked_file, gpu, new_output_folder, progress_fn, require_image,
                      safe_image_input, user_errors)
from ..guard import long_event, runs_no_model
from ..charts import depth_label

TITLE = "Robustness"
PARTIAL_S = 3.0  # seconds between a folder run's partial results in the page
DEFAULT_CORRUPTION = "fog"
DEFAULT_SEVERITY = 3
DEFAULT_FOLDER_CORRUPTIONS = tuple(c.name for c in CORRUPTIONS if c.imagenet_c)  # the paper's 15 (its mCE)
CORRUPTION_CHOICES = [(c.label, c.name) for c in CORRUPTIONS]
LABELS = {c.name: c.label for c in CORRUPTIONS}
NO_MAP = "none"  # the map dropdown's "predictions only"
LIVE_HEADERS = ["model", "top-1", "top-2", "top-3", "p(class)"]
# Fixed widths: sized by content, "p(class)" got a column narrower than its name; on a phone the table scrolls.
LIVE_WIDTHS = ["100px", "200px", "200px", "200px", "100px"]

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


def corruption_list(corruptions: Any) -> list[str] | None:
    """The corruptions a request names (a list, or one name); None or empty: all of them."""
    if not corruptions:
        return None
    return [corruptions] if isinstance(corruptions, str) else list(corruptions)


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


def changed_summary(s: FolderSummary) -> gr.Dataframe:
    """Without labels, per depth: how often a corruption changed the clean top-1 (what the CLI prints)."""
    rows = [[model, _pct(float(np.nanmean(s.changed[m]))) if s.changed is not None and s.changed[m].size else "–"]
            for m, model in enumerate(s.models)]
    return gr.Dataframe(value=rows, headers=["model", "top-1 changed (mean)"])


def changed_rows(s: FolderSummary) -> gr.Dataframe:
    """Without labels, corruption x depth: the share of images whose top-1 changed, mean over the severities."""
    rows = [[LABELS.get(name, name), *[_pct(float(s.changed[m, c].mean())) if s.changed is not None else "–"
                                       for m in range(len(s.models))]] for c, name in enumerate(s.corruptions)]
    return gr.Dataframe(value=rows, headers=["corruption", *s.models],
                        label="Top-1 changed from the clean crop's, per corruption (mean over the severities)")


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


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer = ctx.explorer

    # --- costs: the page's estimate, the server's ceiling, ZeroGPU's slot -----------------------

    def live_cost(image: Any = None, models: list[str] | None = None, corruption: str = DEFAULT_CORRUPTION,
                  severity: int = DEFAULT_SEVERITY, method: str | None = None, *_: Any):
        return explorer.robustness_live_estimate(list(models or ctx.depth_names), corruption or DEFAULT_CORRUPTION,
                                                 int(severity), None if method in (None, "", NO_MAP) else method)

    def sweep_cost(image: Any = None, models: list[str] | None = None, corruptions: Any = None, *_: Any):
        return explorer.robustness_estimate(list(models or ctx.depth_names), corruption_list(corruptions), None,
                                            images=1)

    def uploads(files: Any, labels_csv: Any = None) -> tuple[list[Path], Path | None]:
        if not files:
            raise gr.Error("Upload some images, or one .zip of them, first.", print_exception=False)
        paths = [checked_file(f) for f in (files if isinstance(files, list) else [files])]
        return paths, checked_file(labels_csv) if labels_csv else None

    def folder_cost(files: Any, labels_csv: Any = None, models: list[str] | None = None, corruptions: Any = None,
                    severities: Any = None, *_: Any):
        """Per image and depth: the clean crop and one forward per (corruption, severity); zips counted, not decoded."""
        paths, _ = uploads(files, labels_csv)
        return explorer.robustness_estimate(list(models or ctx.depth_names), corruption_list(corruptions),
                                            [int(s) for s in severities] if severities else None, sources=paths,
                                            names=[p.name for p in paths], max_images=ctx.max_batch_images)

    # --- live ------------------------------------------------------------------------------

    @gpu(cost=lambda image, models, corruption, severity, method, target, seed, progress=None:
         live_cost(image, models, corruption, severity, method))
    def run_live(image, models, corruption, severity, method, target, seed, progress) -> Live:
        upload = require_image(image)
        return explorer.robustness_live(upload.path, corruption or DEFAULT_CORRUPTION, int(severity),
                                        list(models or ctx.depth_names),
                                        method=None if method in (None, "", NO_MAP) else method,
                                        target=target or None, seed=int(seed or 0), progress=progress_fn(progress))

    @user_errors
    def ui_preview(image, models, corruption, severity, seed):
        """The corrupted crop as soon as the corruption or severity changes: no model runs."""
        if image is None:
            return gr.skip()
        crop = explorer.robustness_preview(image.path, corruption or DEFAULT_CORRUPTION, int(severity),
                                           list(models or ctx.depth_names), seed=int(seed or 0))
        path = new_output_folder(ctx.outputs_dir) / f"preview-{corruption}-{int(severity)}.png"
        return str(save_png(np.asarray(crop.convert("RGB")), path))

    def render_live(live: Live) -> tuple[str, list, list[list[str]], str]:
        folder = new_output_folder(ctx.outputs_dir)
        crop = str(save_png(np.asarray(live.crop.convert("RGB")), folder / f"{live.corruption}-{live.severity}.png"))
        gallery = []
        maps = [r for r in live.results if hasattr(r, "explanation")]
        if maps:
            scale = Scale.of(*[r.explanation.raw for r in maps])  # one scale: magnitudes compare across depths
            signed = METHODS[maps[0].method].signed
            for r in maps:
                path = save_jpeg(overlay_crop(r.run, r.explanation.raw, "jet", 0.5, scale, size=320, signed=signed),
                                 folder / f"{r.run.model}-{live.corruption}-{live.severity}.jpg")
                gallery.append((str(path), f"{r.run.model} · top-1 {top_text(r.run.predictions[0])} · "
                                           f"p({live.target_label}) = {float(r.run.probs[live.target]):.2f}"))
        what = "the clean crop" if live.severity == 0 else f"{LABELS.get(live.corruption, live.corruption)} " \
                                                           f"at severity {live.severity} (seed {live.seed})"
        info = (f"Every depth on {what}; maps of {live.target_label} "
                + (f"by {METHODS[live.method].label}, on one colour scale." if live.method else "not asked for."))
        return crop, gallery, live_rows(live), info

    @user_errors
    def ui_live(image, models, corruption, severity, method, target, seed, progress=gr.Progress()):
        live = run_live(image, models, corruption, severity, method, target, seed, progress)
        crop, gallery, rows, info = render_live(live)
        # At least three columns: a lone map would fill the row at 1400 px.
        return (crop, gr.Gallery(value=gallery, columns=max(3, len(gallery))),
                gr.Dataframe(value=rows, headers=LIVE_HEADERS), info)

    @user_errors
    def api_live(image, models, corruption, severity, method, progress=gr.Progress()):
        """Every chosen depth (none: all five) on the image corrupted by one ImageNet-C corruption at one
        severity (0: clean), with each depth's map (method "none": predictions only); returns the corrupted
        crop (PNG, what the models saw) and the JSON."""
        live = run_live(image, models, corruption, severity, method, None, 0, progress)
        crop, *_ = render_live(live)
        return crop, live.to_json()

    # --- sweep -------------------------------------------------------------------------------

    @gpu(cost=lambda image, models, corruptions, target, seed, progress=None: sweep_cost(image, models, corruptions))
    def sweep_events(image, models, corruptions, target, seed, progress) -> Iterator[SweepProgress | Sweep]:
        upload = require_image(image)
        yield from explorer.robustness_sweep(upload.path, list(models or ctx.depth_names),
                                             corruptions=corruption_list(corruptions), target=target or None,
                                             seed=int(seed or 0), progress=progress_fn(progress))

    def sweep_charts(sweep: Sweep, corruption: str | None) -> tuple[Any, Any]:
        heat = rplots.probability_heatmaps(sweep.models, sweep.corruptions, sweep.severities, sweep.clean_target_p,
                                           sweep.target_p, sweep.top1, sweep.labels, sweep.target_label, LABELS)
        c = sweep.corruptions.index(corruption) if corruption in sweep.corruptions else 0
        lines = rplots.severity_lines(sweep.models, sweep.severities, LABELS.get(sweep.corruptions[c]),
                                      sweep.clean_target_p, sweep.target_p[:, c], sweep.clean_top1, sweep.top1[:, c],
                                      sweep.labels, sweep.target_label)
        return heat, lines

    def breaking_table(sweep: Sweep) -> Any:
        return gr.Dataframe(value=breaking_rows(sweep), headers=["corruption", *sweep.models])

    def sweep_files(sweep: Sweep) -> list[str]:
        folder = new_output_folder(ctx.outputs_dir)
        path, js = folder / "robustness-sweep.csv", folder / "robustness-sweep.json"
        path.write_text(sweep_csv(sweep), encoding="utf-8")
        js.write_text(json.dumps(sweep.to_json()), encoding="utf-8")
        return [str(path), str(js)]

    @user_errors
    def ui_sweep(image, models, corruption, target, seed, progress=gr.Progress()):
        # A generator that yields between batches: Stop cancels the event, gradio closes it at its
        # next yield, and closing the stream ends the work. Partial results stay after a Stop.
        text = ""
        for event in sweep_events(image, models, None, target, seed, progress):
            if isinstance(event, SweepProgress):
                # The message says what runs; the corruption is named only when it does not (a batch
                # can mix corruptions: "the clean crop (… Impulse noise …)" misnamed one).
                running = LABELS.get(event.corruption or "")
                what = event.message if not running or running in event.message else f"{running}: {event.message}"
                yield f"*Running: {what}*\n\n{text}", *[gr.skip()] * 5
            elif isinstance(event, Sweep):
                text = sweep_markdown(event, corruption)
                heat, lines = sweep_charts(event, corruption)
                files = gr.skip() if event.partial else sweep_files(event)
                yield text, heat, lines, breaking_table(event), files, event

    @runs_no_model
    @user_errors
    def ui_lines(sweep: Sweep | None, corruption: str):
        """The chosen corruption's curves (and sentence) from the last sweep: no model runs."""
        if sweep is None:
            return gr.skip(), gr.skip()
        return sweep_markdown(sweep, corruption), sweep_charts(sweep, corruption)[1]

    @user_errors
    def api_sweep(image, models, corruptions, progress=gr.Progress()):
        """Every chosen corruption (none: all 19) x severity 1-5 x depth (none: all five) on the image,
        seed 0, the class most depths pick on the clean crop; streams partial results. Returns the
        sweep's JSON (target probability, top-1, breaking points, the sentence) and a CSV of every cell."""
        for event in sweep_events(image, models, corruptions, None, 0, progress):
            if isinstance(event, Sweep):
                yield event.to_json(), (gr.skip() if event.partial else sweep_files(event)[0])

    # --- a folder ----------------------------------------------------------------------------

    @gpu(cost=lambda files, labels_csv, models, corruptions, severities, seed, progress=None, partial_every_s=None:
         folder_cost(files, labels_csv, models, corruptions, severities))
    def folder_events(files, labels_csv, models, corruptions, severities, seed, progress,
                      partial_every_s: float | None = None) -> Iterator[Any]:
        paths, csv_path = uploads(files, labels_csv)
        yield from explorer.robustness_stream(paths, list(models or ctx.depth_names),
                                              corruptions=corruption_list(corruptions),
                                              severities=[int(s) for s in severities] if severities else None,
                                              names=[p.name for p in paths], labels_csv=csv_path, seed=int(seed or 0),
                                              max_images=ctx.max_batch_images, progress=progress,
                                              partial_every_s=partial_every_s)

    def folder_lines(samples: list[SampleResult], models: tuple[str, ...], labels: tuple[str, ...]) -> str:
        return "".join(json.dumps(rec) + "\n" for s in samples for rec in s.records(models, labels))

    def folder_files(summary: FolderSummary, samples: list[SampleResult]) -> list[str]:
        folder = new_output_folder(ctx.outputs_dir)
        lines, js = folder / "robustness-predictions.jsonl", folder / "robustness-summary.json"
        # As the CLI's --json prints them: one line per prediction, then {"summary": ...}.
        lines.write_text(folder_lines(samples, summary.models, tuple(imagenet_labels()))
                         + json.dumps({"summary": summary.to_json()}) + "\n", encoding="utf-8")
        js.write_text(json.dumps(summary.to_json()), encoding="utf-8")
        return [str(lines), str(js)]

    def render_folder(s: FolderSummary) -> tuple[Any, ...]:
        if not s.labelled:  # only dashes otherwise: show how often the top-1 changed, as the CLI does
            return (folder_markdown(s), changed_summary(s), changed_rows(s),
                    None if s.changed is None else rplots.changed_lines(s.models, s.severities, s.changed,
                                                                         s.corruptions))
        return (folder_markdown(s), gr.Dataframe(value=summary_rows(s), headers=summary_headers(s)),
                gr.Dataframe(value=ce_rows(s), headers=["corruption", *s.models], label=CE_LABEL),
                rplots.accuracy_lines(s.models, s.severities, s.clean_accuracy, s.accuracy, s.corruptions))

    def ui_folder(files, labels_csv, models, corruptions, severities, seed, progress=gr.Progress()):
        samples: list[SampleResult] = []
        events = folder_events(files, labels_csv, models, corruptions, severities, seed,
                               progress_fn(progress), PARTIAL_S)
        try:
            for event in events:
                if isinstance(event, SampleResult):
                    samples.append(event)
                elif isinstance(event, Progress):
                    yield event.message, *[gr.skip()] * 4
                elif isinstance(event, FolderSummary):
                    out = render_folder(event)
                    yield (*out, gr.skip() if event.partial else folder_files(event, samples))
        except ZooError as e:
            raise gr.Error(str(e), print_exception=False) from None
        finally:
            events.close()

    @user_errors
    def api_robustness(files, models, corruptions, progress=gr.Progress()):
        """Many images (or one .zip, labels from its folder names as in /batch) under the chosen ImageNet-C
        corruptions (none: all 19) at severities 1-5, seed 0, through the chosen depths (none: all five).
        Returns the summary (accuracy per model, corruption and severity; CE and mCE relative to the
        shallowest depth and, for ImageNet labels, to AlexNet) and a JSON-lines file of every prediction."""
        samples: list[SampleResult] = []
        summary = None
        for event in folder_events(files, None, models, corruptions, None, 0, progress_fn(progress)):
            if isinstance(event, SampleResult):
                samples.append(event)
            elif isinstance(event, FolderSummary):
                summary = event
        assert summary is not None and not summary.partial
        return summary.to_json(), folder_files(summary, samples)[0]

    @runs_no_model
    def ui_live_estimate(models, corruption, severity, method) -> str:
        try:
            return fmt.estimate_markdown(live_cost(None, models, corruption, severity, method), explorer.device,
                                         ctx.guard.limits)
        except ZooError as e:
            return str(e)

    @runs_no_model
    def ui_sweep_estimate(models) -> str:
        try:
            return fmt.estimate_markdown(sweep_cost(None, models), explorer.device, ctx.guard.limits)
        except ZooError as e:
            return str(e)

    @runs_no_model
    def ui_folder_estimate(files, models, corruptions, severities) -> str:
        if not files:
            return ("Cost: per image and depth, one forward for the clean crop and one per corruption and severity. "
                    "Pick the images to see the total.")
        try:
            return fmt.batch_estimate_markdown(folder_cost(files, None, models, corruptions, severities),
                                               explorer.device, ctx.guard.limits)
        except ZooError as e:
            return str(e)
        except gr.Error as e:
            return str(e.message)

    # --- the page ----------------------------------------------------------------------------

    with gr.Accordion("How to read it, and what the paper found", open=False):
        gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = safe_image_input(label="Image", elem_id="robust-image", height=260)
            gr.Examples([[str(EXAMPLES / n)] for n in ("chelsea.png", "coffee.png", "rocket.jpg")], inputs=[image])
            models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Depths", elem_id="robust-models")
            with gr.Row():
                corruption = gr.Dropdown(CORRUPTION_CHOICES, value=DEFAULT_CORRUPTION, label="Corruption",
                                         elem_id="robust-corruption", min_width=140)
                severity = gr.Slider(0, max(SEVERITIES), value=DEFAULT_SEVERITY, step=1,
                                     label="Severity (0 = clean)", elem_id="robust-severity", min_width=140)
            # One per row: side by side, the method's name was cut ("CAM (global average poo").
            method = gr.Dropdown([("No map (predictions only)", NO_MAP), *ctx.method_choices], value="cam",
                                 label="Map method", elem_id="robust-method", min_width=140)
            target = gr.Dropdown([""] + ctx.class_choices, value="", allow_custom_value=True, filterable=True,
                                 label="Class (blank: most depths' clean top-1)", elem_id="robust-target",
                                 min_width=140)
            seed = gr.Number(0, precision=0, minimum=0, maximum=2 ** 31 - 1, label="Seed of the random corruptions",
                             elem_id="robust-seed")
            with gr.Row():
                live_go = gr.Button("Show", variant="primary", elem_id="robust-live-run", min_width=80)
                live_stop = gr.Button("Stop", variant="stop", elem_id="robust-live-stop", min_width=80)
            live_estimate = gr.Markdown(elem_id="robust-live-estimate", elem_classes="rde-estimate")
        with gr.Column(scale=2, min_width=300):
            live_info = gr.Markdown(elem_id="robust-live-info")
            live_crop = gr.Image(label="The corrupted crop the models saw", format="png", min_width=240,
                                 elem_id="robust-crop", elem_classes="rde-when-filled", height=260)
            # The column's whole width: beside the crop, p(class) lay past the page's edge at 1400 px.
            live_table = gr.Dataframe(headers=LIVE_HEADERS, label="Each depth on this crop", interactive=False,
                                      wrap=True, pinned_columns=1, elem_id="robust-live-table",
                                      column_widths=LIVE_WIDTHS)
            live_gallery = gr.Gallery(label="Each depth's map on the corrupted crop", columns=5, height="auto",
                                      object_fit="contain", allow_preview=False, elem_id="robust-gallery",
                                      elem_classes="rde-when-filled")
    gr.Markdown("### Sweep: every corruption × severity × depth")
    with gr.Row():
        sweep_go = gr.Button("Sweep", variant="primary", elem_id="robust-sweep-run", min_width=80)
        sweep_stop = gr.Button("Stop", variant="stop", elem_id="robust-sweep-stop", min_width=80)
    sweep_estimate = gr.Markdown(elem_id="robust-sweep-estimate", elem_classes="rde-estimate")
    sweep_status = gr.Markdown(elem_id="robust-sweep-status")
    heatmap = gr.Plot(label="p(class) per corruption and severity", show_label=False, elem_id="robust-heatmap",
                      elem_classes="rde-when-filled")
    with gr.Row():
        lines = gr.Plot(label="p(class) against severity", show_label=False, elem_id="robust-lines",
                        elem_classes="rde-when-filled", min_width=300)
        with gr.Column(min_width=300):
            breaking = gr.Dataframe(headers=["corruption", *ctx.depth_names], interactive=False, pinned_columns=1,
                                    label="Breaking point: the lowest severity at which each depth's top-1 changed",
                                    elem_id="robust-breaking", max_height=520)
            sweep_downloads = gr.File(label="The sweep: CSV and JSON", file_count="multiple", interactive=False,
                                      elem_id="robust-sweep-downloads", elem_classes="rde-when-filled")
    sweep_state = gr.State()

    gr.Markdown("### A folder: accuracy, CE and mCE per depth")
    gr.Markdown(f"Up to {ctx.max_batch_images} images, as in Batch: several files or one `.zip`, labels from its "
                "folder names (`tabby`, `n02123045`) or a CSV of `file,label` rows. Every image costs, per depth, "
                "one forward for the clean crop and one per corruption and severity.")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            f_files = InputFiles(label="Images, or one .zip", file_count="multiple", type="filepath",
                                 elem_id="robust-files", height=160)
            f_labels = InputFiles(label="Labels CSV (optional): file,label", file_count="single",
                                  type="filepath", file_types=[".csv", ".txt"], elem_id="robust-labels")
            f_models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Depths",
                                        elem_id="robust-folder-models")
            f_corruptions = gr.Dropdown(CORRUPTION_CHOICES, value=list(DEFAULT_FOLDER_CORRUPTIONS), multiselect=True,
                                        label="Corruptions (default: the paper's 15)", elem_id="robust-folder-corruptions")
            f_severities = gr.CheckboxGroup(list(SEVERITIES), value=list(SEVERITIES), label="Severities",
                                            elem_id="robust-folder-severities")
            f_seed = gr.Number(0, precision=0, minimum=0, maximum=2 ** 31 - 1, label="Seed", elem_id="robust-folder-seed")
            with gr.Row():
                f_go = gr.Button("Run", variant="primary", elem_id="robust-folder-run", min_width=80)
                f_stop = gr.Button("Stop", variant="stop", elem_id="robust-folder-stop", min_width=80)
            f_estimate = gr.Markdown(elem_id="robust-folder-estimate", elem_classes="rde-estimate")
            f_downloads = gr.File(label="Every prediction (JSON lines) and the summary", file_count="multiple",
                                  interactive=False, elem_id="robust-folder-downloads", elem_classes="rde-when-filled")
        with gr.Column(scale=2, min_width=300):
            f_status = gr.Markdown(elem_id="robust-folder-status")
            f_summary = gr.Dataframe(headers=["model", "clean top-1", "mean top-1 corrupted", "mCE", "mCE (÷ AlexNet)"],
                                     label="Per depth", interactive=False, elem_id="robust-folder-summary")
            f_chart = gr.Plot(label="Accuracy against severity", show_label=False, elem_id="robust-folder-chart",
                              elem_classes="rde-when-filled")
            f_ce = gr.Dataframe(headers=["corruption", *ctx.depth_names], interactive=False, pinned_columns=1,
                                label=CE_LABEL,
                                elem_id="robust-folder-ce", max_height=520)

    # --- events ------------------------------------------------------------------------------

    live_ins = [image, models, corruption, severity, method, target, seed]
    live_outs = [live_crop, live_gallery, live_table, live_info]
    # Show, or letting go of the slider, or picking another corruption: the live view follows.
    live_triggers = functools.partial(gr.on, [live_go.click, severity.release, corruption.input])
    live_run = long_event(ctx.guard, live_triggers, ui_live, live_ins, live_outs, cost=live_cost, message=live_info,
                          stop=live_stop, what="This view", api_visibility="private", trigger_mode="always_last")
    # The preview: through the gate like every event, at no model cost (cost None).
    long_event(ctx.guard, functools.partial(gr.on, [corruption.change, severity.change, image.change]), ui_preview,
               [image, models, corruption, severity, seed], [live_crop], cost=None, what="The preview",
               api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    live_cost_ins = [models, corruption, severity, method]
    for ctl in live_cost_ins:
        ctl.change(ui_live_estimate, live_cost_ins, [live_estimate], api_visibility="private", show_progress="hidden")
    live_run.then(ui_live_estimate, live_cost_ins, [live_estimate], api_visibility="private", show_progress="hidden")

    sweep_outs = [sweep_status, heatmap, lines, breaking, sweep_downloads, sweep_state]
    sweep_run = long_event(ctx.guard, sweep_go.click, ui_sweep, [image, models, corruption, target, seed], sweep_outs,
                           cost=lambda image, models, *_: sweep_cost(image, models), message=sweep_status,
                           stop=sweep_stop, what="This sweep",
                           api_visibility="private",
                           stopped="The charts show the corrupted crops scored before Stop.")
    corruption.change(ui_lines, [sweep_state, corruption], [sweep_status, lines], api_visibility="private",
                      show_progress="hidden")
    models.change(ui_sweep_estimate, [models], [sweep_estimate], api_visibility="private", show_progress="hidden")
    sweep_run.then(ui_sweep_estimate, [models], [sweep_estimate], api_visibility="private", show_progress="hidden")

    folder_ins = [f_files, f_labels, f_models, f_corruptions, f_severities, f_seed]
    folder_outs = [f_status, f_summary, f_ce, f_chart, f_downloads]
    long_event(ctx.guard, f_go.click, ui_folder, folder_ins, folder_outs, cost=folder_cost,
               message=f_status, stop=f_stop, what="This run", api_visibility="private",
               stopped="The results shown are those of the images finished before Stop.")
    f_cost_ins = [f_files, f_models, f_corruptions, f_severities]
    for ctl in f_cost_ins:
        ctl.change(ui_folder_estimate, f_cost_ins, [f_estimate], api_visibility="private", show_progress="hidden")

    @runs_no_model
    def ui_estimates(models_, corruption_, severity_, method_, files_, f_models_, f_corruptions_, f_severities_):
        return (ui_live_estimate(models_, corruption_, severity_, method_), ui_sweep_estimate(models_),
                ui_folder_estimate(files_, f_models_, f_corruptions_, f_severities_))

    ctx.demo.load(ui_estimates, [*live_cost_ins, *f_cost_ins], [live_estimate, sweep_estimate, f_estimate],
                  api_visibility="private", show_progress="hidden")

    # --- public endpoints ----------------------------------------------------------------------
    api_corruption = gr.Textbox(value=DEFAULT_CORRUPTION, visible=False, label="corruption")
    api_corruptions = gr.Dropdown(CORRUPTION_CHOICES, value=[], multiselect=True, visible=False, label="corruptions")
    api_json = gr.JSON(visible=False)
    api_crop = gr.Image(visible=False, format="png")
    api_file = gr.File(visible=False)
    api_button = gr.Button(visible=False)
    long_event(ctx.guard, api_button.click, api_live, [image, models, api_corruption, severity, method],
               [api_crop, api_json], cost=live_cost, what="This view", api_name="robustness_live")
    api_sweep_button = gr.Button(visible=False)
    long_event(ctx.guard, api_sweep_button.click, api_sweep, [image, models, api_corruptions], [api_json, api_file],
               cost=sweep_cost, what="This sweep", api_name="robustness_sweep")
    api_folder_button = gr.Button(visible=False)
    long_event(ctx.guard, api_folder_button.click, api_robustness, [f_files, f_models, api_corruptions],
               [api_json, api_file], cost=lambda files, models=None, corruptions=None:
               folder_cost(files, None, models, corruptions), what="This run", api_name="robustness")

