"""Batch: many images (or one .zip) through every chosen depth; the ``/batch`` endpoint.

Accuracy when labels are known (folder names inside a zip, or a ``file,label`` CSV), a
depth x depth agreement heatmap, "where depth mattered" (a click opens the image in
Compare depths with its maps), CSV and JSON of every prediction, and "Which depth should I
ship?" (``zoo.decision``). Layout and wiring only: the run is ``zoo.features.batch``, what
the components show is ``ui.views.batch``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import gradio as gr

from zoo.batch import BatchResult, Progress, ZipMember, read_source
from zoo.errors import ZooError
from zoo.features import batch as feature
from zoo.features import last
from zoo.images import load_image

from .. import format as fmt
from .. import charts
from ..common import Context, InputFiles, checked_file, gpu, new_output_folder, press_js, progress_fn, user_errors
from ..guard import long_event, runs_no_model
from ..views import batch as view

TITLE = "Batch"
THUMB = 56  # px: table thumbnails, kept per image while the batch runs
PREVIEW = 256  # px: "where depth mattered" pictures
PARTIAL_S = 3.0  # seconds between partial results in the page
COMPARE_TAB = "Compare depths"  # the Compare tab's id (build_app gives each tab its TITLE as id)
N_OUT = 13  # the run's outputs (``outputs`` in ``build``)


def save_picture(source: Path | ZipMember, path: Path, size: int | None = None) -> str:
    """One batch image again (decoded safely), as PNG; ``size`` bounds the longer side."""
    image = load_image(read_source(source)).image
    if size:
        image.thumbnail((size, size))
    image.save(path, format="PNG")
    return str(path)


def request(ctx: Context, files: Any, labels_csv: Any, models: list[str] | None, max_ms: Any = None,
            partial_every_s: float | None = None, thumbnails: int = THUMB) -> feature.Request:
    """The run's request from the tab's (or the endpoint's) inputs: the one place they are read."""
    if not files:
        raise gr.Error("Upload some images, or one .zip of them, first.", print_exception=False)
    paths = [checked_file(f) for f in (files if isinstance(files, list) else [files])]
    # Uploads keep their original names as the last part of gradio's path.
    return feature.Request.create(ctx.rt, paths, list(models or ctx.depth_names), names=[p.name for p in paths],
                                  labels_csv=checked_file(labels_csv) if labels_csv else None,
                                  max_images=ctx.max_batch_images, thumbnails=thumbnails,
                                  partial_every_s=partial_every_s, decide=True,
                                  max_ms=max_ms if max_ms else None)


def table(result: BatchResult) -> Any:
    hs = view.headers(result)
    return gr.Dataframe(value=view.rows(result), headers=hs, datatype=["markdown"] + ["str"] * (len(hs) - 1),
                        column_widths=[f"{THUMB + 16}px"] + ["auto"] * (len(hs) - 1))


def decision_outputs(result: BatchResult) -> tuple[Any, ...]:
    """The "Which depth should I ship?" section's components, from the finished run's decision."""
    d = result.decision
    if d is None:
        return (gr.skip(),) * 6
    return (view.decision_markdown(d), view.decision_table(d), view.published_table(d), view.accuracy_latency(d),
            view.reliability(d), view.kappa_heatmap(d))


def render(ctx: Context, result: BatchResult) -> tuple[Any, ...]:
    """Every output of a run: a partial result fills the tables and heatmap only."""
    heatmap = charts.agreement_heatmap(result.models, result.agreement)
    if result.partial:  # the images done so far: no files to write
        return (view.markdown(result), view.model_table(result), heatmap, table(result),
                *(gr.skip(),) * (N_OUT - 4))
    folder = new_output_folder(ctx.outputs_dir)
    csv_path, json_path = folder / "batch-predictions.csv", folder / "batch-predictions.json"
    csv_path.write_text(result.to_csv(), encoding="utf-8")
    json_path.write_text(json.dumps(result.export_json()), encoding="utf-8")
    gallery = [(save_picture(m.image.source, folder / f"mattered-{i}.png", PREVIEW),
                view.mattered_caption(result, m)) for i, m in enumerate(result.mattered)]
    return (view.markdown(result), view.model_table(result), heatmap, table(result), gallery,
            [str(csv_path), str(json_path), charts.csv_file(heatmap, folder)], [m.image.source for m in result.mattered],
            *decision_outputs(result))


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    rt = ctx.rt

    @gpu
    def run_stream(req: feature.Request, progress: Any) -> Iterator[Any]:
        yield from feature.run(rt, req, progress)

    def cost(files: Any, labels_csv: Any = None, models: list[str] | None = None, max_ms: Any = None):
        """One forward per image and model, and the decision's; the images are counted, not decoded."""
        return feature.estimate(rt, request(ctx, files, labels_csv, models, max_ms))

    @user_errors
    def ui_run(files, labels_csv, models, max_ms, progress=gr.Progress()):
        # A generator that yields before every forward: Stop cancels the event, gradio then
        # closes this generator at its next yield, and closing the stream ends the work (a
        # plain function would go on running in its worker thread).
        # Partial results every few seconds: after a Stop the page keeps what was done.
        events = run_stream(request(ctx, files, labels_csv, models, max_ms, PARTIAL_S), progress_fn(progress))
        try:
            for event in events:
                if isinstance(event, Progress):
                    yield (event.message, *[gr.skip()] * (N_OUT - 1))
                elif isinstance(event, BatchResult):
                    yield render(ctx, event)
        finally:
            events.close()

    @user_errors
    def api_batch(files, models, progress=gr.Progress()):
        """Classify many images (or one .zip) with the chosen depths (none: all five); returns the
        run's JSON (summary: accuracy per depth when the zip's folders name classes, agreement
        matrix, where depth mattered, skipped files; decision: which depth to ship, when labelled)
        and every prediction as CSV."""
        result = last(run_stream(request(ctx, files, None, models, thumbnails=0), progress_fn(progress)))
        path = new_output_folder(ctx.outputs_dir) / "batch-predictions.csv"
        path.write_text(result.to_csv(), encoding="utf-8")
        return result.to_json(), str(path)

    c = layout(ctx)
    outputs = [c.status, c.accuracy, c.heatmap, c.table, c.gallery, c.downloads, c.state, c.decision, c.decision_table,
               c.published, c.tradeoff, c.reliability, c.kappa]
    assert len(outputs) == N_OUT
    long_event(ctx.guard, c.run.click, ui_run, [c.files, c.labels, c.models, c.max_ms], outputs, cost=cost,
               message=c.status, stop=c.stop, what="This batch", api_visibility="private",
               stopped="The results shown are those of the images finished before Stop.")

    estimates(ctx, c, cost)
    open_in_compare(ctx, c)

    # The public endpoint /batch(files, models): the run's JSON and a CSV of every prediction.
    b_json = gr.JSON(visible=False)
    b_csv = gr.File(visible=False)
    b_api = gr.Button(visible=False)
    long_event(ctx.guard, b_api.click, api_batch, [c.files, c.models], [b_json, b_csv],
               cost=lambda files, models=None: cost(files, None, models), what="This batch", api_name="batch")


def estimates(ctx: Context, c: SimpleNamespace, cost: Any) -> None:
    """The cost under Run, as files and models are picked."""
    rt = ctx.rt

    @runs_no_model
    def ui_estimate(files, models) -> str:
        """What Run will cost here: the files are counted (a zip's members listed, nothing decoded)."""
        if not files:
            return fmt.batch_estimate_markdown(None, rt.device)
        try:
            est = cost(files, None, models)
        except ZooError as e:  # too many images, an unsafe zip: say so before Run is pressed
            return str(e)
        except gr.Error as e:
            return str(e.message)
        return fmt.batch_estimate_markdown(est, rt.device, ctx.guard.limits)

    # Not after a run: a batch records no forward times, so its estimate would not change.
    for event in (c.files.change, c.models.change, ctx.demo.load):
        event(ui_estimate, [c.files, c.models], [c.estimate], api_visibility="private", show_progress="hidden")


def open_in_compare(ctx: Context, c: SimpleNamespace) -> None:
    """A click on a "where depth mattered" picture opens it in Compare depths."""

    @runs_no_model
    @user_errors
    def ui_open(sources: list[Path | ZipMember] | None, evt: gr.SelectData):
        """A "where depth mattered" image into Compare depths, which then runs on it."""
        if not sources or evt.index is None or not 0 <= int(evt.index) < len(sources):
            return gr.skip(), gr.skip()
        folder = new_output_folder(ctx.outputs_dir)
        return save_picture(sources[int(evt.index)], folder / "compare.png"), gr.Tabs(selected=COMPARE_TAB)

    compare_image, tabs = ctx.components.get("compare.image"), ctx.components.get("tabs")
    if compare_image is not None and tabs is not None:
        # Set the image, switch tab, then press Compare there (its own event, its own inputs).
        # Gradio renders a tab when it is first shown, so wait for the button to exist.
        c.gallery.select(ui_open, [c.state], [compare_image, tabs], api_visibility="private").then(
            None, None, None, js=press_js("compare-button"), api_visibility="private")


def layout(ctx: Context) -> SimpleNamespace:
    """The tab's components, in page order."""
    c = SimpleNamespace()
    gr.Markdown(f"Up to {ctx.max_batch_images} images per run: pick several files, or one `.zip`. Labels are "
                "optional: folders inside the zip named after ImageNet classes (`tabby`, `golden retriever`) or "
                "WordNet ids (`n02123045`), or a CSV of `file,label` rows. Files that are not images are listed "
                "and skipped.")
    with gr.Row():
        with gr.Column(scale=1):
            c.files = InputFiles(label="Images, or one .zip", file_count="multiple", type="filepath",
                                 elem_id="batch-files", height=180)
            # No fixed height: at 90 px gradio's drop zone (icon, "Drop File Here - or - Click to
            # Upload") was cut off.
            c.labels = InputFiles(label="Labels CSV (optional): file,label", file_count="single",
                                  type="filepath", file_types=[".csv", ".txt"], elem_id="batch-labels")
            c.models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Models", elem_id="batch-models")
            with gr.Row():
                c.run = gr.Button("Run", variant="primary", elem_id="batch-run")
                c.stop = gr.Button("Stop", variant="stop", elem_id="batch-stop")
            c.max_ms = gr.Number(label="Latency budget: ms per image at batch 1 here (0: none)", value=0, minimum=0,
                                 elem_id="batch-max-ms")
            c.estimate = gr.Markdown(elem_id="batch-estimate", elem_classes="rde-estimate")
            c.downloads = gr.File(label="Every prediction: CSV and JSON; the agreement chart's data (CSV)",
                                  file_count="multiple", interactive=False,
                                  elem_id="batch-downloads", elem_classes="rde-when-filled")  # hidden until filled
        with gr.Column(scale=2):
            c.status = gr.Markdown(elem_id="batch-status")
            c.accuracy = gr.Dataframe(headers=view.MODEL_HEADERS, label="Per model", interactive=False,
                                      elem_id="batch-accuracy")  # natural widths: it fits, and scrolls on a phone
            # Plotly (ui/charts.py): hover a cell for the two depths and their agreement.
            c.heatmap = gr.Plot(label="Agreement between depths", show_label=False, elem_id="batch-heatmap",  # titled
                                elem_classes="rde-when-filled")  # hidden until a run fills it (ui/app.py)
            c.gallery = gr.Gallery(label="Where depth mattered (click one to compare its maps)", columns=6,
                                   height="auto", object_fit="contain", elem_id="batch-mattered", allow_preview=False,
                                   elem_classes="rde-when-filled")
    # Headers before a run too (gradio would number the columns 1, 2, 3).
    c.table = gr.Dataframe(label="Every image: each depth's top-1", interactive=False, elem_id="batch-table",
                           max_height=600, wrap=True, headers=["", "file", *ctx.depth_names, "depths"])
    c.state = gr.State()
    with gr.Accordion("Which depth should I ship?", open=True, elem_id="batch-decision-section"):
        c.decision = gr.Markdown(view.NO_LABELS, elem_id="batch-decision")
        c.decision_table = gr.Dataframe(headers=view.DECISION_HEADERS, label="On your images, and the cost here",
                                        interactive=False, elem_id="batch-decision-table")
        with gr.Row():
            c.tradeoff = gr.Plot(label="Accuracy against latency", show_label=False, elem_id="batch-tradeoff",
                                 elem_classes="rde-when-filled")
            c.reliability = gr.Plot(label="Reliability diagram", show_label=False, elem_id="batch-reliability",
                                    elem_classes="rde-when-filled")
        c.kappa = gr.Plot(label="Error consistency", show_label=False, elem_id="batch-kappa",
                          elem_classes="rde-when-filled")
        c.published = gr.Dataframe(headers=view.PUBLISHED_HEADERS, interactive=False, elem_id="batch-published",
                                   label="Published top-1 (%) on ImageNet variants: ImageNet, not your data "
                                         "(timm results CSVs; mCE: Hendrycks & Dietterich 2019)")
    return c
