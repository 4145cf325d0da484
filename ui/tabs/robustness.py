"""Robustness: which depth still sees the cat through fog, noise and JPEG (issue 19). Layout and wiring.

Three parts, each its own guarded event with its own estimate and Stop, each a request of
``zoo.features.robustness`` built by one function (for the handler and its cost): **Live**
(``live_request``: one corruption at one severity, every depth's answer and map on the crop),
**Sweep** (``sweep_request``: every corruption x severity x depth on the image, streamed) and
**a folder** (``folder_request``: accuracy, CE and mCE per depth). What the components show:
``ui/views/robustness.py``. Endpoints: ``/robustness(files, models, corruptions)``,
``/robustness_live(image, models, corruption, severity, method)``, ``/robustness_sweep(image,
models, corruptions)``.
"""

from __future__ import annotations

import functools
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr
import numpy as np

from zoo.batch import Progress
from zoo.errors import ZooError
from zoo.features import robustness as feature
from zoo.params import SEED_MAX
from zoo.render import save_png
from zoo.robustness import CORRUPTIONS, SEVERITIES
from zoo.robustness_folder import FolderSummary, SampleResult
from zoo.robustness_sweep import Live, Sweep, SweepProgress

from .. import format as fmt
from ..common import (Context, InputFiles, about, checked_file, gpu, image_with_examples, new_output_folder, progress_fn,
                      require_image, user_errors)
from ..guard import long_event, runs_no_model
from ..views import robustness as views

TITLE = "Robustness"
PARTIAL_S = 3.0  # seconds between a folder run's partial results in the page
DEFAULT_CORRUPTION = feature.DEFAULT_CORRUPTION
DEFAULT_SEVERITY = feature.DEFAULT_SEVERITY
DEFAULT_FOLDER_CORRUPTIONS = tuple(c.name for c in CORRUPTIONS if c.imagenet_c)  # the paper's 15 (its mCE)
CORRUPTION_CHOICES = [(c.label, c.name) for c in CORRUPTIONS]
NO_MAP = "none"  # the map dropdown's "predictions only"
# Fixed widths: sized by content, "p(class)" got a column narrower than its name; on a phone the table scrolls.
LIVE_WIDTHS = ["100px", "200px", "200px", "200px", "100px"]

# --- the requests: one function each, for the handler and its cost -----------------------------

def live_request(ctx: Context, image: Any, models: Any, corruption: Any = DEFAULT_CORRUPTION,
                 severity: Any = DEFAULT_SEVERITY, method: Any = None, target: Any = None,
                 seed: Any = 0) -> feature.LiveRequest:
    """``image``: an upload's path, or None for the estimate (which needs no image)."""
    return feature.LiveRequest.create(ctx.rt, image, list(models or ctx.depth_names),
                                      corruption or DEFAULT_CORRUPTION, severity,
                                      None if method in (None, "", NO_MAP) else method, target, seed or 0)


def sweep_request(ctx: Context, image: Any, models: Any, corruptions: Any = None, target: Any = None,
                  seed: Any = 0) -> feature.SweepRequest:
    return feature.SweepRequest.create(ctx.rt, image, list(models or ctx.depth_names), corruptions or None,
                                       None, target, seed or 0)


def uploads(files: Any, labels_csv: Any = None) -> tuple[list[Path], Path | None]:
    if not files:
        raise gr.Error("Upload some images, or one .zip of them, first.", print_exception=False)
    paths = [checked_file(f) for f in (files if isinstance(files, list) else [files])]
    return paths, checked_file(labels_csv) if labels_csv else None


def folder_request(ctx: Context, files: Any, labels_csv: Any = None, models: Any = None, corruptions: Any = None,
                   severities: Any = None, seed: Any = 0, partial_every_s: float | None = None) -> feature.Request:
    """Per image and depth: the clean crop and one forward per (corruption, severity); zips counted, not decoded."""
    paths, csv_path = uploads(files, labels_csv)
    return feature.Request.create(ctx.rt, paths, list(models or ctx.depth_names), corruptions or None,
                                  [int(s) for s in severities] if severities else None, seed or 0,
                                  names=[p.name for p in paths], labels_csv=csv_path,
                                  max_images=ctx.max_batch_images, partial_every_s=partial_every_s)


def live_cost(ctx: Context, image: Any = None, models: Any = None, corruption: Any = DEFAULT_CORRUPTION,
              severity: Any = DEFAULT_SEVERITY, method: Any = None, *_: Any) -> Any:
    return feature.estimate(ctx.rt, live_request(ctx, None, models, corruption, severity, method))


def sweep_cost(ctx: Context, image: Any = None, models: Any = None, corruptions: Any = None, *_: Any) -> Any:
    return feature.estimate(ctx.rt, sweep_request(ctx, None, models, corruptions))


def folder_cost(ctx: Context, files: Any, labels_csv: Any = None, models: Any = None, corruptions: Any = None,
                severities: Any = None, *_: Any) -> Any:
    return feature.estimate(ctx.rt, folder_request(ctx, files, labels_csv, models, corruptions, severities))


# --- the runs (on ZeroGPU, each asks for what its estimate says) ---------------------------------

def gpu_runs(ctx: Context) -> SimpleNamespace:
    """The model-running functions, as closures over ``ctx``: on ZeroGPU their arguments travel to
    a forked worker, so they are the request's own values only (the context stays here)."""

    @gpu(cost=lambda image, models, corruption, severity, method, target, seed, progress=None:
         live_cost(ctx, image, models, corruption, severity, method))
    def live_result(image, models, corruption, severity, method, target, seed, progress) -> Live:
        req = live_request(ctx, require_image(image).path, models, corruption, severity, method, target, seed)
        return feature.result(ctx.rt, req, progress_fn(progress))

    @gpu(cost=lambda image, models, corruptions, target, seed, progress=None: sweep_cost(ctx, image, models,
                                                                                        corruptions))
    def sweep_events(image, models, corruptions, target, seed, progress) -> Iterator[SweepProgress | Sweep]:
        upload = require_image(image)
        yield from feature.run(ctx.rt, sweep_request(ctx, upload.path, models, corruptions, target, seed),
                               progress_fn(progress))

    @gpu(cost=lambda files, labels_csv, models, corruptions, severities, seed, progress=None, partial_every_s=None:
         folder_cost(ctx, files, labels_csv, models, corruptions, severities))
    def folder_events(files, labels_csv, models, corruptions, severities, seed, progress,
                      partial_every_s: float | None = None) -> Iterator[Any]:
        req = folder_request(ctx, files, labels_csv, models, corruptions, severities, seed, partial_every_s)
        yield from feature.run(ctx.rt, req, progress)

    return SimpleNamespace(live_result=live_result, sweep_events=sweep_events, folder_events=folder_events)


# --- files and pictures a result leaves -----------------------------------------------------------

def folder_files(ctx: Context, summary: FolderSummary, samples: list[SampleResult]) -> list[str]:
    return views.folder_files(summary, samples, feature.labels_of(ctx.rt, summary.models),
                              new_output_folder(ctx.outputs_dir))


def render_folder(s: FolderSummary) -> tuple[Any, ...]:
    (rows, headers), (c_rows, c_headers, c_label), chart = views.folder_tables(s)
    return (views.folder_markdown(s), gr.Dataframe(value=rows, headers=headers),
            gr.Dataframe(value=c_rows, headers=c_headers, label=c_label), chart)


# --- the page ---------------------------------------------------------------------------------

def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    c = SimpleNamespace(**vars(_live_layout(ctx)), **vars(_sweep_layout(ctx)), **vars(_folder_layout(ctx)))
    runs = gpu_runs(ctx)
    live_cost_ins = _wire_live(ctx, c, runs)
    _wire_sweep(ctx, c, runs)
    f_cost_ins = _wire_folder(ctx, c, runs)

    @runs_no_model
    def ui_estimates(models_, corruption_, severity_, method_, files_, f_models_, f_corruptions_, f_severities_):
        return (ui_live_estimate(ctx, models_, corruption_, severity_, method_), ui_sweep_estimate(ctx, models_),
                ui_folder_estimate(ctx, files_, f_models_, f_corruptions_, f_severities_))

    ctx.demo.load(ui_estimates, [*live_cost_ins, *f_cost_ins], [c.live_estimate, c.sweep_estimate, c.f_estimate],
                  api_visibility="private", show_progress="hidden")
    _endpoints(ctx, c, runs)


def _live_layout(ctx: Context) -> SimpleNamespace:
    about("How to read it, and what the paper found", views.INTRO)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = image_with_examples("robust-image", ("chelsea.png", "coffee.png", "rocket.jpg"))
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
            seed = gr.Number(0, precision=0, minimum=0, maximum=SEED_MAX, label="Seed of the random corruptions",
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
            live_table = gr.Dataframe(headers=views.LIVE_HEADERS, label="Each depth on this crop", interactive=False,
                                      wrap=True, pinned_columns=1, elem_id="robust-live-table",
                                      column_widths=LIVE_WIDTHS)
            live_gallery = gr.Gallery(label="Each depth's map on the corrupted crop", columns=5, height="auto",
                                      object_fit="contain", allow_preview=False, elem_id="robust-gallery",
                                      elem_classes="rde-when-filled")
    return SimpleNamespace(image=image, models=models, corruption=corruption, severity=severity, method=method,
                           target=target, seed=seed, live_go=live_go, live_stop=live_stop,
                           live_estimate=live_estimate, live_info=live_info, live_crop=live_crop,
                           live_table=live_table, live_gallery=live_gallery)


def _sweep_layout(ctx: Context) -> SimpleNamespace:
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

    return SimpleNamespace(sweep_go=sweep_go, sweep_stop=sweep_stop, sweep_estimate=sweep_estimate,
                           sweep_status=sweep_status, heatmap=heatmap, lines=lines, breaking=breaking,
                           sweep_downloads=sweep_downloads, sweep_state=sweep_state)


def _folder_layout(ctx: Context) -> SimpleNamespace:
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
            f_seed = gr.Number(0, precision=0, minimum=0, maximum=SEED_MAX, label="Seed", elem_id="robust-folder-seed")
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
                                label=views.CE_LABEL,
                                elem_id="robust-folder-ce", max_height=520)

    return SimpleNamespace(f_files=f_files, f_labels=f_labels, f_models=f_models, f_corruptions=f_corruptions,
                           f_severities=f_severities, f_seed=f_seed, f_go=f_go, f_stop=f_stop, f_estimate=f_estimate,
                           f_downloads=f_downloads, f_status=f_status, f_summary=f_summary, f_chart=f_chart, f_ce=f_ce)


# --- estimates under the buttons (no model runs) ----------------------------------------------------

def estimate_text(ctx: Context, cost: Any, *args: Any, batch: bool = False) -> str:
    """The estimate under a button (``cost(ctx, *args)``), or what is wrong with the settings."""
    try:
        say = fmt.batch_estimate_markdown if batch else fmt.estimate_markdown
        return say(cost(ctx, *args), ctx.rt.device, ctx.guard.limits)
    except ZooError as e:
        return str(e)
    except gr.Error as e:
        return str(e.message)


def ui_live_estimate(ctx: Context, models, corruption, severity, method) -> str:
    return estimate_text(ctx, live_cost, None, models, corruption, severity, method)


def ui_sweep_estimate(ctx: Context, models) -> str:
    return estimate_text(ctx, sweep_cost, None, models)


def ui_folder_estimate(ctx: Context, files, models, corruptions, severities) -> str:
    if not files:
        return views.FOLDER_COST
    return estimate_text(ctx, folder_cost, files, None, models, corruptions, severities, batch=True)


# --- events ---------------------------------------------------------------------------------------

def _wire_live(ctx: Context, c: SimpleNamespace, runs: SimpleNamespace) -> list:
    @user_errors
    def ui_live(image, models, corruption, severity, method, target, seed, progress=gr.Progress()):
        live = runs.live_result(image, models, corruption, severity, method, target, seed, progress)
        crop, gallery = views.live_pictures(live, new_output_folder(ctx.outputs_dir))
        # At least three columns: a lone map would fill the row at 1400 px.
        return (crop, gr.Gallery(value=gallery, columns=max(3, len(gallery))),
                gr.Dataframe(value=views.live_rows(live), headers=views.LIVE_HEADERS), views.live_info(live))

    @user_errors
    def ui_preview(image, models, corruption, severity, seed):
        """The corrupted crop as soon as the corruption or severity changes: no model runs."""
        if image is None:
            return gr.skip()
        crop = feature.preview(ctx.rt, live_request(ctx, image.path, models, corruption, severity, seed=seed))
        path = new_output_folder(ctx.outputs_dir) / f"preview-{corruption}-{int(severity)}.png"
        return str(save_png(np.asarray(crop.convert("RGB")), path))

    @runs_no_model
    def estimate(models, corruption, severity, method) -> str:
        return ui_live_estimate(ctx, models, corruption, severity, method)

    ins = [c.image, c.models, c.corruption, c.severity, c.method, c.target, c.seed]
    # Show, or letting go of the slider, or picking another corruption: the live view follows.
    triggers = functools.partial(gr.on, [c.live_go.click, c.severity.release, c.corruption.input])
    run = long_event(ctx.guard, triggers, ui_live, ins, [c.live_crop, c.live_gallery, c.live_table, c.live_info],
                     cost=functools.partial(live_cost, ctx), message=c.live_info, stop=c.live_stop, what="This view",
                     api_visibility="private", trigger_mode="always_last")
    # The preview: through the gate like every event, at no model cost (cost None).
    long_event(ctx.guard, functools.partial(gr.on, [c.corruption.change, c.severity.change, c.image.change]),
               ui_preview, [c.image, c.models, c.corruption, c.severity, c.seed], [c.live_crop], cost=None,
               what="The preview", api_visibility="private", trigger_mode="always_last", show_progress="hidden")
    cost_ins = [c.models, c.corruption, c.severity, c.method]
    for ctl in cost_ins:
        ctl.change(estimate, cost_ins, [c.live_estimate], api_visibility="private", show_progress="hidden")
    run.then(estimate, cost_ins, [c.live_estimate], api_visibility="private", show_progress="hidden")
    return cost_ins


def _wire_sweep(ctx: Context, c: SimpleNamespace, runs: SimpleNamespace) -> None:
    @user_errors
    def ui_sweep(image, models, corruption, target, seed, progress=gr.Progress()):
        # A generator that yields between batches: Stop cancels the event, gradio closes it at its
        # next yield, and closing the stream ends the work. Partial results stay after a Stop.
        text = ""
        for event in runs.sweep_events(image, models, None, target, seed, progress):
            if isinstance(event, SweepProgress):
                yield views.running_text(event, text), *[gr.skip()] * 5
            elif isinstance(event, Sweep):
                text = views.sweep_markdown(event, corruption)
                heat, lines = views.sweep_charts(event, corruption)
                files = gr.skip() if event.partial else views.sweep_files(event, new_output_folder(ctx.outputs_dir))
                yield (text, heat, lines, gr.Dataframe(value=views.breaking_rows(event),
                                                       headers=["corruption", *event.models]), files, event)

    @runs_no_model
    @user_errors
    def ui_lines(sweep: Sweep | None, corruption: str):
        """The chosen corruption's curves (and sentence) from the last sweep: no model runs."""
        if sweep is None:
            return gr.skip(), gr.skip()
        return views.sweep_markdown(sweep, corruption), views.sweep_charts(sweep, corruption)[1]

    @runs_no_model
    def estimate(models) -> str:
        return ui_sweep_estimate(ctx, models)

    outs = [c.sweep_status, c.heatmap, c.lines, c.breaking, c.sweep_downloads, c.sweep_state]
    run = long_event(ctx.guard, c.sweep_go.click, ui_sweep, [c.image, c.models, c.corruption, c.target, c.seed], outs,
                     cost=lambda image, models, *_: sweep_cost(ctx, image, models), message=c.sweep_status,
                     stop=c.sweep_stop, what="This sweep", api_visibility="private",
                     stopped="The charts show the corrupted crops scored before Stop.")
    c.corruption.change(ui_lines, [c.sweep_state, c.corruption], [c.sweep_status, c.lines], api_visibility="private",
                        show_progress="hidden")
    c.models.change(estimate, [c.models], [c.sweep_estimate], api_visibility="private", show_progress="hidden")
    run.then(estimate, [c.models], [c.sweep_estimate], api_visibility="private", show_progress="hidden")


def _wire_folder(ctx: Context, c: SimpleNamespace, runs: SimpleNamespace) -> list:
    @user_errors
    def ui_folder(files, labels_csv, models, corruptions, severities, seed, progress=gr.Progress()):
        samples: list[SampleResult] = []
        # closing: a Stop closes this generator; the run it iterates ends at once too.
        with closing(runs.folder_events(files, labels_csv, models, corruptions, severities, seed,
                                   progress_fn(progress), PARTIAL_S)) as events:
            for event in events:
                if isinstance(event, SampleResult):
                    samples.append(event)
                elif isinstance(event, Progress):
                    yield event.message, *[gr.skip()] * 4
                elif isinstance(event, FolderSummary):
                    files_out = gr.skip() if event.partial else folder_files(ctx, event, samples)
                    yield (*render_folder(event), files_out)

    @runs_no_model
    def estimate(files, models, corruptions, severities) -> str:
        return ui_folder_estimate(ctx, files, models, corruptions, severities)

    ins = [c.f_files, c.f_labels, c.f_models, c.f_corruptions, c.f_severities, c.f_seed]
    long_event(ctx.guard, c.f_go.click, ui_folder, ins, [c.f_status, c.f_summary, c.f_ce, c.f_chart, c.f_downloads],
               cost=functools.partial(folder_cost, ctx), message=c.f_status, stop=c.f_stop, what="This run",
               api_visibility="private", stopped="The results shown are those of the images finished before Stop.")
    cost_ins = [c.f_files, c.f_models, c.f_corruptions, c.f_severities]
    for ctl in cost_ins:
        ctl.change(estimate, cost_ins, [c.f_estimate], api_visibility="private", show_progress="hidden")
    return cost_ins


# --- public endpoints ------------------------------------------------------------------------------

def _endpoints(ctx: Context, c: SimpleNamespace, runs: SimpleNamespace) -> None:
    @user_errors
    def api_live(image, models, corruption, severity, method, progress=gr.Progress()):
        """Every chosen depth (none: all five) on the image corrupted by one ImageNet-C corruption at one
        severity (0: clean), with each depth's map (method "none": predictions only); returns the corrupted
        crop (PNG, what the models saw) and the JSON."""
        live = runs.live_result(image, models, corruption, severity, method, None, 0, progress)
        return views.live_pictures(live, new_output_folder(ctx.outputs_dir))[0], live.to_json()

    @user_errors
    def api_sweep(image, models, corruptions, progress=gr.Progress()):
        """Every chosen corruption (none: all 19) x severity 1-5 x depth (none: all five) on the image,
        seed 0, the class most depths pick on the clean crop; streams partial results. Returns the
        sweep's JSON (target probability, top-1, breaking points, the sentence) and a CSV of every cell."""
        for event in runs.sweep_events(image, models, corruptions, None, 0, progress):
            if isinstance(event, Sweep):
                files = gr.skip() if event.partial else views.sweep_files(event, new_output_folder(ctx.outputs_dir))
                yield event.to_json(), files if event.partial else files[0]

    @user_errors
    def api_robustness(files, models, corruptions, progress=gr.Progress()):
        """Many images (or one .zip, labels from its folder names as in /batch) under the chosen ImageNet-C
        corruptions (none: all 19) at severities 1-5, seed 0, through the chosen depths (none: all five).
        Returns {"summary": ...} (accuracy per model, corruption and severity; CE and mCE relative to the
        shallowest depth and, for ImageNet labels, to AlexNet) and a JSON-lines file of every prediction."""
        events = list(runs.folder_events(files, None, models, corruptions, None, 0, progress_fn(progress)))
        summary = events[-1]
        assert isinstance(summary, FolderSummary) and not summary.partial
        files = folder_files(ctx, summary, [e for e in events if isinstance(e, SampleResult)])
        return feature.folder_json(summary), files[0]

    corruption = gr.Textbox(value=DEFAULT_CORRUPTION, visible=False, label="corruption")
    corruptions = gr.Dropdown(CORRUPTION_CHOICES, value=[], multiselect=True, visible=False, label="corruptions")
    out_json, out_crop, out_file = gr.JSON(visible=False), gr.Image(visible=False, format="png"), gr.File(visible=False)
    buttons = [gr.Button(visible=False) for _ in range(3)]
    long_event(ctx.guard, buttons[0].click, api_live, [c.image, c.models, corruption, c.severity, c.method],
               [out_crop, out_json], cost=functools.partial(live_cost, ctx), what="This view",
               api_name="robustness_live")
    long_event(ctx.guard, buttons[1].click, api_sweep, [c.image, c.models, corruptions], [out_json, out_file],
               cost=functools.partial(sweep_cost, ctx), what="This sweep", api_name="robustness_sweep")
    long_event(ctx.guard, buttons[2].click, api_robustness, [c.f_files, c.f_models, corruptions], [out_json, out_file],
               cost=lambda files, models=None, corruptions=None: folder_cost(ctx, files, None, models, corruptions),
               what="This run", api_name="robustness")
