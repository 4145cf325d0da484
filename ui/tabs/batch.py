"""Batch: many images (or one .zip) through every chosen depth; the ``/batch`` endpoint.

Accuracy when labels are known (folder names inside a zip, or a ``file,label`` CSV), a
depth x depth agreement heatmap, "where depth mattered" (a click opens the image in
Compare depths with its maps), CSV and JSON of every prediction.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
from PIL import Image

from zoo.batch import BatchResult, ImageResult, Progress, Skipped, ZipMember, read_source
from zoo.errors import ZooError
from zoo.images import load_image

from .. import format as fmt
from .. import charts
from ..common import Context, InputFiles, checked_file, gpu, new_output_folder, press_js, progress_fn, user_errors
from ..guard import long_event, runs_no_model

TITLE = "Batch"
THUMB = 56  # px: table thumbnails, kept per image while the batch runs
PREVIEW = 256  # px: "where depth mattered" pictures
PARTIAL_S = 3.0  # seconds between partial results in the page
COMPARE_TAB = "Compare depths"  # the Compare tab's id (build_app gives each tab its TITLE as id)


def thumbnail_uri(img: Image.Image) -> str:
    """A small JPEG inline (markdown, data URI): the table shows it without serving files."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "![](data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii") + ")"


def save_picture(source: Path | ZipMember, path: Path, size: int | None = None) -> str:
    """One batch image again (decoded safely), as PNG; ``size`` bounds the longer side."""
    image = load_image(read_source(source)).image
    if size:
        image.thumbnail((size, size))
    image.save(path, format="PNG")
    return str(path)


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer = ctx.explorer

    def uploads(files: Any, labels_csv: Any) -> tuple[list[Path], Path | None]:
        if not files:
            raise gr.Error("Upload some images, or one .zip of them, first.", print_exception=False)
        paths = [checked_file(f) for f in (files if isinstance(files, list) else [files])]
        return paths, checked_file(labels_csv) if labels_csv else None

    @gpu
    def run_stream(files: Any, labels_csv: Any, models: list[str] | None, progress: Any,
                   partial_every_s: float | None = None) -> Iterator[ImageResult | Skipped | Progress | BatchResult]:
        paths, csv_path = uploads(files, labels_csv)
        # Uploads keep their original names as the last part of gradio's path.
        yield from explorer.batch_stream(paths, list(models or ctx.depth_names), names=[p.name for p in paths],
                                         labels_csv=csv_path, max_images=ctx.max_batch_images,
                                         thumbnails=THUMB, progress=progress, partial_every_s=partial_every_s)

    def cost(files: Any, labels_csv: Any = None, models: list[str] | None = None):
        """One forward per image and model; the images are counted (a zip's members too), not decoded."""
        paths, _ = uploads(files, labels_csv)
        return explorer.batch_estimate(paths, list(models or ctx.depth_names), names=[p.name for p in paths],
                                       max_images=ctx.max_batch_images)

    def render(result: BatchResult) -> tuple[Any, ...]:
        if result.partial:  # the images done so far: tables and heatmap only, no files to write
            headers = fmt.batch_headers(result)
            table = gr.Dataframe(value=fmt.batch_rows(result, thumbnail_uri), headers=headers,
                                 datatype=["markdown"] + ["str"] * (len(headers) - 1),
                                 column_widths=[f"{THUMB + 16}px"] + ["auto"] * (len(headers) - 1))
            return (f"**Partial results: the {result.n_images} images done so far.**\n\n" + fmt.batch_markdown(result),
                    fmt.batch_model_table(result), charts.agreement_heatmap(result.models, result.agreement), table,
                    gr.skip(), gr.skip(), gr.skip())
        folder = new_output_folder(ctx.outputs_dir)
        csv_path, json_path = folder / "batch-predictions.csv", folder / "batch-predictions.json"
        csv_path.write_text(result.to_csv(), encoding="utf-8")
        json_path.write_text(json.dumps(result.to_json()), encoding="utf-8")
        gallery = [(save_picture(m.image.source, folder / f"mattered-{i}.png", PREVIEW),
                    fmt.mattered_caption(result, m)) for i, m in enumerate(result.mattered)]
        headers = fmt.batch_headers(result)
        table = gr.Dataframe(value=fmt.batch_rows(result, thumbnail_uri), headers=headers,
                             datatype=["markdown"] + ["str"] * (len(headers) - 1),
                             column_widths=[f"{THUMB + 16}px"] + ["auto"] * (len(headers) - 1))
        heatmap = charts.agreement_heatmap(result.models, result.agreement)
        return (fmt.batch_markdown(result), fmt.batch_model_table(result), heatmap, table, gallery,
                [str(csv_path), str(json_path), charts.csv_file(heatmap, folder)], [m.image.source for m in result.mattered])

    def ui_run(files, labels_csv, models, progress=gr.Progress()):
        # A generator that yields before every forward: Stop cancels the event, gradio then
        # closes this generator at its next yield, and closing the stream ends the work (a
        # plain function would go on running in its worker thread).
        # Partial results every few seconds: after a Stop the page keeps what was done.
        events = run_stream(files, labels_csv, models, progress_fn(progress), PARTIAL_S)
        try:
            for event in events:
                if isinstance(event, Progress):
                    yield (event.message, *[gr.skip()] * 6)
                elif isinstance(event, BatchResult):
                    yield render(event)
        except ZooError as e:
            raise gr.Error(str(e), print_exception=False) from None
        finally:
            events.close()

    @runs_no_model
    @user_errors
    def ui_open(sources: list[Path | ZipMember] | None, evt: gr.SelectData):
        """A "where depth mattered" image into Compare depths, which then runs on it."""
        if not sources or evt.index is None or not 0 <= int(evt.index) < len(sources):
            return gr.skip(), gr.skip()
        folder = new_output_folder(ctx.outputs_dir)
        return save_picture(sources[int(evt.index)], folder / "compare.png"), gr.Tabs(selected=COMPARE_TAB)

    @user_errors
    def api_batch(files, models, progress=gr.Progress()):
        """Classify many images (or one .zip) with the chosen depths (none: all five); returns the
        summary (accuracy per depth when the zip's folders name classes, agreement matrix, where
        depth mattered, skipped files) and every prediction as CSV."""
        result = None
        for result in run_stream(files, None, models, progress_fn(progress)):
            pass
        assert isinstance(result, BatchResult)
        path = new_output_folder(ctx.outputs_dir) / "batch-predictions.csv"
        path.write_text(result.to_csv(), encoding="utf-8")
        return result.summary(), str(path)

    gr.Markdown(f"Up to {ctx.max_batch_images} images per run: pick several files, or one `.zip`. Labels are "
                "optional: folders inside the zip named after ImageNet classes (`tabby`, `golden retriever`) or "
                "WordNet ids (`n02123045`), or a CSV of `file,label` rows. Files that are not images are listed "
                "and skipped.")
    with gr.Row():
        with gr.Column(scale=1):
            b_files = InputFiles(label="Images, or one .zip", file_count="multiple", type="filepath",
                                 elem_id="batch-files", height=180)
            # No fixed height: at 90 px gradio's drop zone (icon, "Drop File Here - or - Click to
            # Upload") was cut off.
            b_labels = InputFiles(label="Labels CSV (optional): file,label", file_count="single",
                                  type="filepath", file_types=[".csv", ".txt"], elem_id="batch-labels")
            b_models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Models", elem_id="batch-models")
            with gr.Row():
                b_run = gr.Button("Run", variant="primary", elem_id="batch-run")
                b_stop = gr.Button("Stop", variant="stop", elem_id="batch-stop")
            b_estimate = gr.Markdown(elem_id="batch-estimate", elem_classes="rde-estimate")
            b_downloads = gr.File(label="Every prediction: CSV and JSON; the agreement chart's data (CSV)",
                                  file_count="multiple", interactive=False,
                                  elem_id="batch-downloads", elem_classes="rde-when-filled")  # hidden until filled
        with gr.Column(scale=2):
            b_status = gr.Markdown(elem_id="batch-status")
            b_accuracy = gr.Dataframe(headers=fmt.BATCH_MODEL_HEADERS, label="Per model", interactive=False,
                                      elem_id="batch-accuracy")  # natural widths: it fits, and scrolls on a phone
            # Plotly (ui/charts.py): hover a cell for the two depths and their agreement.
            b_heatmap = gr.Plot(label="Agreement between depths", show_label=False, elem_id="batch-heatmap",  # titled
                                elem_classes="rde-when-filled")  # hidden until a run fills it (ui/app.py)
            b_gallery = gr.Gallery(label="Where depth mattered (click one to compare its maps)", columns=6,
                                   height="auto", object_fit="contain", elem_id="batch-mattered", allow_preview=False,
                                   elem_classes="rde-when-filled")
    # Headers before a run too (gradio would number the columns 1, 2, 3).
    b_table = gr.Dataframe(label="Every image: each depth's top-1", interactive=False, elem_id="batch-table",
                           max_height=600, wrap=True, headers=["", "file", *ctx.depth_names, "depths"])
    b_state = gr.State()
    outputs = [b_status, b_accuracy, b_heatmap, b_table, b_gallery, b_downloads, b_state]
    long_event(ctx.guard, b_run.click, ui_run, [b_files, b_labels, b_models], outputs, cost=cost,
               message=b_status, stop=b_stop, what="This batch", api_visibility="private",
               stopped="The results shown are those of the images finished before Stop.")

    @runs_no_model
    def ui_estimate(files, models) -> str:
        """What Run will cost here: the files are counted (a zip's members listed, nothing decoded)."""
        if not files:
            return fmt.batch_estimate_markdown(None, explorer.device)
        try:
            paths = [checked_file(f) for f in (files if isinstance(files, list) else [files])]
            est = explorer.batch_estimate(paths, list(models or ctx.depth_names), names=[p.name for p in paths],
                                          max_images=ctx.max_batch_images)
        except ZooError as e:  # too many images, an unsafe zip: say so before Run is pressed
            return str(e)
        except gr.Error as e:
            return str(e.message)
        return fmt.batch_estimate_markdown(est, explorer.device, ctx.guard.limits)

    # Not after a run: a batch records no forward times, so its estimate would not change.
    for event in (b_files.change, b_models.change, ctx.demo.load):
        event(ui_estimate, [b_files, b_models], [b_estimate], api_visibility="private", show_progress="hidden")

    compare_image, tabs = ctx.components.get("compare.image"), ctx.components.get("tabs")
    if compare_image is not None and tabs is not None:
        # Set the image, switch tab, then press Compare there (its own event, its own inputs).
        # Gradio renders a tab when it is first shown, so wait for the button to exist.
        b_gallery.select(ui_open, [b_state], [compare_image, tabs], api_visibility="private").then(
            None, None, None, js=press_js("compare-button"), api_visibility="private")

    # The public endpoint /batch(files, models): the summary JSON and a CSV of every prediction.
    b_json = gr.JSON(visible=False)
    b_csv = gr.File(visible=False)
    b_api = gr.Button(visible=False)
    long_event(ctx.guard, b_api.click, api_batch, [b_files, b_models], [b_json, b_csv],
               cost=lambda files, models=None: cost(files, None, models), what="This batch", api_name="batch")
