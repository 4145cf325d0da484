"""Model zoo: measured cost beside the paper's Table 1, latency, accuracy plots, downloads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gradio as gr

from zoo.cancel import check
from zoo.hub import cached_path, fetch_weights
from zoo.models import resolve_device
from zoo.service import Estimate
from zoo.stats import NOTES, ZooRow, stage_stats, zoo_row

from .. import format as fmt
from .. import charts
from ..common import Context, gpu, new_output_folder, progress_fn, user_errors
from ..guard import long_event, runs_no_model, stop_button
from ..charts import accuracy_vs
from ..spaces import LATENCY_S

TITLE = "Model zoo"
# What the gate assumes a model's download takes (long lane: it must not hold a quick slot).
DOWNLOAD_S = 10.0


def build(ctx: Context) -> None:
    """The tab's components and events; called inside its ``gr.Tab``."""
    explorer, zoo = ctx.explorer, ctx.zoo

    @gpu(duration=LATENCY_S)
    def timed_rows(resolution: int, progress: gr.Progress) -> list[ZooRow]:
        """Every model's row with its latency measured on the app's device (slow: runs each model)."""
        device = resolve_device(explorer.device)
        rows = []
        for i, spec in enumerate(zoo):
            check()  # Stop ends the timing between models (and within each, between forwards)
            progress(i / len(zoo), desc=f"Timing {spec.name} on {device} ({i + 1} of {len(zoo)})")
            rows.append(zoo_row(spec, resolution, device))
        return rows

    def table(rows: list[ZooRow]) -> gr.Dataframe:
        cached = {s.name: cached_path(s) is not None for s in zoo}
        return gr.Dataframe(value=fmt.zoo_table(rows, cached), headers=fmt.zoo_headers(rows[0].resolution))

    def stages(resolution: int, stage_model: str) -> gr.Dataframe:
        spec = zoo.get(stage_model)
        rows = stage_stats(spec.arch.name, int(resolution), spec.num_classes)
        return gr.Dataframe(value=fmt.stage_table(rows), headers=fmt.STAGE_HEADERS)

    @user_errors
    def refresh(resolution: int, stage_model: str, latency: bool, progress=gr.Progress()):
        """Everything at ``resolution``; latency only when its box is ticked (it runs every model)."""
        resolution = int(resolution)
        rows = timed_rows(resolution, progress) if latency else [zoo_row(s, resolution) for s in zoo]
        charts = accuracy_vs(rows, "macs"), accuracy_vs(rows, "latency")
        return (table(rows), stages(resolution, stage_model), *charts, fmt.resolution_note(resolution), rows,
                charts.csv_files(charts, new_output_folder(ctx.outputs_dir)))

    @runs_no_model
    @user_errors
    def after_download(resolution: int, rows: list[ZooRow] | None):
        """The table again with fresh 'cached' and 'file MB' columns, keeping the latency measured before."""
        latency = {r.name: r.latency for r in rows or [] if r.resolution == int(resolution)}
        rows = [dataclasses.replace(zoo_row(s, int(resolution)), latency=latency.get(s.name)) for s in zoo]
        return table(rows), rows

    def download_cost(names=None) -> Estimate | None:
        """Nothing to fetch costs a moment (hashing a cached file); a download is long work, not a quick one."""
        missing = [n for n in names or [] if n in zoo and cached_path(zoo.get(n)) is None]
        return Estimate(0, DOWNLOAD_S * len(missing), "a download") if missing else None

    @user_errors
    def ui_download(names, progress=gr.Progress()):
        done = []
        for name in names or []:
            path = fetch_weights(zoo.get(name), progress=progress_fn(progress))
            done.append(f"{name}: {Path(path).stat().st_size / 1e6:.0f} MB, verified")
        return "\n\n".join(done) or "Pick at least one model."

    gr.Markdown("Measured on the architectures themselves (no weights needed): parameters, multiply-adds "
                "(MACs, what the paper calls FLOPs) and FLOPs from `torch.utils.flop_counter`, beside the "
                "paper's Table 1.")
    with gr.Row():
        z_res = gr.Dropdown([160, 224, 320, 448], value=224, label="Input resolution", elem_id="zoo-resolution")
        z_stage = gr.Dropdown(zoo.names, value=ctx.default_model, label="Per-stage table for")
        z_lat = gr.Checkbox(value=False, label=f"Measure latency on {explorer.device} (takes a while)",
                            elem_id="zoo-latency")
        z_go = gr.Button("Refresh")
        z_stop = gr.Button("Stop", variant="stop", elem_id="zoo-stop")
    z_estimate = gr.Markdown(elem_id="zoo-latency-estimate", elem_classes="rde-estimate")
    # Fixed widths (ui/format.py), wrapped between words: all 13 columns in view at 1400 px;
    # on a phone the table scrolls sideways in its box, the model's name pinned.
    z_table = gr.Dataframe(headers=fmt.ZOO_HEADERS, interactive=False, elem_id="zoo-table", wrap=True,
                           column_widths=fmt.ZOO_COLUMN_WIDTHS, pinned_columns=1)
    z_note = gr.Markdown(elem_id="zoo-resolution-note")
    z_stages = gr.Dataframe(headers=fmt.STAGE_HEADERS, interactive=False, label="Per stage (paper Table 1)",
                            wrap=True, column_widths=fmt.STAGE_COLUMN_WIDTHS, pinned_columns=1,
                            elem_id="zoo-stages")
    with gr.Row():  # min_width: side by side where there is room, one per row on a phone
        z_plot_macs = gr.Plot(label="Top-1 vs multiply-adds", elem_id="zoo-plot-macs", min_width=320)
        z_plot_lat = gr.Plot(label="Top-1 vs latency", elem_id="zoo-plot-latency", min_width=320)
    z_data = charts.data_files("zoo-chart-data")
    gr.Markdown("\n".join(f"* {n}" for n in NOTES))
    with gr.Row():
        z_dl = gr.CheckboxGroup(zoo.names, label="Download weights (verified, cached)", elem_id="zoo-download-models")
        z_dl_go = gr.Button("Download", elem_id="zoo-download")
    z_dl_out = gr.Markdown(elem_id="zoo-download-result")
    z_rows = gr.State()  # the rows on show, so a download refreshes 'cached' without timing anything again
    z_ins = [z_res, z_stage, z_lat]
    z_outs = [z_table, z_stages, z_plot_macs, z_plot_lat, z_note, z_rows, z_data]
    # Latency is measured only when asked: Refresh, ticking the box, or a new resolution
    # while it is ticked. The per-stage model and downloads never time anything.
    def cost(resolution: int, stage_model: str = "", latency: bool = False):
        """Timing every model is long work; the tables alone cost no forward at all."""
        return explorer.costs.latency_estimate(int(resolution)) if latency else None

    # The page's first load fills the tables the same way, through the same gate: its inputs can
    # be sent by anyone (a raw /queue/join), latency ticked and 448 px included.
    runs = [long_event(ctx.guard, event, refresh, z_ins, z_outs, cost=cost, what="Measuring latency",
                       api_visibility="private") for event in (z_go.click, z_res.input, z_lat.input, ctx.demo.load)]
    stop_button(z_stop, runs, z_estimate)

    @runs_no_model
    def latency_estimate(resolution: int) -> str:
        est = explorer.costs.latency_estimate(int(resolution))
        return "Measuring latency: " + fmt.estimate_markdown(est, explorer.device, ctx.guard.limits)

    for event in (z_res.change, ctx.demo.load, *[r.then for r in runs]):
        event(latency_estimate, [z_res], [z_estimate], api_visibility="private", show_progress="hidden")
    long_event(ctx.guard, z_stage.input, user_errors(stages), [z_res, z_stage], [z_stages], cost=None,
               api_visibility="private")
    long_event(ctx.guard, z_dl_go.click, ui_download, [z_dl], [z_dl_out], cost=download_cost, what="This download",
               api_visibility="private").then(after_download, [z_res, z_rows], [z_table, z_rows],
                                              api_visibility="private")

    # /zoo(resolution): the table as data (parameters, multiply-adds, FLOPs, accuracy, file size).
    @user_errors
    def api_zoo(resolution):
        """Every model's row of the zoo table at ``resolution``; no model is run."""
        return {"models": [zoo_row(s, int(resolution)).to_json() for s in zoo],
                "cached": {s.name: cached_path(s) is not None for s in zoo}}

    zoo_json = gr.JSON(visible=False)
    zoo_button = gr.Button(visible=False)
    zoo_resolution = gr.Number(224, precision=0, minimum=160, maximum=448, visible=False, label="resolution")
    long_event(ctx.guard, zoo_button.click, api_zoo, [zoo_resolution], [zoo_json], cost=None, api_name="zoo")
    selfcheck_section(ctx)


def selfcheck_section(ctx: Context) -> None:
    """Do the deployed weights give real answers? ``zoo.selfcheck`` on the chosen models; ``/selfcheck``."""
    explorer = ctx.explorer
    gr.Markdown("### Self-check: do these weights give real answers?\n" + SELFCHECK_INTRO)
    with gr.Row():
        models = gr.CheckboxGroup(ctx.zoo.names, value=ctx.depth_names, label="Models", elem_id="selfcheck-models")
        with gr.Column():
            go = gr.Button("Run the self-check", elem_id="selfcheck-run")
            estimate = gr.Markdown(elem_id="selfcheck-estimate", elem_classes="rde-estimate")
    out = gr.Markdown(elem_id="selfcheck-result")
    with gr.Accordion("The self-check's numbers (JSON)", open=False):
        numbers = gr.JSON(label="Per model: pin, sha256, each photo's top-5, diagnosis")

    def cost(models=None):
        return explorer.selfcheck_estimate(list(models or ctx.depth_names))

    @gpu(cost=lambda models, progress=None: cost(models))
    def checked(models, progress):
        return explorer.selfcheck(list(models or ctx.depth_names), progress_fn(progress))

    @user_errors
    def ui_selfcheck(models, progress=gr.Progress()):
        result = checked(models, progress)
        return fmt.selfcheck_markdown(result), result.to_json()

    @user_errors
    def api_selfcheck(models, progress=gr.Progress()):
        """Pin, sha256 and the example photos' answers of each model, with a diagnosis."""
        result = checked(models, progress)
        return fmt.selfcheck_markdown(result), result.to_json()

    @runs_no_model
    def ui_estimate(models) -> str:
        return fmt.estimate_markdown(cost(models), explorer.device, ctx.guard.limits)

    run = long_event(ctx.guard, go.click, ui_selfcheck, [models], [out, numbers], cost=cost, message=out,
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
