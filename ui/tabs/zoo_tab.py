"""Model zoo: measured cost beside the paper's Table 1, latency, accuracy plots, downloads, self-check.

Layout and wiring only: the table is ``zoo.features.zoo_table``'s, the self-check
``zoo.features.selfcheck``'s; ``ui.views.zoo_table`` and ``ui.views.selfcheck`` turn them into
what the components show.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from zoo.costs import Estimate
from zoo.features import selfcheck, zoo_table
from zoo.features.zoo_table import ZooTable
from zoo.stats import NOTES

from .. import charts
from .. import format as fmt
from ..common import Context, gpu, new_output_folder, progress_fn, user_errors
from ..guard import long_event, runs_no_model, stop_button
from ..spaces import LATENCY_S
from ..views import selfcheck as selfcheck_view
from ..views import zoo_table as view

TITLE = "Model zoo"
DOWNLOAD_S = zoo_table.DOWNLOAD_S  # what the gate assumes a model's download takes


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    table_section(ctx)
    zoo_api(ctx)
    selfcheck_section(ctx)


def _published(t: ZooTable) -> gr.Dataframe:
    """The published references' table; hidden where no model has any (its note says so)."""
    rows = view.published_table(t.rows)
    return gr.Dataframe(value=rows, headers=view.PUBLISHED_HEADERS, visible=bool(rows))


def table_section(ctx: Context) -> None:
    """The table, per-stage table and charts at a resolution, latency when asked, and downloads."""
    rt, zoo = ctx.rt, ctx.zoo

    def request(resolution: Any, stage_model: str = "", latency: bool = False) -> zoo_table.Request:
        """The one place the tab's inputs become the feature's request (handler and cost alike)."""
        return zoo_table.Request.create(rt, resolution, latency)

    @gpu(duration=LATENCY_S)
    def timed_rows(req: zoo_table.Request, progress: gr.Progress) -> ZooTable:
        """Every model's row with its latency measured on the app's device (slow: runs each model)."""
        return zoo_table.result(rt, req, progress_fn(progress))

    def stages(resolution: int, stage_model: str) -> gr.Dataframe:
        return gr.Dataframe(value=view.stage_table(zoo_table.stages(zoo, stage_model, resolution)),
                            headers=view.STAGE_HEADERS)

    def table(t: ZooTable) -> gr.Dataframe:
        return gr.Dataframe(value=view.table_rows(t), headers=view.zoo_headers(t.resolution))

    @user_errors
    def refresh(resolution: int, stage_model: str, latency: bool, progress=gr.Progress()):
        """Everything at ``resolution``; latency only when its box is ticked (it runs every model)."""
        req = request(resolution, stage_model, latency)
        t = timed_rows(req, progress) if req.latency else zoo_table.result(rt, req)
        figs = view.charts(t)
        return (table(t), stages(t.resolution, stage_model), *figs, view.resolution_note(t.resolution), t,
                view.chart_data(figs, new_output_folder(ctx.outputs_dir)), _published(t), view.published_note(t.rows))

    @runs_no_model
    @user_errors
    def after_download(resolution: int, shown: ZooTable | None):
        """The table again with fresh 'cached' and 'file MB' columns, keeping the latency measured before."""
        req = request(resolution)
        t = shown.with_cached(zoo) if shown and shown.resolution == req.resolution else zoo_table.result(rt, req)
        return table(t), t

    def download_cost(names=None) -> Estimate | None:
        return zoo_table.download_estimate(zoo, names)

    @user_errors
    def ui_download(names, progress=gr.Progress()):
        if not names:
            return view.downloaded([])
        return view.downloaded(zoo_table.download(zoo, names, progress=progress_fn(progress)))

    c = table_layout(ctx)
    z_ins = [c["resolution"], c["stage"], c["latency"]]
    z_outs = [c["table"], c["stages"], c["plot_macs"], c["plot_latency"], c["note"], c["rows"], c["data"],
              c["published"], c["published_note"]]

    def cost(resolution: int, stage_model: str = "", latency: bool = False) -> Estimate | None:
        """Timing every model is long work; the tables alone cost no forward at all."""
        req = request(resolution, stage_model, latency)
        return zoo_table.estimate(rt, req) if req.latency else None

    # Latency is measured only when asked: Refresh, ticking the box, or a new resolution while it
    # is ticked. The page's first load fills the tables the same way, through the same gate: its
    # inputs can be sent by anyone (a raw /queue/join), latency ticked and 448 px included.
    runs = [long_event(ctx.guard, event, refresh, z_ins, z_outs, cost=cost, what="Measuring latency",
                       api_visibility="private")
            for event in (c["go"].click, c["resolution"].input, c["latency"].input, ctx.demo.load)]
    stop_button(c["stop"], runs, c["estimate"])

    @runs_no_model
    def latency_estimate(resolution: int) -> str:
        est = zoo_table.estimate(rt, request(resolution, latency=True))
        return "Measuring latency: " + fmt.estimate_markdown(est, rt.device, ctx.guard.limits)

    for event in (c["resolution"].change, ctx.demo.load, *[r.then for r in runs]):
        event(latency_estimate, [c["resolution"]], [c["estimate"]], api_visibility="private", show_progress="hidden")
    long_event(ctx.guard, c["stage"].input, user_errors(stages), [c["resolution"], c["stage"]], [c["stages"]],
               cost=None, api_visibility="private")
    long_event(ctx.guard, c["download"].click, ui_download, [c["download_models"]], [c["download_out"]],
               cost=download_cost, what="This download", api_visibility="private").then(
        after_download, [c["resolution"], c["rows"]], [c["table"], c["rows"]], api_visibility="private")


def table_layout(ctx: Context) -> dict[str, Any]:
    """The zoo table's components, by name."""
    c: dict[str, Any] = {}
    gr.Markdown("Measured on the architectures themselves (no weights needed): parameters, multiply-adds "
                "(MACs, what the paper calls FLOPs) and FLOPs from `torch.utils.flop_counter`, beside the "
                "paper's Table 1.")
    with gr.Row():
        c["resolution"] = gr.Dropdown([160, 224, 320, 448], value=224, label="Input resolution",
                                      elem_id="zoo-resolution")
        c["stage"] = gr.Dropdown(ctx.zoo.names, value=ctx.default_model, label="Per-stage table for")
        c["latency"] = gr.Checkbox(value=False, label=f"Measure latency on {ctx.rt.device} (takes a while)",
                                   elem_id="zoo-latency")
        c["go"] = gr.Button("Refresh")
        c["stop"] = gr.Button("Stop", variant="stop", elem_id="zoo-stop")
    c["estimate"] = gr.Markdown(elem_id="zoo-latency-estimate", elem_classes="rde-estimate")
    # Fixed widths (ui/views/zoo_table.py), wrapped between words: all 13 columns in view at 1400 px;
    # on a phone the table scrolls sideways in its box, the model's name pinned.
    c["table"] = gr.Dataframe(headers=view.ZOO_HEADERS, interactive=False, elem_id="zoo-table", wrap=True,
                              column_widths=view.ZOO_COLUMN_WIDTHS, pinned_columns=1)
    c["note"] = gr.Markdown(elem_id="zoo-resolution-note")
    # Published references (issue 33): their own small table, so the one above keeps fitting at 1400 px.
    c["published"] = gr.Dataframe(headers=view.PUBLISHED_HEADERS, interactive=False, label=view.PUBLISHED_TITLE,
                                  wrap=True, column_widths=view.PUBLISHED_COLUMN_WIDTHS, pinned_columns=1,
                                  elem_id="zoo-published")
    with gr.Accordion("Where the published figures come from", open=False):
        c["published_note"] = gr.Markdown(elem_id="zoo-published-note")
    c["stages"] = gr.Dataframe(headers=view.STAGE_HEADERS, interactive=False, label="Per stage (paper Table 1)",
                               wrap=True, column_widths=view.STAGE_COLUMN_WIDTHS, pinned_columns=1,
                               elem_id="zoo-stages")
    with gr.Row():  # min_width: side by side where there is room, one per row on a phone
        c["plot_macs"] = gr.Plot(label="Top-1 vs multiply-adds", elem_id="zoo-plot-macs", min_width=320)
        c["plot_latency"] = gr.Plot(label="Top-1 vs latency", elem_id="zoo-plot-latency", min_width=320)
    c["data"] = charts.data_files("zoo-chart-data")
    gr.Markdown("\n".join(f"* {n}" for n in NOTES))
    with gr.Row():
        c["download_models"] = gr.CheckboxGroup(ctx.zoo.names, label="Download weights (verified, cached)",
                                                elem_id="zoo-download-models")
        c["download"] = gr.Button("Download", elem_id="zoo-download")
    c["download_out"] = gr.Markdown(elem_id="zoo-download-result")
    c["rows"] = gr.State()  # the table on show, so a download refreshes 'cached' without timing anything again
    return c


def zoo_api(ctx: Context) -> None:
    """/zoo(resolution): the table as data (parameters, multiply-adds, FLOPs, accuracy, file size)."""
    rt = ctx.rt

    @user_errors
    def api_zoo(resolution):
        """Every model's row of the zoo table at ``resolution``; no model is run."""
        return zoo_table.result(rt, zoo_table.Request.create(rt, resolution)).to_json()

    zoo_json = gr.JSON(visible=False)
    zoo_button = gr.Button(visible=False)
    zoo_resolution = gr.Number(224, precision=0, minimum=160, maximum=448, visible=False, label="resolution")
    long_event(ctx.guard, zoo_button.click, api_zoo, [zoo_resolution], [zoo_json], cost=None, api_name="zoo")


def selfcheck_section(ctx: Context) -> None:
    """Do the deployed weights give real answers? ``zoo.features.selfcheck`` on the chosen models; ``/selfcheck``."""
    rt = ctx.rt
    gr.Markdown("### Self-check: do these weights give real answers?\n" + SELFCHECK_INTRO)
    with gr.Row():
        models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Models", elem_id="selfcheck-models")
        with gr.Column():
            go = gr.Button("Run the self-check", elem_id="selfcheck-run")
            estimate = gr.Markdown(elem_id="selfcheck-estimate", elem_classes="rde-estimate")
    out = gr.Markdown(elem_id="selfcheck-result")
    with gr.Accordion("The self-check's numbers (JSON)", open=False):
        numbers = gr.JSON(label="Per model: pin, sha256, each photo's top-5, diagnosis")

    def request(models=None) -> selfcheck.Request:
        """The one place the tab's input becomes the feature's request (handler and cost alike)."""
        return selfcheck.Request.create(rt, list(models or ctx.depth_names))

    def cost(models=None) -> Estimate:
        return selfcheck.estimate(rt, request(models))

    @gpu(cost=lambda models, progress=None: cost(models))
    def checked(models, progress):
        return selfcheck.result(rt, request(models), progress_fn(progress))

    @user_errors
    def api_selfcheck(models, progress=gr.Progress()):
        """Pin, sha256 and the example photos' answers of each model, with a diagnosis."""
        result = checked(models, progress)
        return selfcheck_view.selfcheck_markdown(result), result.to_json()

    @runs_no_model
    def ui_estimate(models) -> str:
        return fmt.estimate_markdown(cost(models), rt.device, ctx.guard.limits)

    run = long_event(ctx.guard, go.click, api_selfcheck, [models], [out, numbers], cost=cost, message=out,
                     what="This self-check", api_visibility="private")
    for event in (models.change, run.then, ctx.demo.load):
        event(ui_estimate, [models], [estimate], api_visibility="private", show_progress="hidden")
    api_button = gr.Button(visible=False)
    api_json = gr.JSON(visible=False)
    long_event(ctx.guard, api_button.click, api_selfcheck, [models], [out, api_json], cost=cost,
               what="This self-check", api_name="selfcheck")


SELFCHECK_INTRO = """\
The tests of this app run on generated weights; this checks the real ones. For each model: is its revision \
pinned, does the file's sha256 match, and do the bundled photos (the cat, the coffee, the rocket) get an accepted \
ImageNet class in their top-5? The input the model receives is also compared with torchvision's recipe computed \
independently, so a BGR image, a wrong mean/std, a class list out of order or weights under the wrong keys each \
fail with a message that names them. About two forwards per photo and model, plus hashing each file."""
